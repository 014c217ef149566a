"""fal's Platform API (``https://api.fal.ai/v1``), played by ``FakeFal`` at its root: request listing,
pricing, and "Delete Request Payloads".

Sources (checked 2026-12-02):

* ``GET /v1/models/requests/by-endpoint``: https://docs.fal.ai/platform-apis/v1/models/requests/by-endpoint
* ``GET /v1/models/pricing?endpoint_id=...`` → ``{"prices": [{"endpoint_id", "unit_price", "unit",
  "currency"}], "next_cursor", "has_more"}``: https://docs.fal.ai/platform-apis/v1/models/pricing
* ``DELETE /v1/models/requests/{request_id}/payloads`` → ``{"cdn_delete_results": [{"link", "exception"}]}``
  (the request's payloads and the CDN files of its *output*; inputs are kept):
  https://docs.fal.ai/platform-apis/v1/models/requests/payloads

Kept apart from ``fal.py`` so each fake module stays small; it is a mixin over the fake's job table.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ...testing._wire import Request, Response, Route, route


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
    #: endpoint id -> (unit price, unit) served by the pricing endpoint; unknown ids get no entry
    prices: dict[str, tuple[float, str]]
    payload_deletions: list[PayloadDeletion]

    def _platform_routes(self) -> list[Route]:
        return [
            route("GET", r"/v1/models/requests/by-endpoint", "list_requests", self._list_requests),
            route("GET", r"/v1/models/pricing", "pricing", self._pricing),
            route("DELETE", r"/v1/models/requests/(?P<rid>[^/]+)/payloads", "delete_payloads", self._delete_payloads),
        ]

    def _list_requests(self, request: Request, match: re.Match[str]) -> Response:
        """``items`` of ``request_id``, ``endpoint_id``, ``sent_at``, ``started_at``, ``ended_at``,
        ``status_code`` and, with ``expand=payloads``, ``json_input``; ``next_cursor``/``has_more``. Whether
        unfinished requests are listed is not documented: listed (``ended_at`` null) unless ``list_unfinished``
        is False (a guess either way)."""
        endpoint = request.param("endpoint_id") or ""
        start = request.param("start")
        payloads = "payloads" in ",".join(request.query.get("expand", []))
        since = _parse_iso(start) if start else time.time() - 86400
        with self._lock:
            jobs = [
                j
                for j in self._jobs.values()
                if j.app == endpoint and j.created_at >= since and (self.list_unfinished or j.state == "COMPLETED")
            ]
        items = []
        for job in sorted(jobs, key=lambda j: j.created_at, reverse=True):
            done = job.state == "COMPLETED"
            item: dict[str, Any] = {
                "request_id": job.request_id,
                "endpoint_id": job.app,
                "sent_at": _iso(job.created_at),
                "started_at": _iso(job.created_at),
                "ended_at": _iso(time.time()) if done else None,
                "status_code": (job.failure.status_code if job.failure else 200) if done else None,
            }
            if payloads and not job.payloads_deleted:
                item["json_input"] = job.arguments
            items.append(item)
        return Response.json(200, {"items": items, "next_cursor": None, "has_more": False})

    def _pricing(self, request: Request, match: re.Match[str]) -> Response:
        wanted = [part for value in request.query.get("endpoint_id", []) for part in value.split(",") if part]
        if not 1 <= len(wanted) <= 50:
            return Response.json(422, {"detail": "endpoint_id: provide 1-50 endpoint ids"})
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
            return Response.json(404, {"detail": f"Request {rid} not found"})
        results: list[dict[str, Any]] = []
        with self._lock:
            if job.output is not None and self.store.get(job.output.id) is not None:
                self.store.remove(job.output.id)
                results.append({"link": job.output.url, "exception": None})
            job.payloads_deleted = True
            self.payload_deletions.append(PayloadDeletion(rid, 200, tuple(r["link"] for r in results)))
        return Response.json(200, {"cdn_delete_results": results})


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_iso(text: str) -> float:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
