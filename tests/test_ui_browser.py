"""The web page in a real headless browser: Debian's chromium (/usr/bin/chromium) driven by Playwright.

The page is the real command, ``latentsync-routes ui --fakes``, in its own process; the flow is a person's:
upload -> estimates and checklist shown -> a hosted route without consent keeps the run disabled -> consent
-> run on the fakes -> the output plays (the video element reports a duration) -> the job is in the history
-> delete it. A screenshot of each step is saved under the test's tmp dir (``screenshots/``); set
``LATENTSYNC_UI_SCREENSHOTS=<folder>`` to keep a copy (docs/ui.png is one of them).

No browser is downloaded: CI installs Debian's chromium (.ci/run). If it is missing the tests FAIL, so a CI
without a browser cannot pass by skipping; only ``LATENTSYNC_UI_BROWSERS=unavailable`` (a machine that
cannot have one, said on purpose) turns that into a skip with its reason.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from latentsync_routes.dummy_keys import DUMMY_KEYS
from latentsync_routes.testing import write_test_audio, write_test_video

CHROMIUM = Path("/usr/bin/chromium")
START_BUDGET_S = 10.0
FAKE_SECRETS = tuple(DUMMY_KEYS.values())

pytestmark = pytest.mark.slow


def _browser_or_fail() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.environ.get("LATENTSYNC_UI_BROWSERS") == "unavailable":
        pytest.skip("LATENTSYNC_UI_BROWSERS=unavailable: no chromium on this machine, the browser test is not run")
    pytest.fail(
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does; "
        "set LATENTSYNC_UI_BROWSERS=unavailable to skip on purpose"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, process: subprocess.Popen[str], url: str, home: Path, wall_s: float, cpu_s: float) -> None:
        self.process, self.url, self.home, self.wall_s, self.cpu_s = process, url, home, wall_s, cpu_s


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``latentsync-routes ui --fakes`` on a free port, with a private home and no real credentials."""
    root = tmp_path_factory.mktemp("ui-server")
    home = root / "home"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LATENTSYNC_ROUTES_", "FAL_", "REPLICATE_", "WAVESPEED_", "GRADIO_"))
    }
    env.update(LATENTSYNC_ROUTES_HOME=str(home), PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    # the uploaded clip is synthetic (no face) and the fakes answer at once: the face and deadline rows are
    # off for this server as for the whole suite (tests/conftest.py); tests/test_face_check.py covers them
    env.update(LATENTSYNC_ROUTES_POLICY__FACE_CHECK="false", LATENTSYNC_ROUTES_POLICY__DEADLINE_CHECK="false")
    port = _free_port()
    log = (root / "server.log").open("w")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "latentsync_routes.cli", "ui", "--fakes", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    url = f"http://127.0.0.1:{port}/"
    cpu = 0.0
    try:
        while True:
            assert process.poll() is None, (root / "server.log").read_text()
            cpu = _cpu_seconds(process.pid)
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() - started < 90, "the page did not answer within 90 s"
            time.sleep(0.05)
        yield Server(process, url, home, time.monotonic() - started, cpu)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_ui_fakes_starts_in_under_10_s_on_loopback(server: Server) -> None:
    """Answers on 127.0.0.1 within 10 s. The wall-clock bound holds on an unshared machine; where other work
    crowds the cores (load above the core count) the process's own CPU time to first answer is held to it."""
    print(f"ui --fakes answered after {server.wall_s:.1f} s wall, {server.cpu_s:.1f} s CPU")
    assert server.cpu_s < START_BUDGET_S
    if os.getloadavg()[0] <= (os.cpu_count() or 1):
        assert server.wall_s < START_BUDGET_S
    page = httpx.get(server.url, timeout=5.0).text
    assert "LatentSync" in page
    # the page serves its own folder only, never other files: not the home, not the cwd, not the environment
    repo = Path(__file__).resolve().parent.parent
    beside_journal = server.home / "ui-fakes" / "notes.txt"  # under the home: the page serves none of it
    beside_journal.parent.mkdir(parents=True, exist_ok=True)
    beside_journal.write_text("not for the page")
    for private in (beside_journal, repo / "pyproject.toml", Path("/proc/self/environ")):
        assert httpx.get(f"{server.url}gradio_api/file={private}", timeout=5.0).status_code == 403
    listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout if shutil.which("ss") else ""
    port = server.url.rsplit(":", 1)[1].strip("/")
    for line in listening.splitlines():
        if f":{port} " in line:
            assert "127.0.0.1:" in line, f"the page listens beyond loopback: {line}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _browser_or_fail()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(executable), args=["--no-sandbox"])
        yield launched
        launched.close()


def test_the_safe_path_in_a_real_browser(server: Server, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    video = write_test_video(tmp_path / "clip.mp4", seconds=2.0, width=96, height=96)
    audio = write_test_audio(tmp_path / "voice.wav", seconds=2.0)
    page = browser.new_page(viewport={"width": 1280, "height": 1700})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.set_default_timeout(60_000)
    expect.set_options(timeout=60_000)  # a shared CI machine can be slow; every wait still has an end
    step = 0

    def shot(name: str) -> None:
        nonlocal step
        step += 1
        page.screenshot(path=str(shots / f"{step}-{name}.png"), full_page=True)

    page.goto(server.url)
    expect(page.locator("#ls-run")).to_be_disabled()
    expect(page.locator("#ls-mode")).to_contain_text("nothing is paid")
    shot("empty")

    # 0. a server path typed in a URL box is refused on the page, never read
    for box in ("#ls-video-url", "#ls-audio-url"):
        typed = page.locator(f"{box} textarea, {box} input").first
        typed.fill("/proc/self/environ")
        typed.press("Enter")
        expect(page.locator("#ls-gate-reason")).to_contain_text("takes an http(s):// URL only")
        typed.fill("")
    expect(page.locator("#ls-run")).to_be_disabled()

    # 1. upload: every route priced, the chosen route's checklist shown, the run still disabled
    page.locator("#ls-video input[type=file]").set_input_files(str(video))
    page.locator("#ls-audio input[type=file]").set_input_files(str(audio))
    expect(page.locator("#ls-estimates-table tbody tr")).to_have_count(4)
    for route in ("local", "fal", "replicate", "wavespeed"):
        expect(page.locator(f'#ls-estimates-table tr[data-route="{route}"]')).to_contain_text("$")
    expect(page.locator("#ls-checklist-table tbody tr").first).to_be_visible()
    expect(page.locator("#ls-run")).to_be_disabled()
    shot("estimates-and-checklist")

    # 2. a hosted route without consent: a STOP row, the run disabled, and the page says why
    page.locator("#ls-route").get_by_label("fal", exact=True).check()
    expect(page.locator("#ls-checklist-table")).to_have_attribute("data-route", "fal")
    expect(page.locator('#ls-checklist-table tr[data-check="consent"]')).to_have_attribute("data-outcome", "STOP")
    expect(page.locator("#ls-gate-reason")).to_contain_text("STOP on fal: consent")
    expect(page.locator("#ls-run")).to_be_disabled()
    shot("no-consent-run-disabled")

    # 3. consent: the checklist passes and the run is enabled
    page.locator("#ls-consent textarea").fill("synthetic test media, no real person")
    expect(page.locator('#ls-checklist-table tr[data-check="consent"]')).to_have_attribute("data-outcome", "pass")
    expect(page.locator("#ls-run")).to_be_enabled()
    expect(page.locator("#ls-gate-reason")).to_contain_text("Ready on fal")
    shot("consent-run-enabled")

    # 4. run on the fakes: live progress, then the output plays and the input plays beside it
    page.locator("#ls-run").click()
    expect(page.locator("#ls-progress-box")).to_be_visible()
    shot("running")
    expect(page.locator("#ls-progress-box")).to_have_attribute("data-done", "true")
    expect(page.locator("#ls-progress-box")).to_have_attribute("data-state", "fetched")
    duration = page.wait_for_function(
        "() => { const v = document.querySelector('#ls-output video');"
        " return v && v.readyState >= 1 && v.duration > 0 ? v.duration : false }"
    ).json_value()
    assert duration > 0
    page.wait_for_function(
        "() => { const v = document.querySelector('#ls-input-side video'); return v && v.readyState >= 1 }"
    )
    page.evaluate("() => { document.querySelector('#ls-output video').currentTime = 0.2 }")
    page.wait_for_function("() => Math.abs(document.querySelector('#ls-input-side video').currentTime - 0.2) < 0.06")
    source = page.evaluate("() => document.querySelector('#ls-output video').currentSrc")
    played = Path(re.sub(r"^.*/file=", "", urllib.parse.unquote(source)))
    served = next(p for p in played.parents if p.name.startswith("latentsync-ui-"))  # the page's own folder
    assert str(server.home) not in source and str(Path.cwd()) not in str(served)
    page.locator("#ls-record-box").get_by_text("production record").click()
    expect(page.locator("#ls-record")).to_contain_text("consent_basis")
    shot("output-plays")

    # 5. the job is in the history, with its cost; the spend chart has its bar
    row = page.locator("#ls-history tbody tr").first
    expect(row).to_contain_text("fal")
    expect(row).to_contain_text("fetched")
    expect(row).to_contain_text("$0.2000")
    expect(page.locator('#ls-spend-chart rect.ls-bar[data-route="fal"]')).to_have_count(1)
    shot("history")
    html = page.content()
    for secret in FAKE_SECRETS:
        assert secret not in html, "a credential reached the page"

    # 6. delete from the history: the output, the staged inputs and the page's copies go
    outputs = list((server.home / "ui-fakes" / "ui" / "uploads").glob("*/output.mp4"))
    assert len(outputs) == 1
    from latentsync_routes.journal import Journal

    job_id = Journal(server.home / "ui-fakes" / "jobs.sqlite3").list()[0].job_id
    page.locator("#ls-history").get_by_text(job_id, exact=True).filter(visible=True).first.click()  # picks the job
    expect(page.locator("#ls-job input")).to_have_value(job_id)
    page.locator("#ls-delete").click()
    expect(page.locator("#ls-job-note textarea")).to_have_value(re.compile("deleted: staged video"))
    expect(page.locator("#ls-history tbody tr").first).to_contain_text("deleted")
    shot("deleted")
    assert not outputs[0].parent.exists()
    assert not [p for p in served.rglob("*.mp4")], "the page kept a copy of the deleted job's media"

    elsewhere = [url for url in requested if not url.startswith((server.url, "data:", "blob:"))]
    assert not elsewhere, f"the page reached beyond its own server: {elsewhere[:5]}"
    keep = os.environ.get("LATENTSYNC_UI_SCREENSHOTS")
    if keep:
        shutil.copytree(shots, keep, dirs_exist_ok=True)
    assert len(list(shots.glob("*.png"))) == step == 8
