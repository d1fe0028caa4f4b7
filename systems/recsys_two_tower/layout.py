"""Where every recsys artifact lives, relative to one scale's folder (`<MLSD_DATA_DIR>/recsys/<scale>/`): each path
named once, and the files each step makes (what `Step(needs, makes)` checks). A stage reads `root / SEEN_VIDEOS`
or `art.require(SERVING_INDEX, "index")`, never a path spelled by hand.

data.py and features/ write the FEED and FEATURES files under the names listed here.
"""

from __future__ import annotations

# data: the feed (data.save / data.load)
FEED_CONFIG = "config.json"
FEED = (FEED_CONFIG, "videos.parquet", "users.parquet", "events.parquet", "user_pref.npy", "cluster_norm.npy",
        "duration_pref.npy")  # fmt: skip
EVENTS = "events.parquet"
SOURCE = "source.json"  # --data: which public dataset and split the feed was read from
BENCH_USERS = "bench_users.json"  # --data bench: the users with held-out ratings

# features: Feast's offline files, its repo (registry + online store config), the cold-start list
FEATURE_REGISTRY = "feature_repo/registry.db"
TRENDING = "trending.npy"
FEATURES = ("offline/user_stats.parquet", "offline/video_content.parquet", "offline/video_popularity.parquet",
            FEATURE_REGISTRY, TRENDING)  # fmt: skip

# train: the towers, their ONNX exports, what the user tower needs at serving, the run it came from. The model
# folder is also what MLflow registers and the server unpacks (under SERVING_MODEL_DIR): names inside it are *_FILE
MODEL_DIR = "model"
TWO_TOWER_FILE, MODEL_CONFIG_FILE, SEEN_VIDEOS_FILE = "two_tower.pt", "config.json", "seen_videos.npy"
USER_TOWER_FILE, VIDEO_TOWER_FILE = "user_tower.onnx", "video_tower.onnx"
TWO_TOWER = f"{MODEL_DIR}/{TWO_TOWER_FILE}"
MODEL_CONFIG = f"{MODEL_DIR}/{MODEL_CONFIG_FILE}"
USER_TOWER_ONNX = f"{MODEL_DIR}/{USER_TOWER_FILE}"
VIDEO_TOWER_ONNX = f"{MODEL_DIR}/{VIDEO_TOWER_FILE}"
SEEN_VIDEOS = f"{MODEL_DIR}/{SEEN_VIDEOS_FILE}"
RUN_FILE = "run.json"  # which training run a folder's artifacts came from (provenance.py)
MODEL_RUN = f"{MODEL_DIR}/{RUN_FILE}"
MODEL = (TWO_TOWER, MODEL_CONFIG, USER_TOWER_ONNX, SEEN_VIDEOS, MODEL_RUN)
TRAINING_SET = "training_set.npz"  # the cross-model experiment reuses it
SERVING_MODEL_DIR = "serving_model"  # where the server unpacks the registry's champion

# tune (--data only)
TUNED = "tuned.json"
FINAL = "final.json"
VALIDATION_DIR = "validation"

# index: the catalog's embeddings, the serving index with its setting, the sweep, the run it came from
INDEX_DIR = "index"
CATALOG_EMB = f"{INDEX_DIR}/catalog_emb.npy"
SERVING_INDEX = f"{INDEX_DIR}/serving.faiss"
SWEEP = f"{INDEX_DIR}/sweep.json"
INDEX_RUN = f"{INDEX_DIR}/{RUN_FILE}"
INDEX = (CATALOG_EMB, SERVING_INDEX, SWEEP, INDEX_RUN)

# rank
RANK_DIR = "rank"
RANKER_ONNX = f"{RANK_DIR}/ranker.onnx"
RANK_CATALOG = f"{RANK_DIR}/catalog.npz"
RANK_META = f"{RANK_DIR}/meta.json"
RANK = (RANKER_ONNX, RANK_CATALOG, RANK_META)

# eval, cross
EVAL = "eval.json"
CROSS = "cross.json"
