"""Route choice: ``route="cheapest"`` and ``routes=[...]`` with ``fallback=True``.

The cheapest route is judged on the job in hand: a route is a candidate only when it is usable here
(installed, credentials set), takes these inputs (its limits and parameters) and passes every safety check
with this consent; candidates are ranked by expected price, then by expected time. Fallback moves a job to
the next route only when its provider job *failed* and has ended, so a failed job can never bill alongside
its replacement unless the caller allows it (``allow_overlap=True``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import (
    AmbiguousSubmit,
    ConfigurationError,
    JobFailed,
    LatentSyncError,
    ProviderInputRejected,
    SyncQualityFailed,
)
from .job_runner import RunControls
from .media import probe_inputs
from .options import JOB_PARAMETERS, MediaLike, request_of
from .preflight import preflight
from .routes.base import route_names
from .sync_gate import gate_of, set_aside
from .types import PROVIDER_STATES, CostEstimate, JobRecord, LipSyncResult

if TYPE_CHECKING:
    from .client import LipSyncClient

#: the pseudo-route that picks a route per job
CHEAPEST = "cheapest"


@dataclass(frozen=True)
class RouteOption:
    """One route judged for one job: its estimate, or why it cannot take the job."""

    route: str
    estimate: CostEstimate | None
    refused: str | None = None

    @property
    def usable(self) -> bool:
        return self.refused is None and self.estimate is not None


def rank_routes(
    client: LipSyncClient,
    video: MediaLike,
    audio: MediaLike,
    *,
    consent: str | None = None,
    candidates: Sequence[str] | None = None,
    **job: Any,
) -> list[RouteOption]:
    """Every candidate route judged for this job, usable ones first, cheapest first (ties: faster first).

    The inputs are probed once; nothing is uploaded.
    """
    request = request_of(video, audio, job)  # type: ignore[arg-type]
    video_info, audio_info = probe_inputs(request.video, request.audio)
    judged: list[RouteOption] = []
    for name in candidates or route_names():
        route = client.route(name)
        why_not = route.availability()
        if why_not:
            judged.append(RouteOption(name, None, f"not usable here: {why_not}"))
            continue
        try:
            route.provider_parameters(request)
        except LatentSyncError as exc:
            judged.append(RouteOption(name, None, f"does not take these inputs: {exc.message}"))
            continue
        # the rows ``run`` would stop on (limits, policy, deadline, face): a route that fails one is no candidate
        checks, estimate = preflight(
            route,
            client.settings.policy,
            request,
            video_info,
            audio_info,
            consent=consent or client.default_consent,
            deadline=client.settings.deadline_seconds,
            face_check=None,
        )
        stops = [f"{c.check}: {c.reason}" for c in checks if not c.passed]
        if stops:
            judged.append(RouteOption(name, None, "safety check STOP: " + "; ".join(stops)))
            continue
        judged.append(RouteOption(name, estimate))

    def order(option: RouteOption) -> tuple[int, float, float]:
        if option.estimate is None:
            return (1, math.inf, math.inf)
        return (0, option.estimate.amount, option.estimate.expected_wall_seconds or math.inf)

    return sorted(judged, key=order)


def explain(options: Sequence[RouteOption]) -> str:
    """Why the first usable option was chosen, in one line for the record."""
    usable = [o for o in options if o.usable]
    parts = [
        f"{o.route} ${o.estimate.amount:.4f}"
        + (f" ~{o.estimate.expected_wall_seconds:.0f} s" if o.estimate.expected_wall_seconds else "")
        for o in usable
        if o.estimate is not None
    ]
    refused = [f"{o.route} ({o.refused})" for o in options if not o.usable]
    text = f"cheapest of {len(usable)} usable route(s): " + ", ".join(parts)
    return text + ("; not usable: " + "; ".join(refused) if refused else "")


def choose_cheapest(
    client: LipSyncClient,
    video: MediaLike,
    audio: MediaLike,
    *,
    consent: str | None = None,
    candidates: Sequence[str] | None = None,
    **job: Any,
) -> tuple[str, str]:
    """``(route, why)`` for this job, or :class:`ConfigurationError` listing why no route can take it."""
    options = rank_routes(client, video, audio, consent=consent, candidates=candidates, **job)
    usable = [o for o in options if o.usable]
    if not usable:
        raise ConfigurationError("no route can take this job: " + "; ".join(f"{o.route}: {o.refused}" for o in options))
    return usable[0].route, explain(options)


def _ended(record: JobRecord | None) -> bool:
    """Whether the provider job behind ``record`` can no longer run (and so bill)."""
    return record is not None and record.state not in PROVIDER_STATES and record.interrupted is None


def _summary(record: JobRecord | None, route: str, exc: LatentSyncError) -> dict[str, Any]:
    entry: dict[str, Any] = {"route": route, "error": exc.to_dict()}
    if record is not None:
        entry.update(
            job_id=record.job_id,
            state=record.state,
            provider_request_id=record.provider_request_id,
            cost=record.cost.model_dump(mode="json"),
        )
    return entry


def run_chosen(
    client: LipSyncClient, video: MediaLike, audio: MediaLike, output: str | os.PathLike[str], **options: Any
) -> LipSyncResult:
    """``run`` with ``route="cheapest"`` and/or ``routes=[...]`` (``fallback=True`` to move on after a failure;
    ``fallback_on_quality=True`` after a job under ``min_sync_confidence`` too). The record of the job that
    ran says why its route was chosen (``route_choice``) and keeps each earlier route's job, state and cost
    (``fallback_from``)."""
    routes = list(options.pop("routes", None) or [])
    fallback = bool(options.pop("fallback", False))
    allow_overlap = bool(options.pop("allow_overlap", False))
    on_quality = bool(options.pop("fallback_on_quality", False))
    gate = gate_of(client.settings, options)  # before any route is tried: no weights, no upload
    wanted = options.pop("route", None)
    job = {name: options[name] for name in JOB_PARAMETERS if options.get(name) is not None}
    why: str | None = None
    if wanted == CHEAPEST or CHEAPEST in routes:
        ranked = rank_routes(
            client,
            video,
            audio,
            consent=options.get("consent"),
            candidates=[r for r in routes if r != CHEAPEST] or None,
            **job,
        )
        usable = [o.route for o in ranked if o.usable]
        if not usable:
            raise ConfigurationError(
                "no route can take this job: " + "; ".join(f"{o.route}: {o.refused}" for o in ranked)
            )
        why = explain(ranked)
        routes = usable if fallback else usable[:1]
    elif not routes:
        routes = [wanted or client.settings.route]
    earlier: list[dict[str, Any]] = []
    for position, name in enumerate(routes):
        try:
            prepared = client.prepare(video, audio, output, route=name, **options)
            result = client.run_prepared(prepared, RunControls.from_options(options))
            result = gate.judge(result, client.journal, jsonl=client.settings.jsonl_path) if gate else result
        except LatentSyncError as exc:
            record = client.journal.get(exc.job_id) if exc.job_id else None
            if position == len(routes) - 1 or not fallback or isinstance(exc, AmbiguousSubmit):
                raise
            if isinstance(exc, SyncQualityFailed) and not on_quality:
                raise  # a paid job under the gate moves on only with fallback_on_quality (both are paid)
            provider_failed = isinstance(exc, (JobFailed, ProviderInputRejected, SyncQualityFailed)) and _ended(record)
            never_sent = record is None  # stopped before its claim: nothing reached the provider
            if not (provider_failed or never_sent or allow_overlap):
                raise
            earlier.append(_summary(record, name, exc))
            if isinstance(exc, SyncQualityFailed):
                set_aside(client.journal, exc.result)  # kept, out of the next route's way
            continue
        if why or earlier:
            record = result.record.model_copy(update={"route_choice": why, "fallback_from": earlier})
            client.journal.save(record)
            result = result.model_copy(update={"record": record})
        return result
    raise ConfigurationError("no route to run this job on")  # pragma: no cover - routes is never empty
