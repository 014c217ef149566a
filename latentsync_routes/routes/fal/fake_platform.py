"""fal's Platform API (``https://api.fal.ai/v1``), played by ``FakeFal`` at its root: request listing,
pricing, billing events and "Delete Request Payloads".

Sources (checked 2026-12-02):

* ``GET /v1/models/requests/by-endpoint``: https://docs.fal.ai/platform-apis/v1/models/requests/by-endpoint
* ``GET /v1/models/pricing?endpoint_id=...`` → ``{"prices": [{"endpoint_id", "unit_price", "unit",
  "currency"}], "next_cursor", "has_more"}``: https://docs.fal.ai/platform-apis/v1/models/pricing
* ``DELETE /v1/models/requests/{request_id}/payloads`` → ``{"cdn_delete_results": [{"link", "exception"}]}``
  (the request's payloads and the CDN files of its *output*; inputs are kept):
  https://docs.fal.ai/platform-apis/v1/models/requests/payloads
* ``GET /v1/models/billing-events`` → ``{"billing_events": [{"request_id", "endpoint_id", "timestamp",
  "output_units", "unit_price", "percent_discount", "cost_estimate_nano_usd"}], "next_cursor", "has_more"}``
  (admin key): https://fal.ai/docs/platform-apis/v1/models/billing-events (checked 2026-12-07)

Kept apart from ``fal.py`` so each fake module stays small; it is a mixin over the fake's job table.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from ...testing._wire import Request, Response, Route, route
from .fake_jobs import FalFailure


@dataclass(frozen=True)
class PayloadDeletion:
    """One "Delete Request Payloads" call the fake answered."""

    request_id: str
    status_code: int
    links: tuple[str, ...]


class FalPlatformAPI:
    """Mixin: the Platform API endpoints of ``FakeFal`` (needs ``_jobs``, ``_lock``, ``store``)."""

    _jobs: dict[str, Any]
    _lock: Any
    store: Any
    list_unfinished: bool

    run_seconds: float | None
    _held_queue_polls: int | None

    def tick(self) -> None:
        """Let time act on every job: one not started within its ``X-Fal-Request-Timeout`` ends unstarted
        (504); with ``run_seconds``, one sent that long ago ends. Held jobs are left alone."""
        now = time.time()
        with self._lock:
            if self._held_queue_polls is not None:
                return
            for job in self._jobs.values():
                if job.state == "COMPLETED":
                    continue
                bound = job.start_timeout  # with run_seconds a job starts at once, so only poll-driven ones wait
                if (
                    self.run_seconds is None
                    and job.state == "IN_QUEUE"
                    and bound is not None
                    and now - job.created_at > bound
                ):
                    job.failure = FalFailure(
                        504,
                        {"detail": "Request timed out before it started", "error_type": "request_timeout"},
                        "request_timeout",
                        "Request timed out before it started",
                        billable_units=0,
                    )
                    self._finish(job)  # type: ignore[attr-defined]  # FakeFal's
                elif self.run_seconds is not None and now - job.created_at >= self.run_seconds:
                    job.started_at = job.started_at or job.created_at
                    self._finish(job)  # type: ignore[attr-defined]

    #: endpoint id -> (unit price, unit) served by the pricing endpoint; unknown ids get no entry
    prices: dict[str, tuple[float, str]]
    payload_deletions: list[PayloadDeletion]
    #: 401 or 403: billing events are refused, as to a key without the admin scope (fact ``billing-events``)
    billing_events_refusal: int | None = None
    #: True: no event is listed yet for any request (fal documents no delay; fact ``billing-events-lag``)
    billing_events_pending: bool = False

    def _platform_routes(self) -> list[Route]:
        return [
            route("GET", r"/v1/models/requests/by-endpoint", "list_requests", self._list_requests),
            route("GET", r"/v1/models/pricing", "pricing", self._pricing),
            route("DELETE", r"/v1/models/requests/(?P<rid>[^/]+)/payloads", "delete_payloads", self._delete_payloads),
            route("GET", r"/v1/models/billing-events", "billing_events", self._billing_events),
        ]

    def _billing_events(self, request: Request, match: re.Match[str]) -> Response:
        """One event per ended request that fal billed (``billable_units`` > 0), at the endpoint's unit
        price, filtered by ``request_id``/``endpoint_id`` (comma-separated or repeated) and ``start``/``end``
        on its timestamp. Our reading where fal is silent (fact ``billing-events-lag``): a request that cost
        nothing has no event, so a missing event never tells the route "free"."""
        if self.billing_events_refusal is not None:
            return _platform_error(self.billing_events_refusal, "authorization_error", "Admin API key required")
        wanted = {
            k: {p for v in request.query.get(k, []) for p in v.split(",") if p} for k in ("request_id", "endpoint_id")
        }
        start, end = request.param("start"), request.param("end")
        since = _parse_iso(start) if start else time.time() - 86400
        until = _parse_iso(end) if end else float("inf")
        with self._lock:
            ended = [j for j in self._jobs.values() if j.state == "COMPLETED" and j.ended_at is not None]
            events = [
                _event(job, self.prices.get(job.app, (0.0, ""))[0])
                for job in ended
                if (job.billable_units or 0) > 0
                and since <= job.ended_at < until
                and (not wanted["request_id"] or job.request_id in wanted["request_id"])
                and (not wanted["endpoint_id"] or job.app in wanted["endpoint_id"])
                and not self.billing_events_pending
            ]
        return Response.json(200, {"billing_events": events, "next_cursor": None, "has_more": False})

    def _list_requests(self, request: Request, match: re.Match[str]) -> Response:
        """``items`` of ``request_id``, ``endpoint_id``, ``sent_at``, ``started_at``, ``ended_at``,
        ``status_code`` and ``duration``, filtered by ``start``/``end`` on ``sent_at`` (``start`` defaults to
        24 h ago), sorted by end time; ``next_cursor``/``has_more``. Facts ``listing`` and ``store-io``: only
        ended requests are listed (unless ``list_unfinished``), and ``json_input`` (with ``expand=payloads``)
        only for a request whose payloads fal stored, i.e. not one sent with ``X-Fal-Store-IO: 0``."""
        self.tick()
        endpoint = request.param("endpoint_id") or ""
        start, end = request.param("start"), request.param("end")
        payloads = "payloads" in ",".join(request.query.get("expand", []))
        since = _parse_iso(start) if start else time.time() - 86400
        until = _parse_iso(end) if end else float("inf")
        with self._lock:
            jobs = [
                j
                for j in self._jobs.values()
                if j.app == endpoint
                and since <= j.created_at <= until
                and (self.list_unfinished or j.state == "COMPLETED")
            ]
        items = []
        for job in sorted(jobs, key=lambda j: j.ended_at or float("inf"), reverse=True):
            ended = job.ended_at if job.state == "COMPLETED" else None
            started = job.started_at
            item: dict[str, Any] = {
                "request_id": job.request_id,
                "endpoint_id": job.app,
                "sent_at": _iso(job.created_at),
                "started_at": _iso(started) if started is not None else None,
                "ended_at": _iso(ended) if ended is not None else None,
                "status_code": (job.failure.status_code if job.failure else 200) if ended is not None else None,
                "duration": round(ended - started, 3) if ended is not None and started is not None else None,
            }
            if payloads and job.stores_payloads and not job.payloads_deleted:
                item["json_input"] = job.arguments
            items.append(item)
        return Response.json(200, {"items": items, "next_cursor": None, "has_more": False})

    def _pricing(self, request: Request, match: re.Match[str]) -> Response:
        wanted = [part for value in request.query.get("endpoint_id", []) for part in value.split(",") if part]
        if not 1 <= len(wanted) <= 50:
            return _platform_error(422, "validation_error", "endpoint_id: provide 1-50 endpoint ids")
        prices = [
            {"endpoint_id": e, "unit_price": self.prices[e][0], "unit": self.prices[e][1], "currency": "USD"}
            for e in wanted
            if e in self.prices
        ]
        return Response.json(200, {"prices": prices, "next_cursor": None, "has_more": False})

    def _delete_payloads(self, request: Request, match: re.Match[str]) -> Response:
        """Delete the job's stored payloads and its output file; a second call finds nothing left to delete."""
        rid = match["rid"]
        with self._lock:
            job = self._jobs.get(rid)
        if job is None:
            self.payload_deletions.append(PayloadDeletion(rid, 404, ()))
            return _platform_error(404, "not_found", f"Request {rid} not found")
        results: list[dict[str, Any]] = []
        with self._lock:
            if job.output is not None and self.store.get(job.output.id) is not None:
                self.store.remove(job.output.id)
                results.append({"link": job.output.url, "exception": None})
            job.payloads_deleted = True
            self.payload_deletions.append(PayloadDeletion(rid, 200, tuple(r["link"] for r in results)))
        return Response.json(200, {"cdn_delete_results": results})


def _event(job: Any, unit_price: float) -> dict[str, Any]:
    units = float(job.billable_units)
    nano = Decimal(str(units)) * Decimal(str(unit_price)) * 10**9
    return {
        "request_id": job.request_id,
        "endpoint_id": job.app,
        "timestamp": _iso(job.ended_at).replace(".000000Z", "Z"),
        "output_units": int(units) if units.is_integer() else units,
        "unit_price": unit_price,
        "percent_discount": None,
        "cost_estimate_nano_usd": int(nano),
    }


def _platform_error(status: int, kind: str, message: str) -> Response:
    """The Platform API's error shape, ``{"error": {"type", "message"}}`` (fact platform-errors)."""
    return Response.json(status, {"error": {"type": kind, "message": message}})


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_iso(text: str) -> float:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
