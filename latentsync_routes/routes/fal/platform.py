"""fal's Platform API (``https://api.fal.ai/v1``) and fal's retention headers, as the fal route uses them.

Three Platform API calls, each one request (or a few pages) on an httpx client that already carries the
``Authorization: Key ...`` header; ``base`` is the configured origin (``LATENTSYNC_ROUTES_FAL_BASE_URL``) or
:data:`PLATFORM_URL`, and the paths are fal's own (``/v1/...``):

* ``GET /v1/models/requests/by-endpoint`` lists an endpoint's ended requests with when each was sent (deciding
  an ambiguous submit by time; no payloads, as the route stores none). Source: https://docs.fal.ai/platform-apis/v1/models/requests/by-endpoint
  (checked 2026-12-01).
* ``DELETE /v1/models/requests/{request_id}/payloads`` deletes a request's stored payloads and the CDN files
  of its output (not its inputs), answering ``{"cdn_delete_results": [{"link", "exception"}]}`` (admin key).
  Source: https://docs.fal.ai/platform-apis/v1/models/requests/payloads, linked from fal's data-retention
  page https://docs.fal.ai/model-apis/payloads (checked 2026-12-02).
* ``GET /v1/models/pricing?endpoint_id=...`` answers ``{"prices": [{"endpoint_id", "unit_price", "unit",
  "currency"}], "next_cursor", "has_more"}``. Source: https://docs.fal.ai/platform-apis/v1/models/pricing
  (checked 2026-12-02).

Retention headers (fal's media-expiration and data-retention docs, checked 2026-12-02): a request's output
files follow the ``X-Fal-Object-Lifecycle-Preference`` (``{"expiration_duration_seconds": N}``) sent on
*that request*, uploads follow the one sent on the upload, and ``X-Fal-Store-IO: 0`` keeps fal from storing
the request's payloads (30 days by default). Importing this module imports neither fal-client nor httpx.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ...retry import json_or_none
from ..hosted_lookup import Listed
from .errors import http_failure, platform_error, transient
from .hosts import STORE_IO_HEADER

if TYPE_CHECKING:
    import httpx

    from ...config import Settings
    from ...types import JobRecord

PLATFORM_URL = "https://api.fal.ai"
PRICING_DOCS = "https://docs.fal.ai/platform-apis/v1/models/pricing"
DELETE_DOCS = "https://docs.fal.ai/platform-apis/v1/models/requests/payloads"
LIFECYCLE_HEADER = "X-Fal-Object-Lifecycle-Preference"
#: Time the uploads must outlive the job's deadline: fal reads them before the request starts, which is
#: before the deadline (the submit's X-Fal-Request-Timeout), and a retry of an upload or submit.
FETCH_MARGIN_S = 600
#: Time the output outlives the job's deadline: how long after it ``jobs resume`` (or the same run) can still
#: fetch a job's output after a crash, a full disk or a lost local file. Longer keeps a face on a public
#: (unguessable) URL longer; the policy's retention cap, when lower, wins (docs/safety.md).
RESUME_WINDOW_S = 24 * 3600
#: fal's lifecycle takes whole seconds; nothing is asked to expire sooner than this.
MIN_LIFETIME_S = 60
#: The lookup reads at most this many pages of the request listing.
LOOKUP_PAGES = 3


def lifetime_seconds(settings: Settings, deadline_seconds: float, *, output: bool = False) -> int:
    """The lifetime sent: for the uploads, the shortest that still lets the job start (its deadline plus the
    fetch margin); for the output (``output``), its deadline plus the resume window. Either is cut to the
    policy's retention cap when one is set (then the cap wins, even if the job could outlive its files)."""
    need = math.ceil(max(0.0, deadline_seconds)) + (RESUME_WINDOW_S if output else FETCH_MARGIN_S)
    cap = settings.policy.max_retention_days
    if cap is not None:
        need = min(need, math.floor(cap * 86400))
    return max(MIN_LIFETIME_S, need)


#: The key under which ``record.retention_sent`` keeps the lifecycle sent on the uploads (the plain header
#: name keeps the submit's, which the output follows).
UPLOADS_KEY = f"{LIFECYCLE_HEADER} (uploads)"


def retention_headers(lifetime: int) -> dict[str, str]:
    """The two headers sent on the submit and on every upload."""
    return {LIFECYCLE_HEADER: json.dumps({"expiration_duration_seconds": lifetime}), STORE_IO_HEADER: "0"}


def sent_lifetime(record: JobRecord) -> int | None:
    """The output lifetime the job's submit sent (seconds), as its record keeps it; ``None`` if none was."""
    try:
        value = json.loads(record.retention_sent.get(LIFECYCLE_HEADER) or "null")
        seconds = value.get("expiration_duration_seconds") if isinstance(value, dict) else None
    except ValueError:
        return None
    return int(seconds) if isinstance(seconds, int) and not isinstance(seconds, bool) else None


def _platform_get(
    http: httpx.Client, url: str, params: dict[str, str], *, step: str, timeout: Any, credential_name: str
) -> Any:
    """One Platform API GET: a network failure is transient, an HTTP error is typed; the JSON body or None."""
    import httpx

    try:
        response = http.get(url, params=params, timeout=timeout)
    except httpx.HTTPError as exc:
        raise transient(f"fal {step} request failed: {type(exc).__name__}") from None
    if response.status_code >= 400:
        raise http_failure(response, step=step, credential_name=credential_name)
    return json_or_none(response)


def lookup_requests(
    http: httpx.Client, base: str, endpoint: str, start: datetime, end: datetime, *, timeout: Any, credential_name: str
) -> list[Listed]:
    """Requests of ``endpoint`` listed between ``start`` and ``end`` (by ``sent_at``), without payloads: the
    route sends ``X-Fal-Store-IO: 0``, so fal keeps none to match (https://docs.fal.ai/model-apis/payloads).
    The listing shows a request once it has ended (an unfinished one is not assumed to be listed); the
    template decides by time (:mod:`..hosted_lookup`)."""
    params: dict[str, str] = {"endpoint_id": endpoint, "start": _iso(start), "end": _iso(end), "limit": "100"}
    found: list[Listed] = []
    for _ in range(LOOKUP_PAGES):
        data = _platform_get(
            http,
            f"{base}/v1/models/requests/by-endpoint",
            params,
            step="lookup",
            timeout=timeout,
            credential_name=credential_name,
        )
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise transient("fal's request list is not readable", retryable=False)
        for item in items:
            sent = _parse(item.get("sent_at")) if isinstance(item, dict) else None
            if sent is None or not item.get("request_id") or item.get("endpoint_id", endpoint) != endpoint:
                continue
            found.append(Listed(str(item["request_id"]), sent, started=item.get("started_at") is not None))
        cursor = data.get("next_cursor") if isinstance(data, dict) and data.get("has_more") else None
        if not cursor:
            break
        params["cursor"] = str(cursor)
    return found


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def delete_payloads(http: httpx.Client, base: str, request_id: str, *, timeout: Any) -> tuple[list[str], list[str]]:
    """Ask fal to delete a request's payloads and output files: (what fal says it deleted, what it did not).

    Every line quotes fal's answer; nothing is claimed that fal did not confirm.
    """
    import httpx

    target = f"fal request {request_id} payloads"
    try:
        response = http.delete(
            f"{base}/v1/models/requests/{request_id}/payloads",
            timeout=timeout,
            headers={"Idempotency-Key": f"latentsync-delete-{request_id}"},
        )
    except httpx.HTTPError as exc:
        return [], [f"{target} (the delete request failed: {type(exc).__name__}; fal keeps them)"]
    data = json_or_none(response)
    if response.status_code >= 400:
        kind, detail = platform_error(data)
        detail = detail or (data.get("detail") if isinstance(data, dict) else None)
        detail = f"{kind}: {detail}" if kind and detail else detail
        why = f"HTTP {response.status_code}" + (f": {str(detail)[:200]}" if detail else "")
        hint = " (the delete needs an admin key)" if response.status_code in (401, 403) else ""
        return [], [f"{target} (fal refused the delete, {why}{hint}; fal keeps them)"]
    results = data.get("cdn_delete_results") if isinstance(data, dict) else None
    deleted = [f"{target} (fal answered HTTP {response.status_code})"]
    kept: list[str] = []
    for item in results if isinstance(results, list) else []:
        link = str(item.get("link")) if isinstance(item, dict) else str(item)
        problem = item.get("exception") if isinstance(item, dict) else None
        if problem:
            kept.append(f"{link} (fal output file: fal's delete failed: {str(problem)[:200]})")
        else:
            deleted.append(f"{link} (fal output file, deleted by fal)")
    return deleted, kept


def fetch_unit_price(
    http: httpx.Client, base: str, endpoint: str, *, timeout: Any, credential_name: str
) -> dict[str, Any]:
    """fal's unit price for ``endpoint``: ``{"unit_price", "unit", "currency"}``, or a typed failure."""
    data = _platform_get(
        http,
        f"{base}/v1/models/pricing",
        {"endpoint_id": endpoint},
        step="pricing",
        timeout=timeout,
        credential_name=credential_name,
    )
    prices = data.get("prices") if isinstance(data, dict) else None
    for item in prices if isinstance(prices, list) else []:
        if (
            isinstance(item, dict)
            and item.get("endpoint_id") == endpoint
            and isinstance(item.get("unit_price"), (int, float))
            and not isinstance(item.get("unit_price"), bool)
        ):
            return {
                "unit_price": float(item["unit_price"]),
                "unit": str(item.get("unit") or "unit"),
                "currency": str(item.get("currency") or "USD"),
            }
    raise transient(f"fal's pricing answer has no price for {endpoint}", retryable=False)


def delete_for_record(
    http: httpx.Client | None, base: str, record: JobRecord, *, timeout: Any
) -> tuple[list[str], list[str]]:
    """``jobs delete`` on a fal job: Delete Request Payloads for each of its requests not deleted before
    (``http`` is None without a key). Inputs have no delete API: they are listed with the lifecycle sent."""
    sent = record.retention_sent.get(UPLOADS_KEY) or record.retention_sent.get(LIFECYCLE_HEADER)
    expiry = (
        f"no delete API for inputs; the upload asked fal to expire it ({LIFECYCLE_HEADER}: {sent})"
        if sent
        else "no delete API for inputs and no lifecycle was sent: fal's default retention"
    )
    kept = [f"{uri} ({expiry})" for uri in record.uploaded_uris]
    deleted: list[str] = []
    for request_id in [r for r in (*record.previous_request_ids, record.provider_request_id) if r]:
        target = f"fal request {request_id} payloads"
        if any(line.startswith(target) for line in record.deleted):
            continue  # deleted by an earlier ``jobs delete``: not claimed again
        if http is None:
            kept.append(f"{target} (no FAL_KEY to delete them; fal keeps them)")
            continue
        done, left = delete_payloads(http, base, request_id, timeout=timeout)
        deleted += done
        kept += left
    return deleted, kept


def refresh_price_book(key: str, base: str, endpoint: str, *, credential_name: str) -> dict[str, Any]:
    """Ask fal's pricing API for ``endpoint``'s unit price and write it to the user's price-book override.

    Returns what was written (with the override file's path). Only the unit price, its unit and currency
    are fal's to say; the flat rule of the model card stays the packaged one. It runs outside any job
    (``prices refresh``), so it opens its own client, with the key as fal's fact ``auth`` says.
    """
    import httpx

    from ...pricing import override_path, write_override

    with httpx.Client(headers={"Authorization": f"Key {key}"}) as http:
        price = fetch_unit_price(
            http, base, endpoint, timeout=httpx.Timeout(30.0, connect=10.0), credential_name=credential_name
        )
    source = f"{base}/v1/models/pricing?endpoint_id={endpoint} ({PRICING_DOCS})"
    today = datetime.now(timezone.utc).date()
    values = {"billable_unit_price": price["unit_price"], "billable_unit": price["unit"], "currency": price["currency"]}
    write_override("fal", values, source=source, checked=today)
    return {
        "route": "fal",
        "endpoint_id": endpoint,
        **values,
        "source": source,
        "checked": today.isoformat(),
        "override": str(override_path()),
    }
