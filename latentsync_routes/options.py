"""The options of a job, declared once and shared by ``estimate``, ``run`` and the async client.

``JobOptions`` are what changes the provider job (and so its price and its identity); ``RunOptions`` add
how this call runs it. Type checkers see every keyword through ``Unpack``; at run time they are a dict.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypedDict

from pydantic import ValidationError

from .errors import InvalidParameter
from .routes.base import ProgressCallback
from .types import LipSyncRequest, LoopMode, MediaSource

#: What an input may be given as: a path, a URL string, bytes, or a :class:`MediaSource`.
MediaLike = MediaSource | str | os.PathLike[str] | bytes


class JobOptions(TypedDict, total=False):
    """Parameters of the lip-sync itself; ``None`` or absent means the route's default."""

    guidance_scale: float | None
    seed: int | None
    loop_mode: LoopMode | None
    inference_steps: int | None
    extras: dict[str, Any] | None


class RunOptions(JobOptions, total=False):
    """How one ``run`` call runs its job."""

    route: str | None
    consent: str | None
    idempotency_key: str | None
    deadline_seconds: float | None
    overwrite: bool
    progress: ProgressCallback | None
    retry_failed: bool
    force_resubmit: bool
    #: pay for a new job when the journal's job of these inputs cannot give its output (deleted, expired) or
    #: failed; never needed otherwise (a re-run returns the finished job's output)
    new_job: bool
    #: candidate routes, in order (``"cheapest"`` among them ranks the rest); see ``fallback``
    routes: list[str] | None
    #: move to the next route after a failure of the provider job (never after an ambiguous submit)
    fallback: bool
    #: with ``fallback``, move on even when the failed route's job might still run and bill
    allow_overlap: bool
    #: with ``fallback``, move on after a failure that is billed (or may be): the output is then paid on two
    #: routes. Off by default: a billed failure stops the run and says so
    fallback_after_billed_failure: bool
    #: sample the video for a face before uploading it (default: ``policy.face_check``); see face_check.py
    face_check: bool | None
    #: set from another thread to cancel the job (the async client uses it when its task is cancelled)
    cancel_event: threading.Event | None
    #: the provider calls this URL back when the job ends (``submit``; verify with ``handle_webhook``)
    webhook_url: str | None
    #: score the fetched output with SyncNet (LSE-C / LSE-D into the result and the record); sync_gate.py
    evaluate: bool
    #: the quality gate: an output whose LSE-C is under it is failed-quality (implies ``evaluate``)
    min_sync_confidence: float | None
    #: with ``fallback``, move to the next route after a failed-quality job too (both are paid)
    fallback_on_quality: bool
    #: a syncnet_v2.model to score with (default: setting ``syncnet_weights``, else the pinned download)
    syncnet_weights: str | os.PathLike[str] | None


class BatchOptions(TypedDict, total=False):
    """How ``run_many`` / ``map`` run a batch (a manifest path, or jobs as dicts or ``BatchJob`` rows)."""

    #: the route of rows that name none: a route name, or ``"cheapest"`` to choose per job
    route: str | None
    #: the consent basis of rows that give none
    consent: str | None
    #: the routes ``cheapest`` may choose from (default: every route)
    among: list[str] | None
    #: ``cheapest`` jobs move on to their next usable route after a failure that cost nothing (``run``'s
    #: ``fallback``); rows that name a route run there only
    fallback: bool
    #: with ``fallback``, move on after a billed failure too; the budget then counts every route's worst case
    fallback_after_billed_failure: bool
    #: with ``fallback``, move on after a job under its quality gate too (it is paid); the budget then counts
    #: every route's worst case
    fallback_on_quality: bool
    #: refuse the batch before anything runs when its worst case is over this many dollars
    budget: float | None
    #: per-route concurrency limits, e.g. ``{"fal": 8}`` (default: each route's own)
    concurrency: Mapping[str, int] | None
    #: ``"local"`` (threads here), ``"ray"``, or an executor object
    executor: Any
    #: the Ray cluster address for ``executor="ray"`` (``auto`` or ``ray://HOST:PORT``)
    address: str | None
    #: write the report here as JSON and CSV
    report: str | os.PathLike[str] | Path | None
    #: called with live counts (done, failed, running, spent, elapsed, eta) after each change
    on_update: Callable[[dict[str, Any]], None] | None
    #: a ``batch.StopSignal`` to stop the batch from another thread
    stop: Any
    #: score every fetched output with SyncNet (the report's ``sync`` column)
    evaluate: bool
    #: the quality gate of rows that set none (a manifest column may set its own); implies ``evaluate``
    min_sync_confidence: float | None


JOB_PARAMETERS = tuple(JobOptions.__annotations__)


def request_of(video: MediaLike, audio: MediaLike, options: JobOptions | RunOptions) -> LipSyncRequest:
    """The request these inputs and options make; a value the request model refuses is an InvalidParameter."""
    try:
        return LipSyncRequest(video=MediaSource.of(video), audio=MediaSource.of(audio), **job_parameters(options))
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(part) for part in problem["loc"]) or "request"
        raise InvalidParameter(field, problem["msg"]) from None


def job_parameters(options: JobOptions | RunOptions) -> dict[str, Any]:
    """The job parameters given in ``options``, ready for :class:`LipSyncRequest`."""
    found: dict[str, Any] = {name: options.get(name) for name in JOB_PARAMETERS if options.get(name) is not None}
    found["extras"] = found.get("extras") or {}
    return found
