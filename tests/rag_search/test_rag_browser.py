"""The rag console in headless Chromium: type a question, click Ask, click a citation, see its source highlighted;
then the console: no page errors, generated traffic moves the charts, the refusal threshold moves the refusal
rate, a bad knob is refused and changes nothing, and nothing changes before the admin token is given.

Driven over the Chrome DevTools Protocol with real mouse events (infra.serving.browser, the one driver).
Chromium missing: skipped locally, a failure under MLSD_REQUIRE_SERVICES=1 (CI installs it).
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from infra.config import get_settings
from infra.serving.browser import open_page
from infra.serving.testing import served_on_loopback
from systems.rag_search.serve import build_app

TOKEN = "rag-console-test-token"


@pytest.fixture(scope="module")
def server_url(world):
    old = os.environ.get("MLSD_ADMIN_TOKEN")
    os.environ["MLSD_ADMIN_TOKEN"] = TOKEN
    get_settings.cache_clear()
    with served_on_loopback(build_app(pipeline=world.pipeline)) as url:
        yield url
    if old is None:
        os.environ.pop("MLSD_ADMIN_TOKEN", None)
    else:
        os.environ["MLSD_ADMIN_TOKEN"] = old
    get_settings.cache_clear()


@pytest.fixture
def page(server_url, tmp_path: Path, chromium: str):
    httpx.post(f"{server_url}/admin/reset", headers={"authorization": f"Bearer {TOKEN}"})
    with open_page(chromium, f"{server_url}/", tmp_path / "profile") as p:
        p.wait_for("!!window.mlsd && !!mlsd.series && !!document.getElementById('set-k')")
        yield p


def unlock(page) -> None:
    page.type_into("#token", TOKEN)
    page.click("#token-button")
    page.wait_for("document.getElementById('token-state').textContent === 'unlocked'")


def test_ask_and_click_a_citation_in_chromium(page) -> None:
    page.click("#question")
    page.send("Input.insertText", text="what does error E105 mean")
    assert page.js("document.getElementById('question').value") == "what does error E105 mean"
    page.click("#ask-button")
    page.wait_for("document.querySelectorAll('#answer a.cite').length > 0")
    assert "E105" in page.js("document.getElementById('answer').textContent")
    assert page.js("document.querySelector('#sources li.active')") is None
    page.click("#answer a.cite")
    n = page.js("document.querySelector('#answer a.cite').dataset.n")
    assert (
        page.wait_for(
            "document.querySelector('#sources li.active') && document.querySelector('#sources li.active').dataset.n"
        )
        == n
    )
    assert page.js("location.hash") == f"#src-{n}"
    assert "sync-error-e105" in page.js("document.querySelector('#sources li.active').textContent")
    assert page.js("document.querySelectorAll('#passages li').length") >= 1
    assert "retrieve_rerank" in page.js("document.getElementById('timings').textContent")  # Server-Timing
    assert page.errors == []


def test_nothing_changes_before_the_token_is_given(page, server_url) -> None:
    page.js("console.error('the collector hears this')")
    page.js("1")
    assert page.errors == ["the collector hears this"]  # so `errors == []` elsewhere means something
    page.errors.clear()
    page.click("#traffic-start")
    page.wait_for("document.getElementById('admin-error').textContent.includes('token')")
    assert page.js("document.getElementById('set-k').value") == "5"
    page.type_into("#token", "not-the-token")
    page.click("#token-button")
    page.wait_for("document.getElementById('admin-error').textContent.startsWith('401')")
    assert page.js("mlsd.token") is None
    assert not httpx.get(f"{server_url}/stats/series").json()["traffic"]["running"]


def test_traffic_moves_the_charts_and_the_refusal_threshold_moves_the_refusal_rate(page, server_url) -> None:
    unlock(page)
    drawn = page.js("mlsd.drawn.latency")
    page.type_into("#traffic-rate", "8")
    page.type_into("#traffic-duration", "40")
    page.click("#traffic-start")
    page.wait_for(f"mlsd.drawn.latency > {drawn} + 4 && mlsd.series.traffic.running", timeout_s=30)
    refused = "(mlsd.series.gauges.refused || []).filter(v => v !== null)"
    page.wait_for(f"{refused}.length >= 2", timeout_s=30)
    assert page.js(f"Math.max(...{refused}.slice(-2))") < 1.0  # most generated questions are answerable
    # the refusal threshold at 1.0: every answer is a refusal, on the chart within seconds
    page.type_into("#set-refuse_below", "1")
    page.js("document.getElementById('set-refuse_below').blur()")  # a typed value is committed on blur
    page.wait_for("mlsd.state.knobs.refuse_below === 1", timeout_s=10)
    page.wait_for(f"{refused}.slice(-1)[0] === 1", timeout_s=30)
    page.click("#reset-button")
    page.wait_for("mlsd.state.knobs.refuse_below < 1", timeout_s=10)
    page.wait_for(f"{refused}.slice(-1)[0] < 1", timeout_s=30)
    page.click("#traffic-stop")
    page.wait_for("!mlsd.series.traffic.running", timeout_s=10)
    assert page.errors == []


def test_a_bad_knob_is_refused_on_the_page_and_changes_nothing(page, server_url) -> None:
    unlock(page)
    page.type_into("#set-k", "99")
    page.js("document.getElementById('set-k').blur()")
    page.wait_for("document.getElementById('admin-error').textContent.startsWith('422 validation_error')")
    assert "k:" in page.js("document.getElementById('admin-error').textContent")
    assert httpx.get(f"{server_url}/stats/series").json()["knobs"]["k"] == 5
    page.wait_for(
        "document.getElementById('set-k').value === '5'"
    )  # the field shows the server's value again
