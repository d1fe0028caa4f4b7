"""`mlsd demo`: a mistyped system is one line and exit 2 before anything starts; the index page escapes what it
shows; the one-line usage is in `mlsd --help`."""

import pytest

from mlsd.cli import USAGE
from mlsd.demo import PORTS, _index_page, main


def test_an_unknown_system_is_refused_before_anything_starts(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["recsys", "fruad"])
    assert exc.value.code == 2 and "unknown system 'fruad'" in capsys.readouterr().err


def test_the_index_page_links_every_console_escaped() -> None:
    page = _index_page(
        [(name, f"http://127.0.0.1:{port}/", "ready <in 3 s>") for name, port in PORTS.items()]
    )
    text = page.decode()
    assert all(f'href="http://127.0.0.1:{port}/"' in text for port in PORTS.values())
    assert "<in 3 s>" not in text and "&lt;in 3 s&gt;" in text


def test_usage_names_the_demo() -> None:
    assert "mlsd demo [system ...]" in USAGE
