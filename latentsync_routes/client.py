"""The one data path: request -> policy -> estimate -> route -> result -> record.

Everything that must hold on every route lives here, once: inputs are probed and refused before anything
leaves the machine, the policy and the budget stop a job before payment, the journal holds the job before
the provider sees it, and every outcome, good or bad, ends as a :class:`JobRecord`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, ValidationError

from . import __version__
from .config import CREDENTIAL_ENV, Credential, Settings, load_settings, resolve_credential
from .errors import (
    ConfigurationError,
    DeadlineExceeded,
    InvalidParameter,
    JobCancelled,
    LatentSyncError,
    RouteError,
)
from .journal import TERMINAL_OK, Journal, append_jsonl
from .media import MediaLimits, check_limits, probe, validate_audio, validate_video
from .policy import CheckResult, enforce, evaluate
from .pricing import check_budget
from .routes.base import JobContext, ProgressCallback, Route, RouteInfo, create_route, route_names
from .types import (
    Cost,
    CostEstimate,
    InputRecord,
    JobRecord,
    JobState,
    LipSyncRequest,
    LipSyncResult,
    LoopMode,
    MediaInfo,
    MediaSource,
    utcnow,
)

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger(__name__)

MediaLike = MediaSource | str | os.PathLike[str] | bytes


class LipSyncClient:
    """Run LatentSync on any route with the same call.

    >>> client = LipSyncClient(route="fal", consent="signed release #42")   # doctest: +SKIP
    >>> client.estimate("clip.mp4", "voice.wav").amount                    # doctest: +SKIP
    >>> result = client.run("clip.mp4", "voice.wav", output="out.mp4")      # doctest: +SKIP
    """

    def __init__(
        self,
        route: str | None = None,
        *,
        config_file: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
        fal_key: str | SecretStr | None = None,
        replicate_api_token: str | SecretStr | None = None,
        consent: str | None = None,
        budget_per_call: float | None = None,
        budget_total: float | None = None,
    ) -> None:
        overrides = {
            key: value
            for key, value in (("route", route), ("budget_per_call", budget_per_call), ("budget_total", budget_total))
            if value is not None
        }
        self.settings = (
            settings.model_copy(update=overrides) if settings is not None else load_settings(config_file, **overrides)
        )
        self.default_consent = consent
        self._explicit = {"fal": fal_key, "replicate": replicate_api_token}
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._reserved = 0.0  # worst-case estimates of jobs in flight
        self._spent = 0.0  # actual and failure-billed cost of the jobs this client ran
        self._journal: Journal | None = None

    def __repr__(self) -> str:
        return f"LipSyncClient(route={self.settings.route!r}, home={str(self.settings.home)!r})"

    # -- routes ---------------------------------------------------------------------------------------
    def credential(self, route: str) -> Credential | None:
        env = CREDENTIAL_ENV.get(route)
        return resolve_credential(env, self._explicit.get(route)) if env else None

    def route(self, name: str | None = None) -> Route:
        name = name or self.settings.route
        with self._lock:
            if name not in self._routes:
                self._routes[name] = create_route(name, self.settings, self.credential(name))
            return self._routes[name]

    def routes(self) -> list[RouteInfo]:
        return [self.route(name).info() for name in route_names()]

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            self._journal = Journal(self.settings.journal_path)
        return self._journal

    # -- steps 1-3 -------------------------------------------------------------------------------------
    def _request(self, video: MediaLike, audio: MediaLike, **params: Any) -> LipSyncRequest:
        extras = params.pop("extras", None) or {}
        try:
            return LipSyncRequest(video=MediaSource.of(video), audio=MediaSource.of(audio), extras=extras, **params)
        except ValidationError as exc:
            problem = exc.errors()[0]
            field = ".".join(str(part) for part in problem["loc"]) or "request"
            raise InvalidParameter(field, problem["msg"]) from None

    def _normalise(self, route: Route, request: LipSyncRequest) -> tuple[MediaInfo, MediaInfo]:
        info = route.info()
        route.provider_parameters(request)  # unsupported parameters are refused before any probe or upload
        limits = MediaLimits(info.max_input_bytes, info.max_video_seconds, info.max_audio_seconds)
        return self._probe_inputs(request, limits, route=info.name)

    def _probe_inputs(
        self, request: LipSyncRequest, limits: MediaLimits | None, *, route: str | None = None
    ) -> tuple[MediaInfo, MediaInfo]:
        """Probe and validate both inputs; with ``limits``, refuse one over them as soon as it is probed."""
        found = []
        for role, source, validate in (
            ("video", request.video, validate_video),
            ("audio", request.audio, validate_audio),
        ):
            media = probe(source)
            validate(media, source)
            if limits is not None:
                check_limits(media, source, role, limits, route=route or "")
            found.append(media)
        return found[0], found[1]

    def check(
        self, video: MediaLike, audio: MediaLike, *, route: str | None = None, consent: str | None = None
    ) -> list[CheckResult]:
        """The safety checklist for this job on this route, without running anything."""
        chosen = self.route(route)
        request = self._request(video, audio)
        video_info, audio_info = self._normalise(chosen, request)
        return evaluate(
            chosen.info(), self.settings.policy, consent=consent or self.default_consent, video=video_info,
            audio=audio_info,
        )

    def estimate(
        self,
        video: MediaLike,
        audio: MediaLike,
        *,
        route: str | None = None,
        guidance_scale: float | None = None,
        seed: int | None = None,
        loop_mode: LoopMode | None = None,
        inference_steps: int | None = None,
        extras: dict[str, Any] | None = None,
    ) -> CostEstimate:
        """The price of this job on one route, before anything is uploaded (steps 1 and 3)."""
        chosen = self.route(route)
        request = self._request(
            video, audio, guidance_scale=guidance_scale, seed=seed, loop_mode=loop_mode,
            inference_steps=inference_steps, extras=extras,
        )
        video_info, audio_info = self._normalise(chosen, request)
        return chosen.estimate(request, video_info, audio_info)

    def estimate_all(self, video: MediaLike, audio: MediaLike) -> list[CostEstimate]:
        """Estimates on every route, probing the inputs once.

        No single route's input limits apply here (the default route's limits must not hide the others'
        prices); ``run`` and ``estimate(route=...)`` still refuse inputs over the chosen route's limits.
        """
        request = self._request(video, audio)
        video_info, audio_info = self._probe_inputs(request, None)
        return [self.route(name).estimate(request, video_info, audio_info) for name in route_names()]

    # -- steps 4-6 -------------------------------------------------------------------------------------
    def run(
        self,
        video: MediaLike,
        audio: MediaLike,
        output: str | os.PathLike[str],
        *,
        route: str | None = None,
        consent: str | None = None,
        guidance_scale: float | None = None,
        seed: int | None = None,
        loop_mode: LoopMode | None = None,
        inference_steps: int | None = None,
        extras: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        deadline_seconds: float | None = None,
        overwrite: bool = False,
        progress: ProgressCallback | None = None,
    ) -> LipSyncResult:
        """Lip-sync ``video`` to ``audio`` and write the result to ``output``.

        A second call with the same inputs, parameters, route and output (or the same explicit
        ``idempotency_key``) reuses the first job (resuming its wait if needed) instead of paying again.
        """
        chosen = self.route(route)
        info = chosen.info()
        request = self._request(
            video, audio, guidance_scale=guidance_scale, seed=seed, loop_mode=loop_mode,
            inference_steps=inference_steps, extras=extras,
        )
        output_path = Path(output).expanduser().resolve()
        video_info, audio_info = self._normalise(chosen, request)
        consent = consent or self.default_consent
        checks = evaluate(info, self.settings.policy, consent=consent, video=video_info, audio=audio_info)
        enforce(checks, route=info.name)
        estimate = chosen.estimate(request, video_info, audio_info)
        with self._lock:
            spoken_for = self._spent + self._reserved
            remaining = None if self.settings.budget_total is None else self.settings.budget_total - spoken_for
            check_budget(estimate, per_call=self.settings.budget_per_call, remaining=remaining)
            self._reserved += estimate.high  # a job in flight holds its worst case until it settles
        record: JobRecord | None = None
        try:
            why_not = chosen.availability()
            if why_not:
                raise ConfigurationError(why_not, route=info.name)
            key = idempotency_key or derive_idempotency_key(info.name, request, video_info, audio_info, output_path)
            existing = self.journal.find_live(key)
            if existing is not None and existing.state == TERMINAL_OK and existing.output_path:
                if Path(existing.output_path).exists():
                    log.info("job %s already fetched; not running again", existing.job_id)
                    return result_from_record(existing)
            record = existing or self._new_record(info, request, key, consent, checks, estimate,
                                                  video_info, audio_info)
            return self._execute(chosen, record, request, video_info, audio_info, output_path,
                                 deadline_seconds, overwrite, progress)
        finally:
            with self._lock:
                self._reserved -= estimate.high
                if record is not None:  # what the job actually cost, failed attempts included
                    self._spent += (record.cost.actual or 0.0) + record.cost.billed_failures

    def resume(self, job_id: str, *, progress: ProgressCallback | None = None) -> LipSyncResult:
        """Carry on a job from the journal: wait for its provider job and fetch the output."""
        record = self.journal.get(job_id)
        if record is None:
            raise ConfigurationError(f"no job {job_id!r} in the journal at {self.settings.journal_path}")
        if record.state == TERMINAL_OK:
            return result_from_record(record)
        chosen = self.route(record.route)
        if record.provider_request_id is None and record.state not in ("created", "uploaded"):
            raise ConfigurationError(f"job {job_id} is {record.state} and has no provider job to resume")
        # Inputs are not probed again: the provider already has them, and a record never holds bytes.
        video, audio = (
            MediaSource.of(r.source) if r.kind == "path" else MediaSource(kind="url", url=f"https://resume.invalid/{r.role}")
            for r in record.inputs[:2]
        )
        request = LipSyncRequest(video=video, audio=audio, **_known_parameters(record.parameters))
        video_info, audio_info = (
            MediaInfo(container="recorded", duration=r.duration or 0.0, size=r.size, sha256=r.sha256)
            for r in record.inputs[:2]
        )
        output = Path(record.output_path or f"{record.job_id}.mp4")
        return self._execute(chosen, record, request, video_info, audio_info, output, None, True, progress)

    def delete_job(self, job_id: str, *, delete_output: bool = True) -> JobRecord:
        """Remove a job's local output and, where the provider allows it, its remote uploads.

        The record is kept (it is the audit trail) and says what was deleted and what could not be.
        """
        record = self.journal.get(job_id)
        if record is None:
            raise ConfigurationError(f"no job {job_id!r} in the journal at {self.settings.journal_path}")
        deleted: list[str] = []
        kept: list[str] = []
        if delete_output and record.output_path:
            path = Path(record.output_path)
            if path.exists():
                path.unlink()
                deleted.append(f"local output {path}")
        route = self.route(record.route)
        delete_remote = getattr(route, "delete_remote", None)
        if callable(delete_remote):
            remote_deleted, remote_kept = delete_remote(record)
            deleted += remote_deleted
            kept += remote_kept
        else:
            kept += [f"{uri}: {route.info().deletion}" for uri in record.uploaded_uris]
        record.deleted = [*record.deleted, *deleted]
        record.not_deleted = kept
        self.journal.save(record)
        return record

    def _new_record(
        self,
        info: RouteInfo,
        request: LipSyncRequest,
        key: str,
        consent: str | None,
        checks: Sequence[CheckResult],
        estimate: CostEstimate,
        video_info: MediaInfo,
        audio_info: MediaInfo,
    ) -> JobRecord:
        return JobRecord(
            job_id=uuid.uuid4().hex,
            idempotency_key=key,
            route=info.name,
            route_owner=info.owner,
            billing_owner=info.billing_owner,
            model=info.model,
            model_version=info.model_version,
            inputs=[input_record("video", request.video, video_info), input_record("audio", request.audio, audio_info)],
            parameters=request.given_parameters(),
            consent_basis=consent,
            upload_destination=info.upload_destination,
            retention_policy=info.retention,
            deletion_policy=info.deletion,
            code_licence=info.code_licence,
            weights_licence=info.weights_licence,
            support_path=", ".join(info.support_path),
            cost=Cost(currency=estimate.currency, estimated=estimate.amount, basis=estimate.basis),
            policy_checks=[c.model_dump() for c in checks],
            library_version=__version__,
        )

    def _persist(self, record: JobRecord) -> None:
        self.journal.save(record)

    def _execute(
        self,
        route: Route,
        record: JobRecord,
        request: LipSyncRequest,
        video_info: MediaInfo,
        audio_info: MediaInfo,
        output_path: Path,
        deadline_seconds: float | None,
        overwrite: bool,
        progress: ProgressCallback | None,
    ) -> LipSyncResult:
        started = time.monotonic()
        record.output_path = str(output_path)
        job = JobContext(
            record=record,
            request=request,
            video_info=video_info,
            audio_info=audio_info,
            output_path=output_path,
            settings=self.settings,
            credential=self.credential(record.route),
            deadline=started + (deadline_seconds or self.settings.deadline_seconds),
            overwrite=overwrite,
            progress=progress,
            persist=self._persist,
            resume_request_id=record.provider_request_id,
        )
        job.mark()
        try:
            outcome = route.execute(job)
        except LatentSyncError as exc:
            self._finish_failed(job, exc, started)
            raise
        except Exception as exc:
            wrapped = RouteError(f"unexpected {type(exc).__name__}: {exc}", route=record.route,
                                 request_id=record.provider_request_id)
            self._finish_failed(job, wrapped, started)
            raise wrapped from exc
        record.cost.actual = outcome.actual_cost
        if outcome.cost_basis:
            record.cost.basis = outcome.cost_basis
        record.timings["total_seconds"] = round(time.monotonic() - started, 3)
        job.mark(
            "fetched",
            output_path=str(outcome.output_path),
            output_uri=outcome.output_url,
            provider_request_id=outcome.provider_request_id or record.provider_request_id,
            completed_at=utcnow(),
        )
        if self.settings.jsonl_path is not None:
            append_jsonl(self.settings.jsonl_path, record)
        return result_from_record(record)

    def _finish_failed(self, job: JobContext, exc: LatentSyncError, started: float) -> None:
        record = job.record
        record.timings["total_seconds"] = round(time.monotonic() - started, 3)
        state: JobState = "cancelled" if isinstance(exc, (JobCancelled, DeadlineExceeded)) else "failed"
        job.mark(state, failure_reason=f"{type(exc).__name__}: {exc.message}")
        if self.settings.jsonl_path is not None:
            append_jsonl(self.settings.jsonl_path, record)


class AsyncLipSyncClient:
    """The same client for asyncio code; jobs run in worker threads, bounded per route.

    Jobs spend nearly all their time waiting on a provider, so each route gets its own semaphore and the
    client owns a thread pool as large as the sum of the route limits (the default asyncio pool, sized by
    CPU count, would otherwise cap concurrency below the limits). Close it with ``aclose()`` or use
    ``async with``.
    """

    def __init__(self, route: str | None = None, *, concurrency: dict[str, int] | None = None, **kwargs: Any) -> None:
        self.sync = LipSyncClient(route, **kwargs)
        self._limits = {"local": 1, "fal": 2, "replicate": 8, **(concurrency or {})}
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._executor = ThreadPoolExecutor(
            max_workers=sum(self._limits.values()) + 4, thread_name_prefix="latentsync-routes"
        )

    async def __aenter__(self) -> AsyncLipSyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _semaphore(self, route: str) -> asyncio.Semaphore:
        import asyncio

        if route not in self._semaphores:
            self._semaphores[route] = asyncio.Semaphore(self._limits.get(route, 4))
        return self._semaphores[route]

    async def _in_thread(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(func, *args, **kwargs))

    async def routes(self) -> list[RouteInfo]:
        return await self._in_thread(self.sync.routes)

    async def estimate(self, video: MediaLike, audio: MediaLike, **kwargs: Any) -> CostEstimate:
        return await self._in_thread(self.sync.estimate, video, audio, **kwargs)

    async def check(self, video: MediaLike, audio: MediaLike, **kwargs: Any) -> list[CheckResult]:
        return await self._in_thread(self.sync.check, video, audio, **kwargs)

    async def run(
        self, video: MediaLike, audio: MediaLike, output: str | os.PathLike[str], **kwargs: Any
    ) -> LipSyncResult:
        route = kwargs.get("route") or self.sync.settings.route
        async with self._semaphore(route):
            return await self._in_thread(self.sync.run, video, audio, output, **kwargs)

    async def resume(self, job_id: str) -> LipSyncResult:
        return await self._in_thread(self.sync.resume, job_id)


def _known_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    known = ("guidance_scale", "seed", "loop_mode", "inference_steps")
    extras = {k: v for k, v in parameters.items() if k not in known}
    return {**{k: v for k, v in parameters.items() if k in known}, "extras": extras}


def input_record(role: str, source: MediaSource, info: MediaInfo) -> InputRecord:
    return InputRecord(
        role=role,  # type: ignore[arg-type]
        source=source.describe(),
        kind=source.kind,
        sha256=info.sha256,
        size=info.size,
        duration=info.duration,
    )


def derive_idempotency_key(
    route: str, request: LipSyncRequest, video: MediaInfo, audio: MediaInfo, output: Path
) -> str:
    """Same inputs (by content), parameters, route and destination -> same key."""
    material = {
        "route": route,
        "video": video.sha256 or request.video.describe(),
        "audio": audio.sha256 or request.audio.describe(),
        "parameters": request.given_parameters(),
        "output": str(output),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:32]


def result_from_record(record: JobRecord) -> LipSyncResult:
    return LipSyncResult(
        route=record.route,
        job_id=record.job_id,
        output_path=record.output_path,
        output_url=record.output_uri,
        provider_request_id=record.provider_request_id,
        model_version=record.model_version,
        attempts=record.attempts,
        cost=record.cost,
        timings=record.timings,
        record=record,
    )
