from __future__ import annotations

import logging
from pathlib import Path

import pytest

from latentsync_routes.config import load_settings, resolve_credential
from latentsync_routes.errors import ConfigurationError

SECRET = "fal-secret-value-123:abc"


def test_precedence_argument_env_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "cfg.toml"
    toml.write_text('route = "replicate"\nbudget_per_call = 2.5\n[policy]\nintended_use = "research"\n')
    settings = load_settings(toml)
    assert (settings.route, settings.budget_per_call, settings.policy.intended_use) == ("replicate", 2.5, "research")
    monkeypatch.setenv("LATENTSYNC_ROUTES_ROUTE", "fal")
    assert load_settings(toml).route == "fal"
    assert load_settings(toml, route="local").route == "local"
    monkeypatch.setenv("LATENTSYNC_ROUTES_CONFIG", str(toml))
    assert load_settings().budget_per_call == 2.5


def test_bad_config_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found"):
        load_settings(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('[route_settings.fal]\nbase_url = "http://example.com"\n')
    with pytest.raises(ConfigurationError, match="loopback"):
        load_settings(bad)


def test_base_url_rules() -> None:
    assert load_settings(route_settings={"fal": {"base_url": "http://127.0.0.1:8765/"}}).base_url_for("fal") == (
        "http://127.0.0.1:8765"
    )
    proxy = load_settings(route_settings={"replicate": {"base_url": "https://proxy.example"}})
    assert proxy.base_url_for("replicate") == "https://proxy.example"
    with pytest.raises(ValueError, match="loopback"):
        load_settings(route_settings={"replicate": {"base_url": "http://proxy.example"}})
    with pytest.raises(ValueError, match="unknown route 'nope'"):
        load_settings(route_settings={"nope": {"base_url": "https://proxy.example"}})


def test_route_settings_from_the_kits_variables_code_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each kit's variables fill ``route_settings``: below arguments, above the TOML file."""
    toml = tmp_path / "cfg.toml"
    toml.write_text('[route_settings.replicate]\nversion = "from-toml"\nbase_url = "https://toml.example"\n')
    assert load_settings(toml).route_setting("replicate", "version") == "from-toml"
    monkeypatch.setenv("LATENTSYNC_ROUTES_REPLICATE_VERSION", "from-env")
    monkeypatch.setenv("LATENTSYNC_ROUTES_WAVESPEED_BASE_URL", "http://127.0.0.1:9/")
    settings = load_settings(toml)
    assert settings.route_setting("replicate", "version") == "from-env"
    assert settings.base_url_for("replicate") == "https://toml.example"  # the env sets only the version
    assert settings.base_url_for("wavespeed") == "http://127.0.0.1:9"
    assert (
        load_settings(toml, route_settings={"replicate": {"version": "arg"}}).route_setting("replicate", "version")
        == "arg"
    )
    assert load_settings().base_url_for("replicate") == "https://api.replicate.com"  # the kit's default


def test_credential_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAL_KEY", raising=False)
    stored: dict[tuple[str, str], str] = {}
    import keyring

    monkeypatch.setattr(keyring, "get_password", lambda service, user: stored.get((service, user)))
    assert resolve_credential("FAL_KEY") is None
    stored[("latentsync-routes", "FAL_KEY")] = "from-keyring"
    assert resolve_credential("FAL_KEY").source == "keyring"  # type: ignore[union-attr]
    monkeypatch.setenv("FAL_KEY", "from-env")
    found = resolve_credential("FAL_KEY")
    assert found is not None and found.source == "env" and found.value.get_secret_value() == "from-env"
    explicit = resolve_credential("FAL_KEY", "from-arg")
    assert explicit is not None and explicit.source == "argument"


def test_broken_keyring_means_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring

    def boom(service: str, user: str) -> str:
        raise RuntimeError("no backend")

    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.setattr(keyring, "get_password", boom)
    assert resolve_credential("REPLICATE_API_TOKEN") is None


def test_secret_never_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    credential = resolve_credential("FAL_KEY", SECRET)
    assert credential is not None
    text = repr(credential) + str(credential) + repr(credential.value) + str(credential.value)
    logging.getLogger("test").info("credential %s %r", credential, credential)
    assert SECRET not in text
    assert SECRET not in caplog.text
    from latentsync_routes import LipSyncClient

    client = LipSyncClient(route="fal", credentials={"fal": SECRET})
    assert SECRET not in repr(client)
    assert SECRET not in repr(client.route("fal").__dict__)


# Every environment setting that can be given a value it cannot take: (variable, bad value, what it takes).
BAD_ENV = [
    ("BUDGET_PER_CALL", "abc", "valid number"),
    ("BUDGET_TOTAL", "-1", "greater than or equal to 0"),
    ("LOCAL_GPU_HOUR_USD", "nan", "finite number"),
    ("LOCAL_VERSION", "1.7", "'auto', '1.5' or '1.6'"),
    ("DEADLINE_SECONDS", "0", "greater than 0"),
    ("MAX_ATTEMPTS", "x", "valid integer"),
    ("RETRY_MAX_SECONDS", "soon", "valid number"),
    ("POLL_INTERVAL", "0", "greater than or equal to 0.01"),
    ("MAX_OUTPUT_BYTES", "1e3x", "valid integer"),
    ("FAL_BASE_URL", "http://example.com", "https"),
    ("REPLICATE_BASE_URL", "ftp://x", "https"),
    ("WAVESPEED_BASE_URL", "http://example.com", "https"),
    ("ROUTE_SETTINGS", "abc", "JSON object of route name to its settings"),
    ("ROUTE_SETTINGS", '{"fal": {"base_url": "http://example.com"}}', "https"),
    ("POLICY", "abc", "JSON object of policy settings"),
    ("POLICY__MAX_RETENTION_DAYS", "abc", "valid number"),
    ("POLICY__REQUIRE_CONSENT", "perhaps", "valid boolean"),
    ("POLICY__INTENDED_USE", "evil", "'commercial', 'research' or 'personal'"),
    ("POLICY__MAX_VIDEO_SECONDS", "-3", "greater than 0"),
    ("POLICY__MAX_INPUT_BYTES", "big", "valid integer"),
    ("POLICY__FACE_CHECK", "sometimes", "valid boolean"),
    ("POLICY__ALLOWED_WEIGHT_LICENCES", "openrail", "valid list"),
]


@pytest.mark.parametrize(("name", "value", "takes"), BAD_ENV)
def test_a_bad_environment_setting_names_its_variable(
    name: str, value: str, takes: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from latentsync_routes.config import InvalidSettings

    monkeypatch.setenv(f"LATENTSYNC_ROUTES_{name}", value)
    for config in (None, _empty_toml(tmp_path)):  # with and without a config file
        with pytest.raises(InvalidSettings) as info:
            load_settings(config, home=tmp_path)
        assert f"LATENTSYNC_ROUTES_{name}" in info.value.message and takes in info.value.message
        assert info.value.exit_code == 2


def _empty_toml(tmp_path: Path) -> Path:
    path = tmp_path / "empty.toml"
    path.write_text("")
    return path
