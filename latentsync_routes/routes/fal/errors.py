"""How fal's error answers map onto the package's error tree, with fal's retry and billing rules.

Its own module so the fal route stays its single tries of each step; these are pure functions of an
httpx response (importing this module imports neither fal-client nor httpx).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import JobCancelled, ProviderError
from ...pricing import fal_units_cost
from ...retry import ErrorAnswer, StepFailure, classify_http, json_or_none, retry_after_of

if TYPE_CHECKING:
    import httpx

ROUTE = "fal"
#: A runner's 422 that came without ``x-fal-billable-units``: fal says such a failure may be charged.
UNREPORTED_422 = "fal reported no billable units for this runner's 422, which fal may still charge"


def transient(message: str, request_id: str | None = None, *, retryable: bool = True) -> StepFailure:
    """A failure of fal's transport or an unreadable answer (retryable unless said otherwise)."""
    return StepFailure(ProviderError(message, route=ROUTE, request_id=request_id), retryable=retryable)


def billable_units(response: httpx.Response) -> float | None:
    """The raw ``x-fal-billable-units`` of an answer, or ``None`` when fal sent none (or an unreadable one)."""
    raw = response.headers.get("x-fal-billable-units")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def http_failure(
    response: httpx.Response, *, step: str, credential_name: str, request_id: str | None = None
) -> StepFailure:
    """Read a fal error answer (its body, billing and request-id headers) for the one classifier."""
    status = response.status_code
    request_id = response.headers.get("x-fal-request-id") or request_id
    body = json_or_none(response)
    detail = body.get("detail") if isinstance(body, dict) else None
    platform_type, platform_message = platform_error(body)
    detail = detail if detail is not None else platform_message
    error_type = (
        (body.get("error_type") if isinstance(body, dict) else None)
        or platform_type
        or response.headers.get("x-fal-error-type")
    )
    if status == 499:
        return StepFailure(
            JobCancelled(
                f"fal reports request {request_id} was cancelled ({error_type})",
                route=ROUTE,
                request_id=request_id,
                status_code=status,
            ),
            retryable=False,
        )
    if status == 422 or (status == 400 and isinstance(detail, list)):
        fields, text = validation_details(detail)
        units = billable_units(response)
        billed = fal_units_cost(units) if units else 0.0
        if billed:
            note = f"; fal billed {units:g} units (${billed:.4f})"
        elif units is None and step == "fetch":  # a runner's 422 may be charged (fact invalid-input-billing)
            note = f"; {UNREPORTED_422}"
        else:
            note = "; fal reported no billable units"
        answer = ErrorAnswer(
            status, text, request_id, input_rejected=True, fields=fields, billed_amount=billed, billing_note=note
        )
    else:
        ingress = status in (502, 503, 504) and "x-fal-request-id" not in response.headers
        shown = detail or (response.text if "json" in response.headers.get("content-type", "") else "")
        text = "an error page from its ingress, no request id" if ingress else str(shown or "no detail")[:300]
        billing = "; fal never bills server errors" if status >= 500 else ""
        answer = ErrorAnswer(
            status, text, request_id, retry_after_of(response), billing_note=billing, error_type=error_type
        )
    return classify_http(answer, route=ROUTE, provider="fal", step=step, credential_name=credential_name)


def platform_error(body: Any) -> tuple[str | None, str | None]:
    """(type, message) of a Platform API error, ``{"error": {"type", "message"}}`` (fact platform-errors)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None
    kind, message = error.get("type"), error.get("message")
    return (str(kind) if kind else None), (str(message) if message else None)


def validation_details(detail: Any) -> tuple[list[str], str]:
    """Field names and a readable summary from fal's ``{"detail": [{loc, msg, type}, ...]}``."""
    if not isinstance(detail, list):
        return [], str(detail)[:300] if detail else "no detail given"
    items = [item if isinstance(item, dict) else {"msg": str(item)[:200]} for item in detail]
    fields = [".".join(str(p) for p in item.get("loc") or [] if p != "body") or "input" for item in items]
    text = "; ".join(f"{field}: {item.get('msg', 'invalid')}" for field, item in zip(fields, items, strict=True))
    return fields, text or "no detail given"
