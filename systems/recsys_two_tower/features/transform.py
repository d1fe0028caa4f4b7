"""Feature rows -> tower inputs. One function per tower, used by training, evaluation and serving alike,
so the online path cannot drift from the offline one (tests compare them on the same user)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from systems.recsys_two_tower.data import DAY
from systems.recsys_two_tower.features.definitions import CONTENT_COLS, HISTORY_COLS, TOPIC_COLS
from systems.recsys_two_tower.model import TowerConfig, hash_ids


def _num(values: Sequence[Any], dtype: type = np.float32, fill: float = 0) -> np.ndarray:
    """Numbers from a column that may hold None/NaN (a missing feature): missing -> fill."""
    if isinstance(values, pd.Series):  # offline: a whole column at once
        return pd.to_numeric(values, errors="coerce").fillna(fill).to_numpy(dtype)
    # online: a short list from Feast, where a missing value is None (this path is on the request)
    return np.array([fill if v is None or v != v else v for v in values], dtype=dtype)


def _matrix(cols: Mapping[str, Sequence[Any]], names: list[str], dtype: type, fill: float) -> np.ndarray:
    return np.column_stack([_num(cols[c], dtype, fill) for c in names])


def user_inputs(
    cols: Mapping[str, Sequence[Any]], cfg: TowerConfig, seen_videos: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user_bucket (B,), dense (B, 19), history_bucket (B, H)) from user_stats columns (a DataFrame
    from the offline store or the dict of lists an online read returns).

    Missing values (a user with no snapshot yet) become zeros and an empty history, the same
    defaults the server uses when the online store is down. History videos that training never saw
    map to bucket 0, like in the video tower.
    """
    user_ids = np.asarray(cols["user_id"], dtype=np.int64)
    topic_hist = _matrix(cols, TOPIC_COLS, np.float32, 0)
    dense = np.column_stack(
        [np.log1p(_num(cols["watches_7d"])), np.log1p(_num(cols["watches_30d"])),
         _num(cols["mean_completion_30d"]), topic_hist]
    ).astype(np.float32)  # fmt: skip
    history = _matrix(cols, HISTORY_COLS[: cfg.history_len], np.int64, -1)
    if seen_videos is not None:
        history = np.where((history >= 0) & seen_videos[np.clip(history, 0, None)], history, -1)
    return hash_ids(user_ids, cfg.user_buckets), dense, hash_ids(history, cfg.video_buckets)


def video_inputs(
    frame: pd.DataFrame, cfg: TowerConfig, seen_videos: np.ndarray, as_of_ts: int | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(video_bucket, topic, creator_bucket, dense (B, 12)) from video_content + video_popularity columns.

    Videos not watched in training get id bucket 0: they are embedded from content alone (cold start).
    """
    video_ids = frame["video_id"].to_numpy(np.int64)
    bucket = np.where(seen_videos[video_ids], hash_ids(video_ids, cfg.video_buckets), 0)
    content = _matrix(frame, CONTENT_COLS, np.float32, 0)
    age_days = np.clip((np.asarray(as_of_ts) - frame["upload_ts"].to_numpy(np.int64)) / DAY, 0, None)
    dense = np.column_stack(
        [np.log(frame["duration_s"].to_numpy(np.float32).clip(1)), np.log1p(_num(frame["pop_7d"])),
         _num(frame["completion_7d"]), np.log1p(age_days).astype(np.float32), content]
    ).astype(np.float32)  # fmt: skip
    return (
        bucket,
        frame["topic"].to_numpy(np.int64),
        hash_ids(frame["creator_id"].to_numpy(np.int64), cfg.creator_buckets),
        dense,
    )
