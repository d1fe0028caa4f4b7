"""ctr: ad click-through-rate prediction with an A/B-testing engine, drift monitoring and skew detection."""

from infra.system import SystemSpec

SYSTEM = SystemSpec(
    name="ctr",
    package="systems.ctr",
    question=(
        "Design ad CTR prediction; A/B-test it; monitor drift; detect train/serving skew "
        "(and why high offline AUC can give flat online lift)"
    ),
    steps=("data", "train", "eval", "serve", "experiment", "monitor", "skew", "bench", "all"),
    status="working",
)
