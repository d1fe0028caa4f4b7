"""Online experimentation shared by every system: assignment, tests, sequential tests, guards."""

from infra.experiments.assignment import Experiment, Layer, bucket, buckets
from infra.experiments.stats import (
    TestResult,
    benjamini_hochberg,
    cluster_ttest,
    confidence_sequence,
    cuped,
    holm,
    msprt_lambda,
    msprt_pvalues,
    srm_check,
    two_proportion_ztest,
    welch_from_moments,
    welch_ttest,
)

__all__ = [
    "Experiment", "Layer", "bucket", "buckets", "TestResult", "benjamini_hochberg", "cluster_ttest",
    "confidence_sequence", "cuped", "holm", "msprt_lambda", "msprt_pvalues", "srm_check",
    "two_proportion_ztest", "welch_from_moments", "welch_ttest",
]  # fmt: skip
