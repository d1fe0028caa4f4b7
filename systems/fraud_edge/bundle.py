"""The edge artifact: a versioned folder the device verifies before it swaps to it.

    bundles/v0003/
      model.onnx          the selected variant (fp32 or int8)
      feature_spec.json   names, order and windows of the features the model reads
      thresholds.json     review / decline thresholds and the costs they were chosen for
      manifest.json       version, sha256 of every file, a canary input and its expected score,
                          and an HMAC-SHA256 over all of it (the device holds the key)
    bundles/LIVE          the version the scorer serves; rollback = point it back

sha256 catches corruption; the signature catches tampering. Two kinds: an Ed25519 signature (preferred: the
device holds only the public key, MLSD_FRAUD_VERIFY_KEY, so a stolen device cannot sign a bundle) and the legacy
HMAC-SHA256 (a shared secret, MLSD_FRAUD_BUNDLE_KEY). With a verify key set the scorer requires the Ed25519
signature and ignores the HMAC; without one it checks the HMAC (the demo key, with a loud warning, when unset).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from systems.fraud_edge.config import DEV_BUNDLE_KEY, FraudSettings

log = logging.getLogger("mlsd.fraud")

MANIFEST = "manifest.json"
FILES = ("model.onnx", "feature_spec.json", "thresholds.json")


class BundleRejected(RuntimeError):
    """A bundle failed verification; the scorer keeps the previous one."""


_warned = False


def bundle_key() -> bytes:
    """The HMAC key: MLSD_FRAUD_BUNDLE_KEY; unset, the demo key from git, with a loud warning (once a process):
    anyone who reads this repository can sign a bundle this device accepts."""
    global _warned
    key = FraudSettings().bundle_key
    if key is None:
        if not _warned:
            log.warning(
                "MLSD_FRAUD_BUNDLE_KEY is not set: bundles are signed and verified with the DEMO key in git, "
                "so anyone can forge one. Set MLSD_FRAUD_BUNDLE_KEY to a secret before serving real traffic."
            )
            _warned = True
        return DEV_BUNDLE_KEY.encode()
    return key.get_secret_value().encode()


def generate_keypair(folder: Path) -> tuple[Path, Path]:
    """An Ed25519 key pair as PEM files (private 0600): point MLSD_FRAUD_SIGNING_KEY / MLSD_FRAUD_VERIFY_KEY at them."""
    folder.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    priv_path, pub_path = folder / "bundle_ed25519.pem", folder / "bundle_ed25519.pub.pem"
    priv_path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    priv_path.chmod(0o600)
    pub_path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv_path, pub_path


def signing_key() -> Ed25519PrivateKey | None:
    path = FraudSettings().signing_key
    if path is None:
        return None
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleRejected(f"MLSD_FRAUD_SIGNING_KEY {path} is not an Ed25519 private key")
    return key


def verify_key() -> Ed25519PublicKey | None:
    settings = FraudSettings()
    if settings.verify_key is None:
        private = signing_key()
        return private.public_key() if private is not None else None
    key = serialization.load_pem_public_key(Path(settings.verify_key).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise BundleRejected(f"MLSD_FRAUD_VERIFY_KEY {settings.verify_key} is not an Ed25519 public key")
    return key


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


SIGNATURES = ("hmac", "ed25519")


def _body(manifest: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in manifest.items() if k not in SIGNATURES}, sort_keys=True).encode()


def _sign(manifest: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, _body(manifest), hashlib.sha256).hexdigest()


def write_bundle(
    root: Path,
    model_onnx: bytes,
    feature_spec: dict[str, Any],
    thresholds: dict[str, Any],
    canary: dict[str, Any],
    meta: dict[str, Any],
    key: bytes | None = None,
    make_live: bool = True,
    private_key: Ed25519PrivateKey | None = None,
) -> Path:
    """A new version folder under root (v0001, v0002, ...); returns its path."""
    root.mkdir(parents=True, exist_ok=True)
    versions = sorted(p.name for p in root.glob("v[0-9][0-9][0-9][0-9]"))
    version = f"v{int(versions[-1][1:]) + 1 if versions else 1:04d}"
    path = root / version
    path.mkdir()
    (path / "model.onnx").write_bytes(model_onnx)
    (path / "feature_spec.json").write_text(json.dumps(feature_spec, indent=2))
    (path / "thresholds.json").write_text(json.dumps(thresholds, indent=2))
    manifest = {
        "version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": {name: _sha256(path / name) for name in FILES},
        "feature_spec_hash": feature_spec["spec_hash"],
        "canary": canary,  # {"features": [[...]], "scores": [...], "atol": ...}
        "meta": meta,
    }
    manifest["hmac"] = _sign(manifest, key or bundle_key())
    private_key = private_key or signing_key()
    if private_key is not None:
        manifest["ed25519"] = private_key.sign(_body(manifest)).hex()
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if make_live:
        set_live(root, version)
    return path


def set_live(root: Path, version: str) -> None:
    """Point LIVE at a version (atomic rename, so a reader never sees half a file)."""
    tmp = root / "LIVE.tmp"
    tmp.write_text(version)
    tmp.replace(root / "LIVE")


def live_path(root: Path) -> Path:
    live = root / "LIVE"
    if not live.exists():
        raise FileNotFoundError(f"no live bundle under {root}; run `mlsd fraud train` first")
    return root / live.read_text().strip()


@dataclass(frozen=True)
class VerifiedBundle:
    path: Path
    version: str
    model_onnx: bytes
    feature_spec: dict[str, Any]
    thresholds: dict[str, Any]
    manifest: dict[str, Any]


def verify_bundle(
    path: Path, expected_spec_hash: str, key: bytes | None = None, public_key: Ed25519PublicKey | None = None
) -> VerifiedBundle:
    """Check files, checksums, signature and feature spec; raise BundleRejected naming what is wrong."""
    path = Path(path)
    if not (path / MANIFEST).exists():
        raise BundleRejected(f"bundle {path} has no {MANIFEST}")
    try:
        manifest = json.loads((path / MANIFEST).read_bytes())
        if not isinstance(manifest, dict):
            raise json.JSONDecodeError("not an object", "", 0)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleRejected(f"bundle {path}: {MANIFEST} is not valid JSON ({exc})") from exc
    public_key = public_key or (verify_key() if key is None else None)
    if public_key is not None:
        try:
            public_key.verify(bytes.fromhex(str(manifest.get("ed25519", ""))), _body(manifest))
        except (InvalidSignature, ValueError) as exc:
            raise BundleRejected(
                f"bundle {path}: no valid Ed25519 signature for this device's public key (tampered, unsigned "
                "or signed by another key)"
            ) from exc
    elif not hmac.compare_digest(str(manifest.get("hmac", "")), _sign(manifest, key or bundle_key())):
        raise BundleRejected(f"bundle {path}: manifest signature does not match (tampered or wrong key)")
    # Read each file once, check those bytes, and load those bytes: a file swapped between the check and the
    # load cannot slip through.
    blobs: dict[str, bytes] = {}
    for name in FILES:
        if not (path / name).exists():
            raise BundleRejected(f"bundle {path}: {name} is missing")
        blobs[name] = (path / name).read_bytes()
        if hashlib.sha256(blobs[name]).hexdigest() != manifest.get("files", {}).get(name):
            raise BundleRejected(f"bundle {path}: {name} checksum does not match the manifest")
    try:
        spec = json.loads(blobs["feature_spec.json"])
        thresholds = json.loads(blobs["thresholds.json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleRejected(f"bundle {path}: a JSON file does not parse ({exc})") from exc
    if spec.get("spec_hash") != expected_spec_hash or manifest.get("feature_spec_hash") != expected_spec_hash:
        raise BundleRejected(
            f"bundle {path}: feature spec {spec.get('spec_hash')} != this scorer's {expected_spec_hash}; "
            "the model was trained on different features"
        )
    return VerifiedBundle(
        path=path,
        version=manifest["version"],
        model_onnx=blobs["model.onnx"],
        feature_spec=spec,
        thresholds=thresholds,
        manifest=manifest,
    )
