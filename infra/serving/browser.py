"""Headless Chromium driven over the DevTools Protocol: the one browser driver of the browser tests and the
console screenshots (`python -m infra.serving.browser`'s callers: tests/*/test_*_browser.py, benchmarks/
console_screenshots.py).

Real mouse events (Input.dispatchMouseEvent), not JS clicks; the page's errors are collected (an uncaught
exception, console.error, a failed load) so a test can assert there were none.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    """The first Chromium on PATH, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Page:
    """A minimal CDP client over one page's websocket; `errors` collects what the page logged as an error."""

    def __init__(self, ws_url: str) -> None:
        self.ws = connect(ws_url, max_size=None, open_timeout=10)
        self.next_id = 0
        self.errors: list[str] = []
        self.send("Runtime.enable")
        self.send("Log.enable")

    def _event(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(
                details.get("exception", {}).get("description") or details.get("text", "exception")
            )
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"{entry.get('text')} ({entry.get('url', '')})")

    def send(self, method: str, **params: Any) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg["result"]
            self._event(msg)

    def js(self, expr: str) -> Any:
        res = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expr}: {res['exceptionDetails'].get('exception', {}).get('description')}")
        return res["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre (scrolled into view first)."""
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView({{block: 'center'}});"
                      " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")  # fmt: skip
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def type_into(self, selector: str, text: str) -> None:
        """Click the field, select what it holds, type `text` over it (real key input)."""
        self.click(selector)
        self.js(f"document.querySelector({json.dumps(selector)}).select()")
        self.send("Input.insertText", text=text)

    def wait_for(self, expr: str, timeout_s: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = self.js(expr)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"waited {timeout_s} s for {expr}")

    def screenshot(self, path: Path) -> None:
        """The whole page as PNG."""
        size = self.js("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=size[0],
            height=size[1],
            deviceScaleFactor=1,
            mobile=False,
        )
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))


@contextmanager
def open_page(binary: str, url: str, profile: Path, width: int = 1600, height: int = 1000) -> Iterator[Page]:
    """Chromium headless on `url`, its page once it has loaded; the browser is closed on exit."""
    proc = subprocess.Popen(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", "--remote-allow-origins=*",
         f"--window-size={width},{height}", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        targets: list[dict] = []
        for _ in range(100):
            listed = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5, trust_env=False).json()
            targets = [t for t in listed if t["type"] == "page"]
            if targets and targets[0]["url"].startswith(url.rstrip("/")):
                break
            time.sleep(0.1)
        page = Page(targets[0]["webSocketDebuggerUrl"])
        page.wait_for("document.readyState === 'complete'")
        try:
            yield page
        finally:
            page.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
