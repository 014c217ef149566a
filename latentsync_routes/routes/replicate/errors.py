"""How Replicate's SDK and transport failures map onto this package's error tree and retry rules.

It is its own module because the mapping is a table of Replicate's rules (which answers mean nothing was
created, which may be retried, when a create is ambiguous), apart from the steps of a job that raise them.
Importing this module does not import replicate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import AmbiguousSubmit, ProviderError
from ...retry import (
    STEP_NOUN,
    ErrorAnswer,
    StepFailure,
    classify_http,
    json_or_none,
    request_never_sent,
    retry_after_of,
)

if TYPE_CHECKING:
    import httpx


def replicate_failure(
    exc: Exception, *, step: str, request_id: str | None, response: httpx.Response | None, credential_name: str
) -> StepFailure:
    """Map an SDK or transport exception to a classified failure; anything else is raised again.

    ``response`` is the last response of the failed call (``ReplicateError`` drops its headers, so the
    Retry-After comes from there, and its body); ``credential_name`` names where the token came from.
    """
    import httpx
    from replicate.exceptions import ReplicateError

    if isinstance(exc, httpx.HTTPError):
        if step == "submit" and not request_never_sent(exc):
            return StepFailure(
                AmbiguousSubmit(
                    f"the create on Replicate may or may not have made a prediction: {type(exc).__name__} after "
                    "the request was sent",
                    route="replicate",
                ),
                retryable=False,
            )
        what = "could not connect" if request_never_sent(exc) else "failed"
        return StepFailure(
            ProviderError(
                f"Replicate {STEP_NOUN.get(step, step)} {what}: {type(exc).__name__}",
                route="replicate",
                request_id=request_id,
            ),
            retryable=True,
        )
    if not isinstance(exc, ReplicateError):
        raise exc
    body = json_or_none(response)
    invalid = body.get("invalid_fields") if isinstance(body, dict) else None
    answer = ErrorAnswer(
        exc.status or 0,
        " ".join(str(exc.detail or exc.title or f"HTTP {exc.status}").split())[:300],
        request_id,
        retry_after_of(response),
        fields=[str(f.get("field", "")).removeprefix("input.") for f in invalid or [] if isinstance(f, dict)],
    )
    return classify_http(answer, route="replicate", provider="Replicate", step=step, credential_name=credential_name)
