"""One screenshot per console, for the README: `python -m benchmarks.console_screenshots [system ...]`.

Starts `mlsd demo <systems>` with a token of its own (so the small artifacts are built when missing), and for each
console in headless Chromium (infra.serving.browser): unlocks it, starts generated traffic, turns one knob or
switch partway so the charts show the change, sends one request from the panel, and writes
benchmarks/results/console/<system>.png. Stops the servers at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from infra.config import REPO_ROOT
from infra.serving.browser import chromium_path, open_page
from mlsd.demo import PORTS

OUT = REPO_ROOT / "benchmarks" / "results" / "console"
# per console: traffic rate, the knob or switch turned partway, and the panel request (selector, value, button)
SCENES = {
    "recsys": (30, ("knobs", "nprobe", "2"), ("#recsys-user", "42", "#recsys-send")),
    "rag": (3, ("knobs", "mode", "bm25"), ("#question", "what does error E105 mean", "#ask-button")),
    "fraud": (30, ("faults", "attack", "card_testing"), ("#fraud-card", "c000001", "#fraud-send")),
    "ctr": (60, ("knobs", "ab", "champion vs challenger"), None),  # the raw request form
}


def wait_ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"{url} was not ready after {timeout_s:.0f} s")


def shoot(system: str, token: str, before_s: float, after_s: float) -> Path:
    url = f"http://127.0.0.1:{PORTS[system]}"
    rate, (_, name, value), request = SCENES[system]
    with (
        tempfile.TemporaryDirectory() as tmp,
        open_page(chromium_path() or "chromium", f"{url}/", Path(tmp)) as page,
    ):
        page.wait_for("!!window.mlsd && !!mlsd.series", timeout_s=30)
        page.type_into("#token", token)
        page.click("#token-button")
        page.wait_for("document.getElementById('token-state').textContent === 'unlocked'")
        page.type_into("#traffic-rate", str(rate))
        page.click("#traffic-start")
        time.sleep(before_s)
        page.js(f"(() => {{ const e = document.getElementById('set-{name}'); "
                f"if (e.type === 'checkbox') e.checked = !e.checked; else e.value = {value!r}; "
                "e.dispatchEvent(new Event('change')); })()")  # fmt: skip
        if request is None:
            page.js("document.getElementById('raw-request').open = true")
            page.click("#send-button")
        else:
            page.type_into(request[0], request[1])
            page.click(request[2])
        time.sleep(after_s)
        page.js("window.scrollTo(0, 0)")
        out = OUT / f"{system}.png"
        page.screenshot(out)
        page.click("#traffic-stop")
        if page.errors:
            print(f"{system}: the page logged errors: {page.errors}", file=sys.stderr)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("systems", nargs="*", default=list(SCENES))
    parser.add_argument("--before-s", type=float, default=25.0, help="traffic before the knob turns")
    parser.add_argument("--after-s", type=float, default=25.0, help="traffic after it, before the screenshot")
    args = parser.parse_args()
    if chromium_path() is None:
        raise SystemExit("headless Chromium is not installed (apt-get install chromium)")
    OUT.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    demo = subprocess.Popen([sys.executable, "-m", "mlsd.cli", "demo", *args.systems],
                            env=os.environ | {"MLSD_ADMIN_TOKEN": token})  # fmt: skip
    try:
        for system in args.systems:
            wait_ready(f"http://127.0.0.1:{PORTS[system]}", 1800)
        for system in args.systems:
            print(f"wrote {shoot(system, token, args.before_s, args.after_s).relative_to(REPO_ROOT)}")
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
