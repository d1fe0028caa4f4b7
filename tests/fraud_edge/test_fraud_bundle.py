"""The edge bundle: verified before loading; a bad or tampered bundle is refused and the old one stays live."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from systems.fraud_edge.bundle import BundleRejected, live_path, verify_bundle
from systems.fraud_edge.features.velocity import Transaction, feature_spec
from systems.fraud_edge.scorer import EdgeScorer


@pytest.fixture
def bundle_copy(pipeline, tmp_path):
    art, _ = pipeline
    src = live_path(art.root / "bundles")
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return src, dst


def test_good_bundle_verifies_and_scores(pipeline) -> None:
    art, _ = pipeline
    scorer = EdgeScorer()
    version = scorer.load_live(art.root / "bundles")
    d = scorer.score(Transaction("a1", 1000, "c1", "t1", 2500, 48_860_000, 2_350_000))
    assert version == "v0001" and d.mode == "model+rules" and 0.0 <= d.score <= 1.0


@pytest.mark.parametrize(
    "tamper, message",
    [
        (
            lambda p: p.joinpath("model.onnx").write_bytes(
                p.joinpath("model.onnx").read_bytes()[:-7] + b"garbage"
            ),
            "checksum",
        ),
        (lambda p: p.joinpath("model.onnx").unlink(), "missing"),
        (lambda p: _edit_manifest(p, lambda m: m["meta"].update(variant="fp32")), "signature"),
        (lambda p: _edit_thresholds_and_checksum(p), "signature"),
        (lambda p: p.joinpath("manifest.json").write_text("{not json"), "not valid JSON"),
    ],
    ids=["model-bytes", "model-missing", "manifest-edited", "thresholds-and-checksum", "manifest-corrupt"],
)
def test_tampered_bundle_is_refused_and_previous_stays_live(bundle_copy, tamper, message) -> None:
    good, bad = bundle_copy
    scorer = EdgeScorer()
    scorer.load_bundle(good)
    tamper(bad)
    with pytest.raises(BundleRejected, match=message):
        scorer.load_bundle(bad)
    assert scorer.bundle_version == "v0001"
    assert scorer.score(Transaction("b1", 1000, "c1", "t1", 2500, 0, 0)).mode == "model+rules"


def test_wrong_key_is_refused(bundle_copy) -> None:
    good, _ = bundle_copy
    with pytest.raises(BundleRejected, match="signature"):
        verify_bundle(good, feature_spec()["spec_hash"], key=b"another-fleet")


def test_feature_spec_mismatch_is_refused(bundle_copy) -> None:
    good, _ = bundle_copy
    with pytest.raises(BundleRejected, match="feature spec"):
        verify_bundle(good, "0000000000000000")


def test_no_bundle_means_rules_only() -> None:
    d = EdgeScorer().score(Transaction("r1", 1000, "c1", "t1", 300_000, 0, 0))
    assert d.mode == "rules_only" and d.score is None and d.action == "review" and "large_amount" in d.rules


def _edit_manifest(path, edit) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def _edit_thresholds_and_checksum(path) -> None:
    """An attacker who rewrites thresholds and fixes the checksum still cannot forge the HMAC."""
    t = json.loads((path / "thresholds.json").read_text())
    t["decline"] = 2.0  # never decline
    (path / "thresholds.json").write_text(json.dumps(t))
    digest = hashlib.sha256((path / "thresholds.json").read_bytes()).hexdigest()
    _edit_manifest(path, lambda m: m["files"].update({"thresholds.json": digest}))
