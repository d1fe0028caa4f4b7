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


def _republish(src, root, **kw):
    """A new bundle under root with src's contents (what train would publish), signed as the settings say."""
    from systems.fraud_edge.bundle import write_bundle

    manifest = json.loads((src / "manifest.json").read_text())
    return write_bundle(
        root,
        (src / "model.onnx").read_bytes(),
        json.loads((src / "feature_spec.json").read_text()),
        json.loads((src / "thresholds.json").read_text()),
        manifest["canary"],
        manifest["meta"],
        make_live=False,
        **kw,
    )


def test_ed25519_signed_bundle_verifies_and_an_hmac_forgery_is_refused(
    pipeline, tmp_path, monkeypatch
) -> None:
    """With a verify key, the device trusts only the Ed25519 signature: a bundle re-signed with the (shared,
    here the demo) HMAC key after an edit is refused, as is one signed by another key or not signed."""
    from systems.fraud_edge.bundle import _sign, bundle_key, generate_keypair

    art, _ = pipeline
    src = live_path(art.root / "bundles")
    priv, pub = generate_keypair(tmp_path / "keys")
    monkeypatch.setenv("MLSD_FRAUD_SIGNING_KEY", str(priv))
    monkeypatch.setenv("MLSD_FRAUD_VERIFY_KEY", str(pub))
    spec_hash = feature_spec()["spec_hash"]
    good = _republish(src, tmp_path / "bundles")
    assert verify_bundle(good, spec_hash).version == good.name

    # an edit, with the checksum and the HMAC fixed up by someone who holds the HMAC key
    forged = tmp_path / "forged"
    shutil.copytree(good, forged)
    (forged / "thresholds.json").write_text(json.dumps({"review": 0.99, "decline": 1.0}))
    manifest = json.loads((forged / "manifest.json").read_text())
    manifest["files"]["thresholds.json"] = hashlib.sha256(
        (forged / "thresholds.json").read_bytes()
    ).hexdigest()
    manifest["hmac"] = _sign(manifest, bundle_key())
    (forged / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleRejected, match="Ed25519"):
        verify_bundle(forged, spec_hash)

    # unsigned (an HMAC-only bundle) and signed by another key: refused
    with pytest.raises(BundleRejected, match="Ed25519"):
        verify_bundle(src, spec_hash)
    _, other_pub = generate_keypair(tmp_path / "other")
    monkeypatch.setenv("MLSD_FRAUD_VERIFY_KEY", str(other_pub))
    with pytest.raises(BundleRejected, match="Ed25519"):
        verify_bundle(good, spec_hash)
