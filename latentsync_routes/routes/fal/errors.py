"""How fal's error answers map onto the package's error tree, with fal's retry and billing rules.

Its own module so the fal route stays its single tries of each step; these are pure functions of an
httpx response (importing this module imports neither fal-client nor httpx).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import AuthenticationError, JobCancelled, ProviderError, ProviderInputRejected
from ...pricing import fal_units_cost
from ...retry import STEP_NOUN, StepFailure, json_or_none, retry_after_of

if TYPE_CHECKING:
    import httpx

ROUTE = "fal"


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


def http_failure(response: httpx.Response, *, step: str, credential_name: str,
                 request_id: str | None = None) -> StepFailure:
    """Map a fal error answer to our error tree, with fal's retry and billing rules."""
    status = response.status_code
    request_id = response.headers.get("x-fal-request-id") or request_id
    body = json_or_none(response)
    detail = body.get("detail") if isinstance(body, dict) else None
    error_type = (body.get("error_type") if isinstance(body, dict) else None) or response.headers.get(
        "x-fal-error-type")
    if status in (401, 403):
        return StepFailure(AuthenticationError(f"fal refused the credential in {credential_name} (HTTP {status}); "
                                               "check that the key is valid and not revoked", route=ROUTE,
                                               request_id=request_id, status_code=status), retryable=False)
    if status == 422 or (status == 400 and isinstance(detail, list)):
        fields, text = validation_details(detail)
        units = billable_units(response)
        billed = fal_units_cost(units) if units else 0.0
        note = f"; fal billed {units:g} units (${billed:.4f})" if billed else "; fal reported no billable units"
        return StepFailure(ProviderInputRejected(f"fal rejected the inputs (HTTP {status}): {text}{note}",
                                                 fields=fields, route=ROUTE, request_id=request_id,
                                                 status_code=status), retryable=False, billed_amount=billed)
    if status == 499:
        return StepFailure(JobCancelled(f"fal reports request {request_id} was cancelled ({error_type})",
                                        route=ROUTE, request_id=request_id, status_code=status), retryable=False)
    # Polls, result fetches and uploads are idempotent: any 5xx or "not now" may be tried again. (A submit
    # never gets here with a 5xx: that one is ambiguous.)
    retryable = status in (408, 409, 429) or status >= 500
    ingress = status in (502, 503, 504) and "x-fal-request-id" not in response.headers
    shown = detail or (response.text if "json" in response.headers.get("content-type", "") else "")
    text = "an error page from its ingress, no request id" if ingress else str(shown or "no detail")[:300]
    kind = f" ({error_type})" if error_type else ""
    billing = "; fal never bills server errors" if status >= 500 else ""
    what = STEP_NOUN.get(step, step)
    error = ProviderError(f"fal answered HTTP {status} to the {what}{kind}: {text}{billing}", route=ROUTE,
                          request_id=request_id, status_code=status, retryable=retryable)
    return StepFailure(error, retryable=retryable, retry_after=retry_after_of(response), error_type=error_type)


def validation_details(detail: Any) -> tuple[list[str], str]:
    """Field names and a readable summary from fal's ``{"detail": [{loc, msg, type}, ...]}``."""
    if not isinstance(detail, list):
        return [], str(detail)[:300] if detail else "no detail given"
    items = [item if isinstance(item, dict) else {"msg": str(item)[:200]} for item in detail]
    fields = [".".join(str(p) for p in item.get("loc") or [] if p != "body") or "input" for item in items]
    text = "; ".join(f"{field}: {item.get('msg', 'invalid')}" for field, item in zip(fields, items, strict=True))
    return fields, text or "no detail given"
