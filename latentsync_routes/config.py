"""Settings and credentials.

Precedence, highest first: arguments in code > ``LATENTSYNC_ROUTES_*`` environment variables > the TOML
file (``config_file=`` or ``LATENTSYNC_ROUTES_CONFIG``) > defaults. A route's own settings (its base URL,
Replicate's version, ...) are ``route_settings[<route>]``; each route's kit names the environment
variables that also set them (``LATENTSYNC_ROUTES_FAL_BASE_URL``, ...), read at the environment's rank.
Credentials follow their own, usual order: explicit argument > the variable the route's kit names
(``FAL_KEY``, ``REPLICATE_API_TOKEN``, ...) > the system keyring (service ``latentsync-routes``, user = the
kit's keyring name, by default the variable's name).

Secrets are held as :class:`pydantic.SecretStr` from the moment they are read, so a repr, a log line or a
traceback shows ``**********`` instead of the key.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import ConfigurationError, InvalidSettings
from .routes import REGISTRY
from .routes.kit import KEYRING_SERVICE
from .types import is_loopback_host

log = logging.getLogger(__name__)

#: Polling faster than this hammers a provider's API (and 0 would spin a CPU).
MIN_POLL_INTERVAL = 0.01
ENV_PREFIX = "LATENTSYNC_ROUTES_"


def _shown_input(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def settings_problem(exc: ValidationError, source: str | None = None) -> InvalidSettings:
    """One line per bad setting, naming its environment variable and config key and what it takes."""
    lines = []
    for problem in exc.errors(include_url=False):
        parts = [str(part) for part in problem["loc"]]
        where = "settings"
        if parts:
            where = f"{ENV_PREFIX}{'__'.join(parts).upper()} (config key {'.'.join(parts)!r})"
        message = str(problem["msg"]).removeprefix("Value error, ")
        given = f"; got {_shown_input(problem['input'])}" if "input" in problem and parts else ""
        lines.append(f"{where}: {message}{given}")
    origin = f" in {source}" if source else ""
    return InvalidSettings(f"invalid setting{'s' if len(lines) > 1 else ''}{origin}: " + "; ".join(lines))


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("latentsync-routes", appauthor=False))


class PolicySettings(BaseModel):
    """The safety checks' knobs; see ``docs/safety.md``."""

    #: a misspelt key (``requires_consent``) would silently leave the check at its default: named instead
    model_config = ConfigDict(extra="forbid")

    require_consent: bool = True
    allow_uploads: bool = True
    max_retention_days: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    intended_use: Literal["commercial", "research", "personal"] = "commercial"
    allowed_weight_licences: list[str] | None = None
    require_failure_billing_documented: bool = True
    require_support_path: bool = True
    max_video_seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_audio_seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_input_bytes: int | None = Field(default=None, gt=0)
    #: Sample the video's frames for a face before uploading it (the checklist's ``face`` row); see
    #: :mod:`latentsync_routes.face_check`. Off only for media known to have no face (synthetic clips).
    face_check: bool = True
    #: Stop a job on a route that uploads media when the face check cannot run (MediaPipe not installed,
    #: the video a URL, the check turned off): a provider may bill a job in which it finds no face.
    require_face_check: bool = False
    #: Stop a job whose expected time (the estimate's) is over its deadline (the checklist's ``deadline``
    #: row). Off only where the estimate does not describe the job, e.g. a loopback fake that answers in
    #: a second whatever the provider would take.
    deadline_check: bool = True


#: What a setting read as JSON from the environment takes, for the error that names it.
_JSON_SHAPES = {
    "route_settings": 'a JSON object of route name to its settings, e.g. {"fal": {"base_url": '
    '"https://gateway.example"}} (or set LATENTSYNC_ROUTES_ROUTE_SETTINGS__<ROUTE>__<KEY> one key at a time)',
    "policy": "a JSON object of policy settings (or set LATENTSYNC_ROUTES_POLICY__<KEY> one key at a time)",
}


def _env_json_problem(exc: ValueError) -> InvalidSettings:
    """pydantic-settings' "error parsing value for field ..." as the variable's name and what it takes."""
    text = str(exc)
    for field, shape in _JSON_SHAPES.items():
        if f'"{field}"' in text:
            return InvalidSettings(f"invalid setting: {ENV_PREFIX}{field.upper()} is not valid JSON; it takes {shape}")
    return InvalidSettings(f"invalid environment setting: {text}")


class Settings(BaseSettings):
    """Everything configurable without code. Field ``x`` is env var ``LATENTSYNC_ROUTES_X``."""

    model_config = SettingsConfigDict(
        env_prefix="LATENTSYNC_ROUTES_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    route: str = "local"
    home: Path = Field(default_factory=default_home)
    #: each route's own settings by route name, e.g. ``{"fal": {"base_url": ...}, "replicate": {"version":
    #: ...}}``; the variables each route's kit names (``LATENTSYNC_ROUTES_FAL_BASE_URL``, ...) fill them too
    route_settings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # NaN would compare false against every price and silently disable a budget: numbers are finite.
    budget_per_call: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    budget_total: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    #: what ``budget_total`` caps: the journal's jobs of this UTC ``day``, this ``month`` or ``all`` (budget.py)
    budget_period: Literal["day", "month", "all"] = "month"
    local_gpu_hour_usd: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    local_version: Literal["auto", "1.5", "1.6"] = "auto"
    local_device: str | None = None
    #: CPU runs keep freed memory in the process (glibc malloc tuning, see ``local/allocator.py``)
    local_keep_freed_memory: bool = True
    deadline_seconds: float = Field(default=1800.0, gt=0, allow_inf_nan=False)
    max_attempts: int = Field(default=5, ge=1)
    retry_max_seconds: float = Field(default=120.0, ge=0, allow_inf_nan=False)
    poll_interval: float = Field(default=1.0, ge=MIN_POLL_INTERVAL, allow_inf_nan=False)
    max_output_bytes: int = Field(default=2 * 1024**3, gt=0)
    jsonl_path: Path | None = None
    #: the quality gate of every run: a job whose output's LSE-C is under it is failed-quality (sync_gate.py)
    min_sync_confidence: float | None = Field(default=None, allow_inf_nan=False)
    #: a syncnet_v2.model to score with instead of the copy ``download --syncnet`` pinned
    syncnet_weights: Path | None = None
    policy: PolicySettings = Field(default_factory=PolicySettings)

    @field_validator("route_settings")
    @classmethod
    def _route_settings(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return check_route_settings(value)

    def route_setting(self, route: str, key: str) -> Any:
        """One of ``route``'s own settings (``route_settings[route][key]``), or ``None``."""
        return self.route_settings.get(route, {}).get(key)

    def base_url_override(self, route: str) -> str | None:
        """The origin ``route`` is pointed at instead of the provider's (a gateway, a fake), if any."""
        given = self.route_setting(route, "base_url")
        return None if given is None else str(given)

    def base_url_for(self, route: str) -> str | None:
        """The origin configured for ``route`` (a gateway, a fake), else the default its kit names."""
        kit = REGISTRY.get(route)
        given = self.route_setting(route, "base_url")
        return given or (kit.settings.default_base_url if kit is not None else None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, KitEnvironment(settings_cls), TomlConfigSettingsSource(settings_cls))

    @property
    def journal_path(self) -> Path:
        return self.home / "jobs.sqlite3"


class KitEnvironment(PydanticBaseSettingsSource):
    """The variables each route's kit names (``LATENTSYNC_ROUTES_FAL_BASE_URL``, ...) as ``route_settings``.

    Read at the environment's rank: below arguments, above the TOML file.
    """

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, dict[str, Any]] = {}
        for name, kit in REGISTRY.items():
            variables = dict(kit.settings.extra)
            if kit.settings.base_url_env:
                variables["base_url"] = kit.settings.base_url_env
            for key, variable in variables.items():
                value = os.environ.get(variable)
                if not value:
                    continue
                if key == "base_url":
                    try:
                        value = check_base_url(value)
                    except ValueError as exc:
                        raise InvalidSettings(f"{variable}: {exc}") from None
                found.setdefault(name, {})[key] = value
        return {"route_settings": found} if found else {}


def known_names() -> set[str]:
    """Every ``LATENTSYNC_ROUTES_*`` variable the package reads: the settings' and each route kit's."""
    from .env_check import OTHER_NAMES

    names = {ENV_PREFIX + field.upper() for field in Settings.model_fields}
    names |= {f"{ENV_PREFIX}POLICY__{field.upper()}" for field in PolicySettings.model_fields}
    for route, kit in REGISTRY.items():
        names |= {name for name in (kit.settings.base_url_env, *kit.settings.extra.values()) if name}
        keys = ["base_url", *kit.settings.extra]  # route_settings one key at a time, as pydantic-settings reads it
        names |= {f"{ENV_PREFIX}ROUTE_SETTINGS__{route.upper()}__{key.upper()}" for key in keys}
    return names | set(OTHER_NAMES)


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build settings from arguments, environment and an optional TOML file."""
    from .env_check import warn_unknown

    warn_unknown(known_names())  # a misspelt variable would otherwise be ignored in silence
    path = config_file or os.environ.get("LATENTSYNC_ROUTES_CONFIG")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not path:
        try:
            return Settings(**overrides)
        except InvalidSettings:
            raise
        except ValidationError as exc:
            raise settings_problem(exc) from None
        except ValueError as exc:  # pydantic-settings' SettingsError: an env value that is not valid JSON
            raise _env_json_problem(exc) from None
    toml_path = Path(path).expanduser()
    if not toml_path.is_file():
        raise ConfigurationError(f"config file not found: {toml_path}")
    _check_toml_types(toml_path)
    bound = type(
        "Settings",
        (Settings,),
        {"model_config": SettingsConfigDict(**{**Settings.model_config, "toml_file": toml_path})},
    )
    try:
        return cast("Settings", bound(**overrides))
    except InvalidSettings:
        raise
    except ValidationError as exc:
        raise settings_problem(exc, f"the environment or {toml_path}") from None
    except ValueError as exc:
        if "error parsing value for field" in str(exc):  # SettingsError: an env value that is not JSON
            raise _env_json_problem(exc) from None
        raise InvalidSettings(f"invalid config file {toml_path}: {exc}") from None
    except OSError as exc:  # an unreadable file
        raise InvalidSettings(f"invalid config file {toml_path}: {exc}") from None


def client_settings(
    settings: Settings | None,
    config_file: str | os.PathLike[str] | None,
    route_settings: dict[str, dict[str, Any]] | None,
    **overrides: Any,
) -> Settings:
    """A client's settings: ``settings`` (else those loaded from ``config_file`` and the environment) under the
    client's own arguments (``None``: not given); ``route_settings`` merge into each route's table."""
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if route_settings:
        given = settings.route_settings if settings is not None else {}
        overrides["route_settings"] = {
            **given,
            **{name: {**given.get(name, {}), **values} for name, values in route_settings.items()},
        }
    if settings is None:
        return load_settings(config_file, **overrides)
    if route_settings:  # model_copy does not validate: check the merged table as loading would
        try:
            overrides["route_settings"] = check_route_settings(overrides["route_settings"])
        except ValueError as exc:
            raise InvalidSettings(f"invalid setting: route_settings: {exc}") from None
    return settings.model_copy(update=overrides)


def check_route_settings(value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Route settings name registered routes only, and a base URL among them follows :func:`check_base_url`."""
    unknown = sorted(set(value) - set(REGISTRY))
    if unknown:
        raise ValueError(f"unknown route {unknown[0]!r}; known routes: {', '.join(REGISTRY)}")
    checked = {}
    for name, given in value.items():
        entry = dict(given)
        if entry.get("base_url") is not None:
            entry["base_url"] = check_base_url(str(entry["base_url"]))
        checked[name] = entry
    return checked


def _check_toml_types(toml_path: Path) -> None:
    """TOML values have types: a string where a number or a flag belongs (``require_consent = "no"``) is a
    mistake to name, not a value to coerce; the environment, where everything is text, is parsed as before."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, tomllib.TOMLDecodeError):
        return  # the settings source reports an unreadable file in its own words
    problems = []
    for key, value in data.items():
        field = Settings.model_fields.get(key)
        if field is None or field.annotation is None:
            continue  # an unknown key: ``extra="forbid"`` names it
        try:
            TypeAdapter(field.annotation).validate_json(json.dumps(value, default=str), strict=True)
        except ValidationError as exc:
            for problem in exc.errors(include_url=False):
                where = ".".join([key, *(str(part) for part in problem["loc"])])
                problems.append(f"config key {where!r}: {problem['msg']}; got {_shown_input(problem.get('input'))}")
    if problems:
        raise InvalidSettings(
            f"invalid setting{'s' if len(problems) > 1 else ''} in {toml_path}: " + "; ".join(problems)
        )


def check_base_url(value: str) -> str:
    """A base URL must be https, or plain http to a loopback address (a fake, a local gateway)."""
    if len(value) > 2048 or any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in value):
        raise ValueError("base URLs must be a URL of at most 2048 characters, without spaces or control characters")
    parts = urlsplit(value)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname)):
        return value.rstrip("/")
    raise ValueError("base URLs must be https, or plain http to a loopback address")


@dataclass(frozen=True)
class Credential:
    """A secret and where it came from (the source is safe to show; the value is not)."""

    value: SecretStr
    source: Literal["argument", "env", "keyring"]
    name: str

    def __repr__(self) -> str:
        return f"Credential(name={self.name!r}, source={self.source!r}, value=SecretStr('**********'))"


def route_credential(route: str, explicit: str | SecretStr | None = None, *, stored: bool = True) -> Credential | None:
    """``route``'s credential as its kit names it (``None`` for a route that needs none).

    With ``stored=False`` only ``explicit`` is used: the environment and the keyring are never read (the
    fakes' mode, where a real key must not reach a route).
    """
    kit = REGISTRY.get(route)
    if kit is None or kit.settings.credential_env is None:
        return None
    env_name = kit.settings.credential_env
    if not stored:
        return _explicit(env_name, explicit)
    return resolve_credential(env_name, explicit, keyring_user=kit.settings.keyring_user)


def _explicit(env_name: str, explicit: str | SecretStr | None) -> Credential | None:
    if explicit is None:
        return None
    value = explicit if isinstance(explicit, SecretStr) else SecretStr(explicit)
    return Credential(value, "argument", env_name) if value.get_secret_value() else None


def resolve_credential(
    env_name: str, explicit: str | SecretStr | None = None, *, keyring_user: str | None = None
) -> Credential | None:
    """Find a credential: explicit argument > environment variable > keyring."""
    given = _explicit(env_name, explicit)
    if given is not None:
        return given
    from_env = os.environ.get(env_name)
    if from_env:
        return Credential(SecretStr(from_env), "env", env_name)
    try:
        import keyring

        from_keyring = keyring.get_password(KEYRING_SERVICE, keyring_user or env_name)
    except Exception as exc:  # noqa: BLE001 - any keyring backend failure means "not there"
        log.debug("keyring unavailable for %s: %s", env_name, type(exc).__name__)
        return None
    if from_keyring:
        return Credential(SecretStr(from_keyring), "keyring", env_name)
    return None
