"""MovieLens in its three formats, with their quirks, through the loaders and the whole `all --data` pipeline.

The real files are not on these machines: each test writes a small file in the exact format (u.data: tabs, no
header; ratings.dat: `::`; ratings.csv: a header and decimal ratings; u.item: latin-1, `|`, a missing release
date) and a bad file must be one line naming the file and the row, exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from infra.artifacts import Artifacts
from infra.steps import ConfigError, run_cli
from systems.recsys_two_tower import pipeline
from systems.recsys_two_tower.config import DataConfig, TuneConfig
from systems.recsys_two_tower.data import (
    DataFormatError,
    load_movielens_items,
    movielens_feed,
    read_movielens_ratings,
    validation_feed,
)
from systems.recsys_two_tower.public_protocol import (
    item_knn_recs,
    mean_average_precision_at_k,
    mean_precision_at_k,
)
from systems.recsys_two_tower.tune import CHANGES


def _ratings(n_users: int, n_items: int, seed: int = 0) -> list[tuple[int, int, int, int]]:
    """Users who like one of three genres (items i % 3), so there is something to learn."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        liked = np.arange(1, n_items + 1)[np.arange(1, n_items + 1) % 3 == u % 3]
        for i in rng.choice(liked, size=min(len(liked), int(rng.integers(12, 30))), replace=False):
            rows.append((u, int(i), int(rng.integers(3, 6)), 874_700_000 + int(rng.integers(0, 20_000_000))))
    return rows


def write_ml100k(folder: Path, n_users: int = 60, n_items: int = 240) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in _ratings(n_users, n_items))
    (folder / "u.data").write_text(text)
    lines = []
    for i in range(1, n_items + 1):
        flags = ["0"] * 19
        flags[1 + i % 3] = "1"
        date = "" if i % 13 == 0 else f"01-Jan-19{40 + i % 55:02d}"  # a few release dates are missing
        lines.append("|".join([str(i), f"Amélie {i} (19{40 + i % 55:02d})", date, "", "http://x", *flags]))
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return folder


def test_the_three_rating_formats_read_the_same(tmp_path: Path) -> None:
    rows = _ratings(10, 30)
    a = tmp_path / "a"
    a.mkdir()
    (a / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    b = tmp_path / "b"
    b.mkdir()
    (b / "ratings.dat").write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows))
    c = tmp_path / "c"
    c.mkdir()
    (c / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r}.0,{t}\n" for u, i, r, t in rows)
    )
    frames = [read_movielens_ratings(p) for p in (a, b, c)]
    assert len(frames[0]) == len(rows)
    for f in frames[1:]:
        assert f.equals(frames[0])


def test_u_item_latin1_genres_and_year(tmp_path: Path) -> None:
    items = load_movielens_items(write_ml100k(tmp_path / "ml", 5, 30))
    assert items is not None and len(items) == 30
    assert items.loc[0, "year"] == 1941 and items.loc[12, "year"] == 1953  # item 13: date missing, from title
    assert (items[[f"g_{j}" for j in range(19)]].sum(axis=1) == 1).all()


@pytest.mark.parametrize(
    ("name", "text", "row"),
    [
        ("u.data", "1\t2\t3\t874700000\n1\t5\tfour\t874700001\n", 2),
        ("u.data", "1\t2\t3\t874700000\n1\t5\t3\n", 2),  # a missing value
        ("u.data", "1\t2\t3\t874700000\n1,5,3,874700001\n", 2),  # commas, not tabs
        ("ratings.dat", "1::2::3::874700000\n1::2::3\n", 2),
        ("ratings.csv", "user,movie,rating,ts\n1,2,3,4\n", 1),  # not the ml-latest header
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,874700000\n1,3,9,874700001\n", 3),
    ],
)
def test_a_bad_file_is_one_line_naming_file_and_row(tmp_path: Path, name: str, text: str, row: int) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(DataFormatError, match=rf"{name}: row {row}: expected"):
        read_movielens_ratings(tmp_path)


def test_a_bad_file_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "u.data").write_text("1\t2\t3\t874700000\n1\t2\tx\t874700000\n")
    assert run_cli("recsys", pipeline.STEPS, ["data", "--data", f"movielens:{tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "u.data: row 2: expected" in err and "Traceback" not in err


def test_random_protocol_is_75_25_per_user_and_temporal_is_in_time(tmp_path: Path) -> None:
    folder = write_ml100k(tmp_path / "ml", 20, 60)
    ratings = read_movielens_ratings(folder)
    feed = movielens_feed(folder, "random", seed=0)
    test = feed.events["ts"] >= feed.split_ts
    per_user = test.groupby(feed.events["user_id"]).mean()
    counts = feed.events.groupby("user_id").size()
    assert np.allclose(per_user, 1 - np.round(counts * 0.75) / counts)
    feed_t = movielens_feed(folder, "temporal")
    # the temporal split keeps real time order: every test rating is later than every training rating
    order = ratings.sort_values("ts", kind="stable")
    assert (
        feed_t.events["ts"].ge(feed_t.split_ts).sum()
        == (order["ts"] >= np.quantile(ratings["ts"], 0.8)).sum()
    )


def test_real_data_gets_its_own_artifact_folder(tmp_path: Path) -> None:
    cfg = DataConfig(data=f"movielens:{tmp_path}")
    assert cfg.variant().startswith("data_movielens_") and cfg.variant() != DataConfig().variant()
    assert DataConfig(data=f"movielens:{tmp_path}", protocol="random").variant() == cfg.variant() + "_random"


def test_precision_and_map_by_hand() -> None:
    recs = np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]])
    targets = [np.array([1, 3, 42])]
    assert mean_precision_at_k(recs, targets, 10) == pytest.approx(0.2)
    assert mean_average_precision_at_k(recs, targets, 10) == pytest.approx((1 / 1 + 2 / 3) / 3)


def test_item_knn_gives_a_cold_user_most_popular_and_breaks_ties_by_popularity() -> None:
    # items 0..4; item 3 has three raters, item 1 two, the others one; user 4 has no training ratings
    users = np.array([0, 1, 2, 0, 1, 2, 3])
    items = np.array([3, 3, 3, 1, 1, 0, 2])
    recs = item_knn_recs(users, items, n_users=5, n_items=5, users=np.array([4, 3]),
                         seens=[np.empty(0, np.int64), np.array([2])], k=2)  # fmt: skip
    assert recs[0].tolist() == [3, 1]  # the cold user: by training raters, not an arbitrary order
    # user 3 rated only item 2, whose sole rater shares no item with anyone: every score ties at 0
    assert recs[1].tolist() == [3, 1]


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["temporal", "random"])
def test_all_data_movielens_runs_the_whole_pipeline(tmp_path: Path, protocol: str) -> None:
    folder = write_ml100k(tmp_path / "ml-100k")
    argv = ["all", "--data", f"movielens:{folder}", "--protocol", protocol, "--nlist", "2", "--epochs", "2",
            "--eval-users", "60", "--cross-steps", "10", "--rerank-users", "10", "--full-users", "2"]  # fmt: skip
    assert run_cli("recsys", pipeline.STEPS, argv, pipeline.ALL_CONFIG) == 0
    art = Artifacts("recsys", DataConfig(data=f"movielens:{folder}", protocol=protocol).variant())
    assert not Artifacts("recsys", "small").exists("events.parquet")  # never the simulator's folder
    result = json.loads(art.path("eval.json").read_text())
    assert result["source"]["protocol"] == protocol and result["users"] > 0
    table = result["table"]
    assert set(table) >= {"most-popular", "item-item kNN (50 neighbours)", "two-tower ANN (serving index)"}
    for row in table.values():
        assert set(row) == {"precision@10", "recall@10", "ndcg@10", "map@10"}
        assert all(0.0 <= v <= 1.0 for v in row.values())
    # users like one genre of three: neighbours find it, popularity cannot
    assert table["item-item kNN (50 neighbours)"]["ndcg@10"] > table["most-popular"]["ndcg@10"]


@pytest.mark.slow
def test_bench_data_movielens_load_tests_the_datasets_model(tmp_path: Path) -> None:
    """`bench --data` builds what is missing, serves the dataset's folder and asks for the dataset's test users.

    The data dir holds no simulator folder, so a server that loaded the scale's artifacts would never be ready."""
    folder = write_ml100k(tmp_path / "ml-100k")
    out = tmp_path / "report"
    argv = ["bench", "--data", f"movielens:{folder}", "--nlist", "2", "--epochs", "2", "--eval-users", "60",
            "--cross-steps", "10", "--rerank-users", "10", "--full-users", "2",
            "--duration", "4", "--rate", "10", "--runs", "1", "--warmup", "0", "--floor-duration", "0",
            "--out", str(out)]  # fmt: skip
    code = run_cli("recsys", pipeline.STEPS, argv)
    report = json.loads((out / "report.json").read_text())
    recommend = report["routes"]["recommend"]
    assert recommend["requests"] >= 10 and recommend["failures"] == 0
    assert code == report["exit_code"] and report["extra"]["data"] == f"movielens:{folder}"
    art = Artifacts("recsys", DataConfig(data=f"movielens:{folder}").variant())
    users = json.loads(art.path("bench_users.json").read_text())
    assert users and set(users) <= set(range(60))  # the dataset's 60 users, as the feed codes them
    assert "precision@10" in (out / "report.md").read_text()
    assert not Artifacts("recsys", "medium").root.exists()  # the bench's default scale was never built


@pytest.mark.parametrize("protocol", ["temporal", "random"])
def test_validation_is_carved_from_the_training_ratings_alone(tmp_path: Path, protocol: str) -> None:
    """The tune step's validation feed holds exactly the training ratings, split again by the same protocol: no
    test rating can reach a tuning decision."""
    feed = movielens_feed(write_ml100k(tmp_path / "ml", 30, 90), protocol, seed=0)
    val = validation_feed(feed, protocol, seed=0)
    key = ["user_id", "video_id", "completion"]
    train = feed.events[feed.events["ts"] < feed.split_ts][key].sort_values(key).reset_index(drop=True)
    assert val.events[key].sort_values(key).reset_index(drop=True).equals(train)
    held_out = (val.events["ts"] >= val.split_ts).mean()
    assert 0.15 < held_out < 0.3  # a quarter per user (random) or the last fifth by time (temporal)
    assert val.config.n_users == feed.config.n_users and val.config.n_videos == feed.config.n_videos
    assert val.videos[["topic", "creator_id"]].equals(feed.videos[["topic", "creator_id"]])


def test_tune_refuses_the_simulator() -> None:
    with pytest.raises(ConfigError, match="pass --data"):
        TuneConfig()


@pytest.mark.slow
def test_tune_writes_the_choice_that_train_then_uses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tune` prints the validation table without reading the test split; `train --data` then trains with the
    chosen flags; `--final` scores the choice on the test split over the seeds."""
    folder = write_ml100k(tmp_path / "ml-100k", 40, 120)
    data = ["--data", f"movielens:{folder}", "--protocol", "random"]
    argv = [
        "tune",
        *data,
        "--max-epochs",
        "2",
        "--seeds",
        "2",
        "--eval-users",
        "40",
        "--batch-size",
        "64",
        "--final",
    ]
    assert run_cli("recsys", pipeline.STEPS, argv) == 0
    art = Artifacts("recsys", DataConfig(data=f"movielens:{folder}", protocol="random").variant())
    tuned = json.loads(art.path("tuned.json").read_text())
    names = [row["name"] for row in tuned["ablation"]]
    assert names[0].startswith("before") and len(names) >= 2 + len(CHANGES)
    assert 1 <= tuned["flags"]["epochs"] <= 2 and tuned["chosen"]["seeds"] == 2
    final = json.loads(art.path("final.json").read_text())
    assert final["seeds"] == 2 and 0 <= final["two_tower"]["ndcg@10"]["mean"] <= 1
    assert set(final["ndcg_cold_warm"]) >= {"most-popular", "two-tower, tuned"}
    out = capsys.readouterr().out
    assert "the test split is not read" in out and "read once" in out
    assert run_cli("recsys", pipeline.STEPS, ["train", *data, "--batch-size", "64"]) == 0
    meta = json.loads(art.path("model/config.json").read_text())
    assert meta["train"]["epochs"] == tuned["flags"]["epochs"]
    for name, value in tuned["flags"].items():
        assert meta["tower"].get(name, meta["train"].get(name, value)) == value


def test_a_rating_of_an_item_the_item_file_does_not_list_is_refused(tmp_path: Path) -> None:
    """An altered copy's extra row is well-formed but foreign: its item is in no MovieLens item file."""
    folder = write_ml100k(tmp_path / "ml", 10, 30)
    with (folder / "u.data").open("a") as f:
        f.write("999\t999999\t5\t874700000\n")
    rows = len((folder / "u.data").read_text().splitlines())
    with pytest.raises(DataFormatError, match=rf"u.data: row {rows}: expected an item .* got item 999999"):
        movielens_feed(folder, "random")
