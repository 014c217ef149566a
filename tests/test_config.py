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
    bad.write_text('fal_base_url = "http://example.com"\n')
    with pytest.raises(ConfigurationError, match="loopback"):
        load_settings(bad)


def test_base_url_rules() -> None:
    assert load_settings(fal_base_url="http://127.0.0.1:8765/").fal_base_url == "http://127.0.0.1:8765"
    assert load_settings(replicate_base_url="https://proxy.example").replicate_base_url == "https://proxy.example"
    with pytest.raises(ValueError, match="loopback"):
        load_settings(replicate_base_url="http://proxy.example")


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

    client = LipSyncClient(route="fal", fal_key=SECRET)
    assert SECRET not in repr(client)
    assert SECRET not in repr(client.route("fal").__dict__)
