"""recsys_two_tower: video-feed recommender — two-tower retrieval, Feast features, FAISS, 50 ms p99."""

from infra.system import SystemSpec

SYSTEM = SystemSpec(
    name="recsys",
    package="systems.recsys_two_tower",
    question="Design a video-feed recommender for 100M users at 50 ms p99; why two-tower retrieval first?",
    steps=(
        "data",
        "features",
        "train",
        "tune",
        "index",
        "sweep",
        "rank",
        "eval",
        "cross",
        "capacity",
        "serve",
        "bench",
        "all",
    ),
    status="working",
)
