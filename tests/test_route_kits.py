"""Route kits: the registry is the one list of routes, and each kit's folder holds its facts.

The slow test at the end is the kit's promise: a copy of ``routes/wavespeed/`` under a new name, with its
names changed and one registry line, appears in every command that lists routes and runs the contract
suite, with no other file touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from latentsync_routes.routes import REGISTRY
from latentsync_routes.routes.base import route_info
from latentsync_routes.routes.kit import FakeSpec, RouteKit, RouteSettings, settings_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_kit_lives_in_its_routes_folder_and_its_route_reads_its_settings(name: str) -> None:
    kit = REGISTRY[name]
    assert kit.name == name and kit.package == f"latentsync_routes.routes.{name}"
    info = route_info(name)
    assert info.name == name and kit.route_class().name == name
    # The RouteInfo shows the kit's settings, never a second copy of them.
    assert (info.credential_env, info.base_url_env, info.default_base_url) == (
        kit.settings.credential_env,
        kit.settings.base_url_env,
        kit.settings.default_base_url,
    )
    assert (kit.fake is None) == (kit.kind == "local")


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_fact_sheet_gives_a_source_and_a_date_for_every_fact(name: str) -> None:
    facts = REGISTRY[name].facts()
    assert facts, f"{name} has an empty fact sheet"
    assert len({fact.id for fact in facts}) == len(facts), "fact ids are unique within a route"
    for fact in facts:
        assert re.fullmatch(r"[a-z0-9-]+", fact.id), fact.id
        assert fact.statement.strip() and fact.source.startswith("https://"), fact
        assert date(2025, 1, 1) <= fact.checked <= date.today(), fact
    sources = {fact.source for fact in facts}
    info = route_info(name)
    # Every page the route's facts cite is in its fact sheet (one table per fact).
    cited = [*info.sources, *([info.failure_billing_source] if info.failure_billing_source else [])]
    assert set(cited) <= sources, set(cited) - sources


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_kit_prices_itself_with_a_source_and_a_date(name: str) -> None:
    entry = REGISTRY[name].prices()
    assert entry["source"].startswith("https://") and date.fromisoformat(entry["checked"])


def test_the_docs_route_tables_are_the_registry() -> None:
    routes_md = (ROOT / "docs" / "routes.md").read_text("utf-8")
    block = routes_md.split("<!-- route-settings -->\n", 1)[1].split("\n<!-- /route-settings -->", 1)[0]
    assert block == settings_table(REGISTRY)
    readme = (ROOT / "README.md").read_text("utf-8")
    table = readme.split("| route | where it runs |", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"^\| `([a-z0-9_]+)` \|", table, flags=re.M) == list(REGISTRY)


def test_the_pages_fakes_mode_never_reads_a_real_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``--fakes`` every route with a fake gets its dummy key; one without is blocked, and no real key
    is read from the environment or the keyring, not even for that blocked route."""
    import keyring

    from latentsync_routes.config import load_settings
    from latentsync_routes.ui.fakes import fake_providers

    asked: list[tuple[str, str]] = []

    def spy(service: str, user: str) -> str:
        asked.append((service, user))
        return "real-key-from-keyring"

    monkeypatch.setattr(keyring, "get_password", spy)
    for kit in REGISTRY.values():
        if kit.settings.credential_env:
            monkeypatch.setenv(kit.settings.credential_env, "real-key-from-env")
    # A hosted route with no fake (its kit otherwise a copy of WaveSpeed's), registered for this test only.
    bare = RouteKit(
        name="bare",
        package="latentsync_routes.routes.wavespeed",
        route="route:WaveSpeedRoute",
        settings=RouteSettings(credential_env="BARE_API_KEY", default_base_url="https://bare.example"),
    )
    monkeypatch.setitem(REGISTRY, "bare", bare)
    monkeypatch.setenv("BARE_API_KEY", "real-key-from-env")
    with fake_providers(load_settings(home=tmp_path / "home"), fast=True, poll_interval=0.05) as setup:
        client = setup.client
        assert "bare" in setup.blocked and "bare" not in setup.urls and "local" in setup.blocked
        for name, kit in REGISTRY.items():
            found = client.credential(name)
            if kit.fake is not None:
                assert found is not None and found.source == "argument"
                assert found.value.get_secret_value() == kit.fake.dummy_credential
                assert client.settings.base_url_for(name) == setup.urls[name]
            else:
                assert found is None
        assert [info.name for info in client.routes()] == [r.name for r in map(route_info, REGISTRY)]
    assert asked == []


def _read_json(stream: Any) -> Any:
    """The first JSON document on a stream that stays open (the fakes serve until stopped)."""
    text = ""
    for line in stream:
        text += line
        try:
            return json.loads(text)
        except ValueError:
            continue
    raise AssertionError(f"no JSON document in {text!r}")


def _copy_wavespeed_as(root: Path, name: str) -> None:
    """What a contributor does: copy the folder, rename the class and the kit's names, add one line."""
    routes = root / "latentsync_routes" / "routes"
    shutil.copytree(routes / "wavespeed", routes / name, ignore=shutil.ignore_patterns("__pycache__"))
    upper, title = name.upper(), name.title()
    kit = routes / name / "__init__.py"
    kit.write_text(
        kit.read_text("utf-8")
        .replace('NAME = "wavespeed"', f'NAME = "{name}"')
        .replace("WAVESPEED", upper)
        .replace("WaveSpeedRoute", f"{title}Route"),
        "utf-8",
    )
    route = routes / name / "route.py"
    route.write_text(route.read_text("utf-8").replace("class WaveSpeedRoute", f"class {title}Route"), "utf-8")
    registry = routes / "__init__.py"
    text = registry.read_text("utf-8")
    line = '    "wavespeed": kit_of("latentsync_routes.routes.wavespeed"),\n'
    assert line in text
    registry.write_text(
        text.replace(line, line + f'    "{name}": kit_of("latentsync_routes.routes.{name}"),\n'), "utf-8"
    )


@pytest.mark.slow
def test_a_copied_route_folder_and_one_registry_line_make_a_whole_route(tmp_path: Path) -> None:
    from latentsync_routes.testing import write_test_audio, write_test_video

    root = tmp_path / "tree"
    for part in ("latentsync_routes", "tests"):
        shutil.copytree(ROOT / part, root / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _copy_wavespeed_as(root, "wavecopy")
    video = write_test_video(tmp_path / "clip.mp4", seconds=1.0)
    audio = write_test_audio(tmp_path / "voice.wav", seconds=1.0)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("LATENTSYNC_ROUTES_", "FAL_", "REPLICATE_", "WAVE"))
    }
    env.update(
        PYTHONPATH=str(root),
        LATENTSYNC_ROUTES_HOME=str(tmp_path / "home"),
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
    )

    def cli(*args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "latentsync_routes.cli", *args, "--json"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert "wavecopy" in [r["name"] for r in cli("routes")]
    priced = {e["route"]: e for e in cli("estimate", str(video), str(audio))}
    assert priced["wavecopy"]["amount"] == priced["wavespeed"]["amount"] > 0
    doctor = cli("doctor")
    assert "wavecopy" in doctor["routes"] and doctor["credentials"]["wavecopy"]["present"] is False
    fakes = subprocess.Popen(
        [sys.executable, "-m", "latentsync_routes.cli", "fakes", "--json"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert fakes.stdout is not None
        served = _read_json(fakes.stdout)
    finally:
        fakes.terminate()
        fakes.wait(30)
    assert set(served["fakes"]["wavecopy"]["env"]) == {"LATENTSYNC_ROUTES_WAVECOPY_BASE_URL", "WAVECOPY_API_KEY"}
    page = (
        "import json, sys\n"
        "from latentsync_routes.config import load_settings\n"
        "from latentsync_routes.ui.fakes import fake_providers\n"
        "with fake_providers(load_settings(), fast=True, poll_interval=0.05) as setup:\n"
        "    result = setup.client.run(sys.argv[1], sys.argv[2], sys.argv[3], route='wavecopy', consent='synthetic',\n"
        "                              face_check=False)\n"
        "    print(json.dumps({'urls': setup.urls, 'route': result.route, 'state': result.record.state}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", page, str(video), str(audio), str(tmp_path / "out.mp4")],
        cwd=root,
        env={**env, "LATENTSYNC_ROUTES_POLICY__DEADLINE_CHECK": "false"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    ran = json.loads(done.stdout.strip().splitlines()[-1])
    assert "wavecopy" in ran["urls"] and (ran["route"], ran["state"]) == ("wavecopy", "fetched")
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests/test_contract.py"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    ids = collected.stdout.splitlines()
    copies = [i for i in ids if "[wavecopy" in i]
    assert copies and len(copies) == len([i for i in ids if "[wavespeed" in i])
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_contract.py", "-k", "wavecopy"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert suite.returncode == 0, suite.stdout[-3000:]
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|skipped|failed)", suite.stdout)}
    # every contract test ran on the copy: passed, or skipped as for WaveSpeed (a provider without a cancel)
    assert counts.get("passed", 0) + counts.get("skipped", 0) == len(copies) and "failed" not in counts, counts


def test_a_kit_without_a_fake_refuses_to_start_one() -> None:
    kit = RouteKit(name="none", package="latentsync_routes.routes.local", route="route:LocalRoute", kind="local")
    with pytest.raises(LookupError, match="no fake"):
        kit.start_fake()
    spec = REGISTRY["wavespeed"].fake
    assert isinstance(spec, FakeSpec) and spec.searchable is False
