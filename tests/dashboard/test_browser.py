"""A real browser loads the page: Debian's ``chromium`` headless against the app served
on a free port with seeded data; the DOM it builds has the leaderboard rows and the
charts' ``<svg>``; a screenshot is kept in the test's tmp dir. Without chromium the test
skips on a laptop and fails under ``CI=true``."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.dashboard.conftest import ALL, areas
from tests.services import service_unavailable

TIMEOUT = 60.0


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        service_unavailable("chromium", "not installed (apt-get install chromium)")
    return found


async def _run(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"chromium did not finish within {TIMEOUT} s")
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_chromium_renders_the_dashboard(client: TestClient[Any, Any], tmp_path: Path) -> None:
    browser = _chromium()
    url = str(client.make_url("/?period=week"))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = await _run(browser, *flags, "--dump-dom", url)
    assert "Reviewer Roulette dashboard" in dom
    if "leaderboard" in areas(*ALL):
        assert dom.count('<tr class="entry">') == 3
    assert dom.count("<svg") >= 2
    screenshot = tmp_path / "dashboard.png"
    await _run(browser, *flags, f"--screenshot={screenshot}", "--window-size=390,1600", url)
    assert screenshot.stat().st_size > 1000
