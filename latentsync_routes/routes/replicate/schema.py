"""The Replicate version's input schema: fetched once per process and checked before anything is uploaded.

It is its own module because refusing a parameter is a concern apart from running a prediction: the
pinned version's ``openapi_schema`` is fetched once per process (per base URL and version) and every
parameter is checked against its ``Input`` schema (unknown → :class:`UnsupportedParameter`, out of range
→ :class:`InvalidParameter`), so a refusal costs nothing. Importing this module does not import replicate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ...errors import ConfigurationError, InvalidParameter, UnsupportedParameter
from ...retry import StepFailure, run_step
from ..base import JobContext, ParameterSpec

#: Parameters for a version other than the pinned one; that version's OpenAPI schema checks their values.
OVERRIDE_PARAMETERS = [
    ParameterSpec(name="guidance_scale", kind="float"),
    ParameterSpec(name="seed", kind="int"),
    ParameterSpec(name="inference_steps", kind="int"),
]

_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {}
_SCHEMA_LOCK = threading.Lock()


def version_openapi(
    job: JobContext,
    client: Any,
    *,
    model: str,
    version: str,
    base_url: str,
    call: Callable[..., Any],
    failure: Callable[..., StepFailure],
) -> dict[str, Any]:
    """The version's OpenAPI document, fetched once per process (per base URL and version).

    ``client`` is the route's ``replicate.Client``; ``call`` runs an SDK method the way the route runs all
    of them, and ``failure`` maps an SDK exception to a classified :class:`StepFailure`.
    """
    key = (base_url, version)
    with _SCHEMA_LOCK:
        cached = _SCHEMAS.get(key)
    if cached is not None:
        return cached

    def one_try() -> dict[str, Any]:
        from replicate.version import Versions

        try:
            found = call(Versions(client, model).get, version)
        except Exception as exc:  # noqa: BLE001 - mapped by kind below
            status = getattr(exc, "status", None)
            if status in (404, 422):
                raise StepFailure(
                    ConfigurationError(
                        f"Replicate has no version {version} of {model} (HTTP {status}); check "
                        "LATENTSYNC_ROUTES_REPLICATE_VERSION",
                        route="replicate",
                    ),
                    retryable=False,
                ) from None
            raise failure(exc, step="probe") from None
        schema: dict[str, Any] = found.openapi_schema
        return schema

    schema = run_step(job, "probe", one_try, record_success=False)
    with _SCHEMA_LOCK:
        _SCHEMAS[key] = schema
    return schema


def input_schema_check(openapi: dict[str, Any], params: dict[str, Any], *, model: str, version: str) -> None:
    """Refuse ``params`` the version's ``Input`` schema does not accept (names, types, ranges, enums)."""
    schemas = (openapi.get("components") or {}).get("schemas") or {}
    schema = schemas.get("Input")
    short = version[:12]
    if not isinstance(schema, dict):
        raise ConfigurationError(f"Replicate version {short} publishes no Input schema", route="replicate")
    props: dict[str, Any] = schema.get("properties") or {}
    missing = [name for name in ("video", "audio") if name not in props]
    if missing:
        raise ConfigurationError(
            f"Replicate version {short} of {model} takes no {' or '.join(missing)} input; "
            "check LATENTSYNC_ROUTES_REPLICATE_VERSION",
            route="replicate",
        )
    for name, value in params.items():
        spec = props.get(name)
        if spec is None:
            takes = ", ".join(sorted(p for p in props if p not in ("video", "audio"))) or "none"
            raise UnsupportedParameter(name, route="replicate", hint=f"version {short} takes: {takes}")
        _check_value(name, value, _resolve(spec, schemas))


def _resolve(spec: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """Inline cog's ``allOf: [{"$ref": ...}]`` (how it publishes enums) into one flat spec."""
    merged: dict[str, Any] = {}
    for part in spec.get("allOf") or []:
        ref = part.get("$ref") if isinstance(part, dict) else None
        merged.update(schemas.get(ref.rsplit("/", 1)[-1], {}) if isinstance(ref, str) else part)
    merged.update({k: v for k, v in spec.items() if k != "allOf"})
    return merged


def _check_value(name: str, value: Any, spec: dict[str, Any]) -> None:
    kind = spec.get("type")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    wrong = {
        "integer": not (number and float(value).is_integer()),
        "number": not number,
        "string": not isinstance(value, str),
        "boolean": not isinstance(value, bool),
    }.get(str(kind), False)
    if wrong:
        raise InvalidParameter(name, f"must be of type {kind}, got {value!r}", route="replicate")
    if number:
        for key, bad, word in (
            ("minimum", value < spec.get("minimum", value), "below the minimum"),
            ("maximum", value > spec.get("maximum", value), "above the maximum"),
            ("exclusiveMinimum", value <= spec.get("exclusiveMinimum", value - 1), "not above"),
            ("exclusiveMaximum", value >= spec.get("exclusiveMaximum", value + 1), "not below"),
        ):
            if key in spec and bad:
                raise InvalidParameter(
                    name, f"{value!r} is {word} {spec[key]:g} (Replicate version schema)", route="replicate"
                )
    if "enum" in spec and value not in spec["enum"]:
        raise InvalidParameter(name, f"{value!r} is not one of {spec['enum']}", route="replicate")
