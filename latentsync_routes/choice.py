"""Route choice: ``route="cheapest"`` and ``routes=[...]`` with ``fallback=True``.

The cheapest route is judged on the job in hand: a route is a candidate only when it is usable here
(installed, credentials set), takes these inputs (its limits and parameters) and passes every safety check
with this consent; candidates are ranked by expected price, then by expected time. Fallback moves a job to
the next route only when its provider job *failed* and has ended, so a failed job can never bill alongside
its replacement unless the caller allows it (``allow_overlap=True``), and only when the failure cost
nothing: a failed job that is billed (or may be: ``billed_unknown``) stops the run there, so one job is
not paid on two routes, unless the caller allows that too (``fallback_after_billed_failure=True``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from . import money
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
    from typing_extensions import Unpack

    from .config import Settings
    from .job_runner import PreparedJob
    from .journal import Journal
    from .options import RunOptions
    from .routes.base import Route

#: the pseudo-route that picks a route per job
CHEAPEST = "cheapest"


class RankingClient(Protocol):
    """What ranking routes needs of the client (``LipSyncClient`` is one): its routes, settings and consent."""

    @property
    def settings(self) -> Settings: ...

    @property
    def default_consent(self) -> str | None: ...

    def route(self, name: str | None = None) -> Route: ...


class ChoiceClient(RankingClient, Protocol):
    """What running on a chosen route needs besides: a prepared job per route tried, run, and its record."""

    @property
    def journal(self) -> Journal: ...

    def prepare(
        self, video: MediaLike, audio: MediaLike, output: str | os.PathLike[str], **options: Unpack[RunOptions]
    ) -> PreparedJob: ...

    def run_prepared(self, job: PreparedJob, controls: RunControls | None = None) -> LipSyncResult: ...


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
    client: RankingClient,
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


def fallback_decision(
    record: JobRecord | None, exc: LatentSyncError, *, allow_overlap: bool, after_billed: bool
) -> tuple[bool, str]:
    """Whether a failed try may hand its job to the next route, and why (or why not), in words for the record.

    A billed failure stops by default: the caller asked for one output, and paying a second route for it
    on top of a charged failure is a choice the caller makes (``fallback_after_billed_failure``)."""
    if isinstance(exc, AmbiguousSubmit):
        return False, "the submit was ambiguous: the first route's job may exist and run"
    if record is None:
        return True, "nothing reached the provider (stopped before the job was claimed): no charge"
    if not (isinstance(exc, (JobFailed, ProviderInputRejected, SyncQualityFailed)) and _ended(record)):
        if allow_overlap:
            return True, "allow_overlap: the failed route's job may still run and bill beside the next one"
        return False, "the failed route's job may still run and bill (pass allow_overlap=True to move on anyway)"
    charged = record.cost.worst_case()
    if money.micros(charged) == 0:
        return True, "the failed job cost nothing (no charge recorded for it, or its charge is refunded)"
    basis = record.cost.billed_unknown_basis or record.cost.basis
    billed = f"the failed job on {record.route} is billed up to ${charged:.4f}" + (f" ({basis})" if basis else "")
    if after_billed:
        return True, f"{billed}; fallback_after_billed_failure: the next route is paid as well"
    return False, (
        f"{billed}: not paying another route for the same output; pass fallback_after_billed_failure=True "
        "(CLI: --fallback-after-billed-failure) to allow it"
    )


def _stopped(exc: LatentSyncError, why: str) -> LatentSyncError:
    """The failure as raised, its message saying why the run did not move to the next route."""
    exc.message = f"{exc.message}; no fallback: {why}"
    exc.args = (exc.message, *exc.args[1:])
    return exc


def run_chosen(
    client: ChoiceClient, video: MediaLike, audio: MediaLike, output: str | os.PathLike[str], **options: Any
) -> LipSyncResult:
    """``run`` with ``route="cheapest"`` and/or ``routes=[...]`` (``fallback=True`` to move on after a failure;
    ``fallback_on_quality=True`` after a paid job under ``min_sync_confidence`` too).

    The record of the job that ran says why its route was chosen (``route_choice``) and keeps each earlier
    route's job, state, cost and why the run moved on (``fallback_from``); a job the run did not move on
    from says why in its own record (``fallback_note``) and in the error raised.
    """
    routes = list(options.pop("routes", None) or [])
    rule = _FallbackRule(
        on=bool(options.pop("fallback", False)),
        allow_overlap=bool(options.pop("allow_overlap", False)),
        after_billed=bool(options.pop("fallback_after_billed_failure", False)),
        on_quality=bool(options.pop("fallback_on_quality", False)),
    )
    gate = gate_of(client.settings, options)  # before any route is tried: no weights, no upload
    routes, why = _candidates(client, video, audio, routes, options.pop("route", None), rule.on, options)
    earlier: list[dict[str, Any]] = []
    for position, name in enumerate(routes):
        try:
            prepared = client.prepare(video, audio, output, route=name, **options)
            result = client.run_prepared(prepared, RunControls.from_options(options))
            result = gate.judge(result, client.journal, jsonl=client.settings.jsonl_path) if gate else result
        except LatentSyncError as exc:
            if position == len(routes) - 1 or not rule.on:
                raise
            earlier.append(_moved_on(client.journal, name, exc, rule))
            continue
        if why or earlier:
            record = result.record.model_copy(update={"route_choice": why, "fallback_from": earlier})
            client.journal.save(record)
            result = result.model_copy(update={"record": record})
        return result
    raise ConfigurationError("no route to run this job on")  # pragma: no cover - routes is never empty


@dataclass(frozen=True)
class _FallbackRule:
    """When a failed try may hand its job to the next route (``run_chosen``'s options)."""

    on: bool
    allow_overlap: bool
    after_billed: bool
    on_quality: bool


def _moved_on(journal: Journal, name: str, exc: LatentSyncError, rule: _FallbackRule) -> dict[str, Any]:
    """The ``fallback_from`` entry of a failed try the run moves on from; raises the failure when it may not.

    A job under the quality gate was made and paid: it moves on only with ``fallback_on_quality`` (the
    caller then pays the next route as well, so that counts as allowing a billed failure), its output kept
    and set aside out of the next route's way."""
    quality = isinstance(exc, SyncQualityFailed)
    if quality and not rule.on_quality:
        raise exc
    record = journal.get(exc.job_id) if exc.job_id else None
    move_on, reason = fallback_decision(
        record, exc, allow_overlap=rule.allow_overlap, after_billed=rule.after_billed or quality
    )
    if record is not None:
        journal.save(record.model_copy(update={"fallback_note": reason}))
    if not move_on:
        raise _stopped(exc, reason) from None
    if isinstance(exc, SyncQualityFailed):
        set_aside(journal, exc.result)  # kept, out of the next route's way
    return {**_summary(record, name, exc), "fallback": reason}


def _candidates(
    client: RankingClient,
    video: MediaLike,
    audio: MediaLike,
    routes: list[str],
    wanted: str | None,
    fallback: bool,
    options: dict[str, Any],
) -> tuple[list[str], str | None]:
    """The routes to try in order, and why (when ``cheapest`` ranked them)."""
    job = {name: options[name] for name in JOB_PARAMETERS if options.get(name) is not None}
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
        return (usable if fallback else usable[:1]), explain(ranked)
    return (routes or [wanted or client.settings.route]), None
