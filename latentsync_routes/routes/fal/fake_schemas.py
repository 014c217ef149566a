"""fal-ai/latentsync's input validation, answering like fal.

fal validates in the runner; a bad input surfaces as HTTP 422 on the result fetch with a pydantic-style
``{"detail": [{loc, msg, type, url, ctx}]}`` body. FakeFal validates the same way, so an SDK that sends a
value the real endpoint rejects fails offline too.
"""

from __future__ import annotations

from typing import Any


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fal_error(loc: str, msg: str, kind: str, **ctx: Any) -> dict[str, Any]:
    err: dict[str, Any] = {"loc": ["body", loc], "msg": msg, "type": kind, "url": f"https://docs.fal.ai/errors/#{kind}"}
    if ctx:
        err["ctx"] = ctx
    return err


def validate_fal_latentsync(arguments: Any, can_fetch: Any) -> list[dict[str, Any]]:
    """fal-ai/latentsync input errors in fal's 422 ``detail`` shape; empty when valid.

    ``can_fetch(url) -> bool | None`` says whether the runner could download a URL
    (None: cannot tell offline, accepted). Ranges follow fal's model card:
    ``guidance_scale`` 1-2, ``loop_mode`` pingpong|loop, ``seed`` integer or null.
    """
    if not isinstance(arguments, dict):
        return [
            {
                "loc": ["body"],
                "msg": "Input should be a valid dictionary",
                "type": "dict_type",
                "url": "https://docs.fal.ai/errors/#dict_type",
            }
        ]
    errors: list[dict[str, Any]] = []
    for name in ("video_url", "audio_url"):
        value = arguments.get(name)
        if value is None:
            errors.append(_fal_error(name, "Field required", "missing"))
        elif not isinstance(value, str):
            errors.append(_fal_error(name, "Input should be a valid string", "string_type"))
        elif can_fetch(value) is False:
            errors.append(
                _fal_error(name, f"Failed to download the file from {value}", "file_download_error", url=value)
            )
    scale = arguments.get("guidance_scale")
    if scale is not None:
        if not _is_number(scale):
            errors.append(_fal_error("guidance_scale", "Input should be a valid number", "float_type"))
        elif scale < 1:
            errors.append(
                _fal_error("guidance_scale", "Input should be greater than or equal to 1", "greater_than_equal", ge=1)
            )
        elif scale > 2:
            errors.append(
                _fal_error("guidance_scale", "Input should be less than or equal to 2", "less_than_equal", le=2)
            )
    seed = arguments.get("seed")
    if seed is not None and (not _is_number(seed) or float(seed) != int(seed)):
        errors.append(_fal_error("seed", "Input should be a valid integer", "int_type"))
    loop_mode = arguments.get("loop_mode")
    if loop_mode is not None and loop_mode not in ("pingpong", "loop"):
        errors.append(
            _fal_error("loop_mode", "Input should be 'pingpong' or 'loop'", "enum", expected="'pingpong' or 'loop'")
        )
    return errors
