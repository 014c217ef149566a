"""An attacker's pass over every input surface: each hostile value is refused with a typed error, and nothing
is read, uploaded or paid (the fakes count every request that reaches them).

Surfaces: the consent text (one rule, one table, applied by the CLI, the page, batch rows and the Python
API), the fakes' dummy keys, manifest fields, CLI arguments, environment variables and the TOML file. The
page's fields, its handlers and its HTTP API called directly are in tests/test_security_page.py.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from latentsync_routes import (
    DummyCredentialRefused,
    InvalidConsent,
    LipSyncClient,
    ManifestError,
    PolicySettings,
    PolicyViolation,
    load_settings,
)
from latentsync_routes.batch import read_manifest
from latentsync_routes.config import InvalidSettings
from latentsync_routes.consent import MIN_LETTERS, checked_consent, consent_problem, normalise_consent
from latentsync_routes.dummy_keys import DUMMY_KEY_PREFIX, DUMMY_KEYS
from latentsync_routes.policy import evaluate
from latentsync_routes.routes.fal import route as fal
from latentsync_routes.routes.replicate import route as replicate
from latentsync_routes.routes.wavespeed import route as wavespeed
from latentsync_routes.testing import FakeFal, FakeReplicate, FakeWaveSpeed, write_test_audio, write_test_video
from latentsync_routes.ui import state

# -- one table of consent texts ----------------------------------------------------------------------------
#: (text, the basis it normalises to, or None when it is not a consent basis)
CONSENTS: list[tuple[str, str | None]] = [
    ("\x1b[2J", None),  # clear screen: the issue's case
    ("\x1b[31m\x1b[0m", None),  # colour on, colour off: stripping only ESC would leave "[31m[0m"
    ("\x1b]0;title\x07", None),  # OSC: set the terminal title
    ("\x9b2J", None),  # the C1 CSI byte
    ("\x00\x01\x02\x7f", None),
    ("\n\t \r", None),
    ("\u200b\u200c\u200d\ufeff", None),  # zero-width characters (Cf)
    ("\u202e\u2066\u2069", None),  # bidi overrides and isolates (Cf)
    ("ok", None),  # two letters: a stray key press, not who agreed and how
    ("12345 #!", None),
    ("a\u200bb", None),
    ("x" * 1001, None),  # oversized
    ("synthetic", "synthetic"),
    ("test", "test"),
    ("signed release #42", "signed release #42"),
    ("\x1b[1msigned\x1b[0m release", "signed release"),
    ("signed\nrelease\u200b #7", "signed release #7"),
    ("Zoë Ångström agreed", "Zoë Ångström agreed"),
    ("本人同意", "本人同意"),
]
REFUSED = [text for text, basis in CONSENTS if basis is None]


@pytest.mark.parametrize(("text", "basis"), CONSENTS, ids=[repr(t)[:24] for t, _ in CONSENTS])
def test_one_consent_rule_for_every_surface(text: str, basis: str | None, tmp_path: Path) -> None:
    assert normalise_consent(text) == basis
    assert (consent_problem(text) is None) == (basis is not None)
    # the checklist row every run, check and estimate goes through (CLI, page, batch, Python API)
    row = next(r for r in evaluate(fal.INFO, PolicySettings(), consent=text) if r.check == "consent")
    assert row.passed == (basis is not None), row.reason
    # the page's run button
    view = state.RouteView("fal", "fal storage", _estimate(), None, [])
    assessment = state.Assessment(state.Inputs("v.mp4", "a.wav", "f"), text, {"fal": view})
    assert state.gate(assessment, "fal", text).enabled == (basis is not None)
    # the Python API and a batch row
    if basis is None:
        with pytest.raises(InvalidConsent):
            checked_consent(text)
        with pytest.raises(InvalidConsent):
            LipSyncClient(settings=load_settings(home=tmp_path), consent=text)
        manifest = tmp_path / "m.jsonl"
        manifest.write_text(json.dumps({"video": "v.mp4", "audio": "a.wav", "output": "o.mp4", "consent": text}))
        if text.strip():  # a blank cell is "not given": the plan's checklist then asks for a basis
            with pytest.raises(ManifestError) as refused:
                read_manifest(manifest)
            assert refused.value.problems[0][0] == 1 and "column consent" in refused.value.problems[0][1]
    else:
        assert checked_consent(text) == basis
        assert LipSyncClient(settings=load_settings(home=tmp_path), consent=text).default_consent == basis


def test_a_few_letters_is_three() -> None:
    assert MIN_LETTERS == 3 and consent_problem("abc") is None and consent_problem("ab") is not None


def _estimate() -> Any:
    from datetime import date

    from latentsync_routes.types import CostEstimate

    return CostEstimate(
        route="fal",
        amount=0.1,
        low=0.1,
        high=0.2,
        is_exact=False,
        basis="b",
        price_source="s",
        price_checked=date(2026, 1, 1),
        expected_wall_seconds=10.0,
    )


# -- the fakes, on loopback, with their dummy keys ---------------------------------------------------------
@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name in (
        "FAL_KEY",
        "REPLICATE_API_TOKEN",
        "WAVESPEED_API_KEY",
        "LATENTSYNC_ROUTES_FAL_BASE_URL",
        "LATENTSYNC_ROUTES_REPLICATE_BASE_URL",
        "LATENTSYNC_ROUTES_WAVESPEED_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    with (
        FakeFal(expected_key=DUMMY_KEYS["fal"], billable_units=40) as f,
        FakeReplicate(expected_token=DUMMY_KEYS["replicate"]) as r,
        FakeWaveSpeed(expected_key=DUMMY_KEYS["wavespeed"]) as w,
    ):
        yield {"fal": f, "replicate": r, "wavespeed": w}


def _nothing_reached(fakes: dict[str, Any]) -> None:
    for name, server in fakes.items():
        assert server.requests == [], f"{name}: {[r.path for r in server.requests]}"
        assert len(server.jobs) == 0


@pytest.fixture
def media(tmp_path: Path) -> tuple[Path, Path]:
    return write_test_video(tmp_path / "clip.mp4", 1.0), write_test_audio(tmp_path / "voice.wav", 1.0)


@pytest.fixture
def no_internet(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every name a connection was attempted to that is not loopback (refused here, before leaving)."""
    tried: list[str] = []
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in ("localhost", "127.0.0.1", "::1"):
            tried.append(name)
            raise socket.gaierror(f"blocked in the test: {name}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    return tried


@pytest.mark.parametrize("consent", ["\x1b[2J", "\u200b\u200b\u200b", "\x00\x01"])
def test_a_control_character_consent_runs_nothing_from_the_cli_or_the_api(
    consent: str, tmp_path: Path, media: tuple[Path, Path], fakes: dict[str, Any]
) -> None:
    settings = load_settings(home=tmp_path / "home", route_settings={"fal": {"base_url": fakes["fal"].url}})
    client = LipSyncClient(settings=settings, credentials={"fal": DUMMY_KEYS["fal"]})
    for route in ("fal", "local"):
        with pytest.raises(InvalidConsent):
            client.run(*media, tmp_path / "o.mp4", route=route, consent=consent)
    with pytest.raises(PolicyViolation):  # the checklist row says the same to anyone who skips the entry points
        client.run(*media, tmp_path / "o.mp4", route="fal", consent=None)
    env = {
        "LATENTSYNC_ROUTES_HOME": str(tmp_path / "cli"),
        "LATENTSYNC_ROUTES_FAL_BASE_URL": fakes["fal"].url,
        "FAL_KEY": DUMMY_KEYS["fal"],
    }
    done = CliRunner().invoke(
        _app(),
        ["run", *map(str, media), "-o", str(tmp_path / "o.mp4"), "--route", "fal", "--consent", consent, "--json"],
        env=env,
    )
    assert done.exit_code == 2 and json.loads(done.stdout)["error"]["type"] == "InvalidConsent"
    assert "\x1b" not in done.stdout
    _nothing_reached(fakes)
    assert client.journal.list() == [] and not (tmp_path / "o.mp4").exists()


# -- dummy keys never go to a real host -------------------------------------------------------------------
def test_the_fakes_print_dummy_keys_with_a_prefix_no_provider_issues() -> None:
    from latentsync_routes.routes import REGISTRY

    # one table: the kits' dummy keys are the ones the fakes accept and `fakes` prints
    assert DUMMY_KEYS == {name: kit.fake.dummy_credential for name, kit in REGISTRY.items() if kit.fake}
    assert set(DUMMY_KEYS) == {"fal", "replicate", "wavespeed"}
    assert all(key.startswith(DUMMY_KEY_PREFIX) for key in DUMMY_KEYS.values())
    assert not DUMMY_KEY_PREFIX.startswith(("r8_", "key_")) and ":" not in DUMMY_KEY_PREFIX


@pytest.mark.parametrize("route", ["fal", "replicate", "wavespeed"])
def test_dummy_keys_exported_without_base_urls_are_refused_before_any_request(
    route: str,
    tmp_path: Path,
    media: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    no_internet: list[str],
    fakes: dict[str, Any],
) -> None:
    info = {"fal": fal.INFO, "replicate": replicate.INFO, "wavespeed": wavespeed.INFO}[route]
    assert info.credential_env is not None
    monkeypatch.setenv(info.credential_env, DUMMY_KEYS[route])
    client = LipSyncClient(settings=load_settings(home=tmp_path / "home"))
    with pytest.raises(DummyCredentialRefused) as refused:
        client.run(*media, tmp_path / "out.mp4", route=route, consent="synthetic")
    message = refused.value.message
    for variable in (
        "LATENTSYNC_ROUTES_FAL_BASE_URL",
        "LATENTSYNC_ROUTES_REPLICATE_BASE_URL",
        "LATENTSYNC_ROUTES_WAVESPEED_BASE_URL",
    ):
        assert variable in message
    assert DUMMY_KEYS[route] not in message and refused.value.exit_code == 2
    with pytest.raises(DummyCredentialRefused):
        client.route(route).secret()  # type: ignore[attr-defined]
    assert client.route(route).credential is None  # dropped: no code path can send it
    assert no_internet == [] and client.journal.list() == []
    # the CLI says the same, exit 2
    done = CliRunner().invoke(
        _app(),
        ["run", *map(str, media), "-o", str(tmp_path / "o.mp4"), "--route", route, "--consent", "synthetic", "--json"],
        env={"LATENTSYNC_ROUTES_HOME": str(tmp_path / "cli")},
    )
    assert done.exit_code == 2 and json.loads(done.stdout)["error"]["type"] == "DummyCredentialRefused"
    # an "override" that names the provider's own host is no override
    monkeypatch.setenv(
        info.base_url_env or "",
        "https://api.replicate.com"
        if route == "replicate"
        else "https://queue.fal.run"
        if route == "fal"
        else "https://api.wavespeed.ai",
    )
    assert LipSyncClient(settings=load_settings(home=tmp_path / "h2")).route(route).availability()
    # exported with the base URL, the same key runs on the fake
    monkeypatch.setenv(info.base_url_env or "", fakes[route].url)
    client = LipSyncClient(settings=load_settings(home=tmp_path / "h3", poll_interval=0.01))
    result = client.run(*media, tmp_path / "ok.mp4", route=route, consent="synthetic")
    assert result.record.state == "fetched" and len(fakes[route].jobs) == 1 and no_internet == []


def _app() -> Any:
    from latentsync_routes.cli import app

    return app


# -- manifests ---------------------------------------------------------------------------------------------
BAD_ROWS: list[tuple[dict[str, Any] | str, str]] = [
    ({"seed": True}, "column seed: must be an integer, not a boolean"),
    ({"seed": "5"}, "column seed: must be an integer, not a string"),
    ({"seed": 1.5}, "column seed: must be an integer"),
    ({"inference_steps": False}, "column inference_steps"),
    ({"guidance_scale": True}, "column guidance_scale"),
    ({"video": 5}, "column video: must be a string"),
    ({"video": ["a.mp4"]}, "column video: must be a string, not an array"),
    ({"route": {"name": "fal"}}, "column route"),
    ({"colour": "red"}, "column 'colour': unknown column"),
    ({"video": "file:///etc/passwd"}, "unsupported scheme 'file'"),
    ({"audio": "gopher://host/x"}, "unsupported scheme 'gopher'"),
    ({"video": "data:video/mp4;base64,AAAA"}, "unsupported scheme 'data'"),
    ({"output": "https://example.com/out.mp4"}, "column output"),
    ({"video": "clip\x00.mp4"}, "column video: contains control characters"),
    ({"video": "a" * 5000}, "column video: 5000 characters"),
    ({"consent": "\x1b[2J"}, "column consent"),
    ('{"video": "a.mp4", "audio": "a.wav", "output": "o.mp4", "output": "p.mp4"}', "column 'output': given twice"),
]


@pytest.mark.parametrize(("row", "said"), BAD_ROWS, ids=[s[:30] for _, s in BAD_ROWS])
def test_a_bad_jsonl_field_is_refused_naming_line_and_column(
    row: dict[str, Any] | str, said: str, tmp_path: Path
) -> None:
    good = {"video": "a.mp4", "audio": "a.wav", "output": "o.mp4"}
    line = row if isinstance(row, str) else json.dumps({**good, **row})
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(good) + "\n" + line + "\n")
    with pytest.raises(ManifestError) as refused:
        read_manifest(path)
    assert [n for n, _ in refused.value.problems] == [2] and said in refused.value.problems[0][1]
    assert refused.value.exit_code == 2


def test_csv_columns_named_twice_or_unknown_are_refused_before_anything_runs(
    tmp_path: Path, media: tuple[Path, Path], fakes: dict[str, Any]
) -> None:
    video, audio = media
    twice = tmp_path / "twice.csv"
    twice.write_text(f"video,audio,output,output\n{video},{audio},a.mp4,b.mp4\n")
    with pytest.raises(ManifestError) as refused:
        read_manifest(twice)
    assert refused.value.problems == [(1, "column 'output': named 2 times in the header (which one is meant?)")]
    unknown = tmp_path / "unknown.csv"
    unknown.write_text(f"video,audio,output,consnet\n{video},{audio},a.mp4,signed release\n")
    seeded = tmp_path / "seeded.jsonl"
    seeded.write_text(json.dumps({"video": str(video), "audio": str(audio), "output": "a.mp4", "seed": True}) + "\n")
    env = {
        "LATENTSYNC_ROUTES_HOME": str(tmp_path / "home"),
        "LATENTSYNC_ROUTES_FAL_BASE_URL": fakes["fal"].url,
        "FAL_KEY": DUMMY_KEYS["fal"],
    }
    for manifest, column in ((twice, "output"), (unknown, "consnet"), (seeded, "seed")):
        done = CliRunner().invoke(
            _app(), ["batch", str(manifest), "--route", "fal", "--consent", "synthetic", "--json"], env=env
        )
        assert done.exit_code == 2, done.output
        problems = json.loads(done.stdout)["error"]["problems"]
        assert problems[0]["line"] in (1, 2) and column in problems[0]["message"]
    _nothing_reached(fakes)


def test_jobs_given_in_code_take_the_same_types(tmp_path: Path) -> None:
    from latentsync_routes.batch.manifest import as_jobs

    with pytest.raises(ManifestError, match="column seed: must be an integer, not a boolean"):
        as_jobs([{"video": "a.mp4", "audio": "a.wav", "output": "o.mp4", "seed": True}], folder=tmp_path)


# -- CLI arguments -----------------------------------------------------------------------------------------
HOSTILE_INPUTS = [
    ("/proc/self/environ", "NotAMediaFile"),
    ("/etc/passwd", "NotAMediaFile"),
    ("../../../../../../etc/passwd", "NotAMediaFile"),
    ("file:///proc/self/environ", "UnsupportedSource"),
    ("FILE:///etc/passwd", "UnsupportedSource"),
    ("gopher://127.0.0.1:25/x", "UnsupportedSource"),
    ("ftp://example.com/clip.mp4", "UnsupportedSource"),
    ("http://169.254.169.254/latest/meta-data", "UnsupportedSource"),  # plain http off loopback
    ("data:video/mp4;base64,AAAA", "UnsupportedSource"),
]


@pytest.mark.parametrize(("given", "kind"), HOSTILE_INPUTS, ids=[g[:28] for g, _ in HOSTILE_INPUTS])
def test_cli_inputs_that_are_not_media_are_refused_typed_and_nothing_is_sent(
    given: str, kind: str, tmp_path: Path, media: tuple[Path, Path], fakes: dict[str, Any]
) -> None:
    _, audio = media
    env = {
        "LATENTSYNC_ROUTES_HOME": str(tmp_path / "home"),
        "LATENTSYNC_ROUTES_FAL_BASE_URL": fakes["fal"].url,
        "FAL_KEY": DUMMY_KEYS["fal"],
    }
    done = CliRunner().invoke(
        _app(),
        ["run", given, str(audio), "-o", str(tmp_path / "o.mp4"), "--route", "fal", "--consent", "synthetic", "--json"],
        env=env,
    )
    error = json.loads(done.stdout)["error"]
    assert done.exit_code == 2 and error["type"] == kind, error
    assert "PATH=" not in done.output and DUMMY_KEYS["fal"] not in done.output
    _nothing_reached(fakes)


@pytest.mark.parametrize(
    "args",
    [
        ["--consent", "\x1b[2J"],
        ["--consent", "\u200b\u200b"],
        ["--consent", "x" * 5000],
        ["--consent", "synthetic", "--seed", "true"],
        ["--consent", "synthetic", "--seed", str(2**40)],
        ["--consent", "synthetic", "--guidance-scale", "nan"],
        ["--consent", "synthetic", "--inference-steps", "-1"],
        ["--consent", "synthetic", "--loop-mode", "\x1b[2J"],
        ["--consent", "synthetic", "--route", "../../etc"],
    ],
    ids=lambda args: repr(args[-1])[:20],
)
def test_cli_options_out_of_type_or_range_are_refused_before_any_upload(
    args: list[str], tmp_path: Path, media: tuple[Path, Path], fakes: dict[str, Any]
) -> None:
    env = {
        "LATENTSYNC_ROUTES_HOME": str(tmp_path / "home"),
        "LATENTSYNC_ROUTES_FAL_BASE_URL": fakes["fal"].url,
        "FAL_KEY": DUMMY_KEYS["fal"],
    }
    route = [] if "--route" in args else ["--route", "fal"]
    done = CliRunner().invoke(_app(), ["run", *map(str, media), "-o", str(tmp_path / "o.mp4"), *route, *args], env=env)
    assert done.exit_code == 2, done.output
    _nothing_reached(fakes)
    assert not (tmp_path / "o.mp4").exists()


# -- environment and TOML ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LATENTSYNC_ROUTES_FAL_BASE_URL", "file:///etc/passwd"),
        ("LATENTSYNC_ROUTES_FAL_BASE_URL", "http://attacker.example"),
        ("LATENTSYNC_ROUTES_FAL_BASE_URL", "https://exa\x1bmple.com"),
        ("LATENTSYNC_ROUTES_ROUTE_SETTINGS", '{"wavespeed": {"base_url": "gopher://127.0.0.1:25"}}'),
        ("LATENTSYNC_ROUTES_WAVESPEED_BASE_URL", "gopher://127.0.0.1:25"),
        ("LATENTSYNC_ROUTES_ROUTE_SETTINGS", '["https://example.com"]'),
        ("LATENTSYNC_ROUTES_BUDGET_PER_CALL", "nan"),
        ("LATENTSYNC_ROUTES_BUDGET_TOTAL", "-1"),
        ("LATENTSYNC_ROUTES_MAX_ATTEMPTS", "true"),
        ("LATENTSYNC_ROUTES_POLICY__MAX_INPUT_BYTES", "1e999"),
        ("LATENTSYNC_ROUTES_POLICY", "not json"),
    ],
)
def test_hostile_environment_settings_are_refused_typed(
    variable: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidSettings) as refused:
        client = LipSyncClient(settings=load_settings(home=tmp_path))
        client.route("fal").availability()
        client.route("fal").base_url()  # type: ignore[attr-defined]
    assert refused.value.exit_code == 2


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ('[route_settings.fal]\nbase_url = "file:///etc/passwd"', "route_settings"),
        ('[route_settings.replicate]\nbase_url = "ftp://example.com"', "route_settings"),
        ("max_attempts = true", "max_attempts"),
        ('max_attempts = "5"', "max_attempts"),
        ('[policy]\nrequire_consent = "no"', "policy.require_consent"),
        ("[policy]\nallow_uploads = 1", "policy.allow_uploads"),
        ('budget_total = "10"', "budget_total"),
        ('unknown_key = "x"', "unknown_key"),
        ("poll_interval = nan", "poll_interval"),
    ],
)
def test_hostile_toml_is_refused_naming_the_key(toml: str, said: str, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(toml + "\n")
    with pytest.raises(InvalidSettings) as refused:
        load_settings(config, home=tmp_path)
    assert said in refused.value.message and refused.value.exit_code == 2
