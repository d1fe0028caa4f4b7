"""`mlsd demo [system ...]` (what `make demo` runs): each system's console on 127.0.0.1, built first if missing.

For each system in turn: `mlsd <system> serve --scale small` on its own port (the serve step first runs the steps
whose artifacts are missing, so a fresh clone builds here, one system at a time so they do not share the two
cores), waited on until /readyz answers. Then an index page linking the consoles, the URLs and the admin token:
MLSD_ADMIN_TOKEN when it is set, else a fresh one. The token is printed once, on this terminal; the servers get
it through their environment, never a URL or a log. Ctrl-C stops them all.
"""

from __future__ import annotations

import argparse
import html
import http.server
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import httpx

from infra.console import print_rows

PORTS = {"recsys": 8701, "ctr": 8702, "fraud": 8703, "rag": 8704}  # the index page on 8700
READY_TIMEOUT_S = 900.0  # the build of a fresh clone, then loading


def _wait_ready(proc: subprocess.Popen, url: str, timeout_s: float) -> str:
    """'ready', or why not: the server exited, or /readyz said why it is not ready when the time ran out."""
    deadline, last = time.monotonic() + timeout_s, "not answering"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with code {proc.returncode} (its output is above)"
        try:
            r = httpx.get(f"{url}/readyz", timeout=2, trust_env=False)
            if r.status_code == 200:
                return "ready"
            last = r.json().get("message", last)
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return f"not ready after {timeout_s:.0f} s: {last}"


def _index_page(rows: list[tuple[str, str, str]]) -> bytes:
    links = "".join(
        f'<li><a href="{html.escape(url)}">{html.escape(name)}</a> — {html.escape(state)}</li>'
        for name, url, state in rows
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        '<title>mlsd demo</title></head><body style="font-family: system-ui; max-width: 640px; margin: 2rem auto">'
        f"<h1>mlsd: the interviewer's consoles</h1><ul>{links}</ul>"
        "<p>The admin token is on the terminal that ran <code>make demo</code>.</p></body></html>"
    ).encode()


def serve_index(port: int, rows: list[tuple[str, str, str]]) -> http.server.ThreadingHTTPServer:
    body = _index_page(rows)

    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # quiet: the servers' own logs are what matters
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="mlsd demo", description=__doc__.splitlines()[0])
    parser.add_argument("systems", nargs="*", help=f"of {', '.join(PORTS)}; default: all four")
    parser.add_argument("--scale", default="small")
    args = parser.parse_args(list(argv))
    unknown = [s for s in args.systems if s not in PORTS]
    if unknown:
        parser.error(f"unknown system {unknown[0]!r}; systems: {', '.join(PORTS)}")
    chosen = args.systems or list(PORTS)
    token = os.environ.get("MLSD_ADMIN_TOKEN") or secrets.token_urlsafe(24)
    env = os.environ | {"MLSD_ADMIN_TOKEN": token, "MLSD_SCALE": args.scale}
    # fraud's velocity state in Redis (so its "Redis down" switch has a Redis to lose), in a namespace of its own
    env.setdefault("MLSD_FRAUD_STORE", "redis")
    env.setdefault("MLSD_FRAUD_NAMESPACE", "demo")
    procs: list[subprocess.Popen] = []
    signal.signal(
        signal.SIGTERM, lambda *_: sys.exit(0)
    )  # a `kill` stops the servers too (the finally below)
    rows: list[tuple[str, str, str]] = []
    try:
        for name in chosen:
            port, url = PORTS[name], f"http://127.0.0.1:{PORTS[name]}"
            print(
                f"mlsd demo: {name}: building what is missing (--scale {args.scale}), then serving on {url}"
            )
            t0 = time.monotonic()
            cmd = [sys.executable, "-m", "mlsd.cli", name, "serve", "--scale", args.scale,
                   "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
            procs.append(subprocess.Popen(cmd, env=env))
            state = _wait_ready(procs[-1], url, READY_TIMEOUT_S)
            rows.append((name, url + "/", f"{state} in {time.monotonic() - t0:.0f} s"))
        index = serve_index(8700, rows) if len(chosen) > 1 else None
        print_rows(
            "mlsd demo", ["system", "open", "state"],
            [*rows, *([("all", "http://127.0.0.1:8700/", "index page")] if index else [])],
        )  # fmt: skip
        print(f"admin token (the page asks for it once; keep it off URLs and chats): {token}")
        print("Ctrl-C stops the servers.")
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
