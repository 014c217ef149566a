"""When the provider deletes a made job's output, journalled the first time the job is seen made.

Each route states its output's lifetime from its fact sheet (the ``output_lifetime`` hook: fal, the lifetime
the submit asked for; Replicate, an hour after the prediction ends; WaveSpeed, 7 days). It is counted from
the moment this side sees the job end, which is after the provider made the output: by then the output is
surely gone, so a job asked for again later is told so from its record (:mod:`..job_truth`) rather than
meeting the provider's 404. A job seen made again (a re-fetch) keeps its first expiry.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..types import utcnow

if TYPE_CHECKING:
    from .base import JobContext
    from .hosted_hooks import HostedHooks


def made(route: HostedHooks, job: JobContext) -> dict[str, Any]:
    """The record update that journals the output's expiry with ``completed`` (empty when known or none)."""
    if job.record.output_expires_at is not None:
        return {}
    lifetime = route.output_lifetime(job)
    if lifetime is None:
        return {}
    seconds, basis = lifetime
    return {"output_expires_at": utcnow() + timedelta(seconds=seconds), "output_expiry_basis": basis}
