"""What a job's record keeps of its lip-sync scores and of the quality gate it was held to.

Its own module because the record (:mod:`latentsync_routes.types`) holds it and the gate
(:mod:`latentsync_routes.sync_gate`) writes it; neither the scorer (``quality/``) nor this model knows
about the other. Plain numbers only: the record is JSON, and it never holds media.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["GateOutcome", "SyncQuality"]

#: ``passed`` (LSE-C at or over the gate), ``failed-quality`` (under it, or the output could not be scored),
#: ``not gated`` (scores asked for without a gate)
GateOutcome = Literal["passed", "failed-quality", "not gated"]


class SyncQuality(BaseModel):
    """SyncNet's scores of a job's output (``evaluate=True``) and the ``min_sync_confidence`` gate's outcome.

    The numbers are those of ``latentsync-routes evaluate`` on the output file (docs/quality.md): ``lse_c``
    and ``lse_d`` weigh each face track by its windows, ``av_offset`` is the longest track's. A job whose
    output cannot be scored (no face track in it, too little audio) keeps ``error`` and no numbers.
    """

    lse_c: float | None = None
    """Sync confidence (higher is better), window-weighted over the face tracks."""
    lse_d: float | None = None
    """Sync distance (lower is better), window-weighted over the face tracks."""
    av_offset: int | None = None
    """Frames the audio leads the video by, from the longest face track."""
    tracks: list[dict[str, Any]] = Field(default_factory=list)
    """Each face track's scores, as ``evaluate --json`` lists them."""
    official_average: dict[str, Any] = Field(default_factory=dict)
    """The official ``eval_sync_conf.py`` numbers: unweighted mean LSE-C, truncated mean offset."""
    verdict: str | None = None
    """The one-line verdict against the documented thresholds (LSE-C >= 3, offset within 6 frames)."""
    weights_sha256: str
    """sha256 of the SyncNet weights that scored it: scores from other weights are not comparable."""
    weights_pin: str
    """How those weights are vouched for (the pin recorded at download, or a user-supplied file)."""
    min_sync_confidence: float | None = None
    """The gate the job was held to (``None``: scores only)."""
    gate: GateOutcome = "not gated"
    """``passed``, ``failed-quality`` or ``not gated``."""
    error: str | None = None
    """Why the output could not be scored, when it could not (then a gated job is ``failed-quality``)."""
    seconds: float = 0.0
    """Time spent scoring (decode, faces, SyncNet)."""

    @property
    def failed(self) -> bool:
        return self.gate == "failed-quality"
