"""``evaluate=True`` and the ``min_sync_confidence`` gate: score a fetched output, record it, judge it.

The glue between the scorer (:mod:`latentsync_routes.quality`, a model layer that knows nothing of jobs
or money) and the job's record. Why a layer of its own: the scorer must stay usable without any route,
and the client, the route choice, job handles and batches all need the same three steps, in this order:

1. :func:`gate_of`, *before anything is uploaded*: the gate asked for (per call, else the setting
   ``min_sync_confidence``), and SyncNet weights that load, key by key. Without them the job is refused
   with :class:`SyncWeightsMissing` (exit 2), which names ``latentsync-routes download --syncnet``: a
   paid job whose output could not be judged is what this step prevents.
2. :meth:`SyncGate.judge`, *after the output is fetched*: LSE-C / LSE-D of the output (as
   ``latentsync-routes evaluate`` computes them), written into the record (``sync_scores``).
3. Under the gate, :class:`SyncQualityFailed`: the job was paid and its output is kept; the record
   says ``failed-quality`` with the scores, and its cost stays in the journal's spend.

A job found finished (a re-run) is judged from its recorded scores when they came from the same weights,
so asking again never pays and never scores twice; a new gate is applied to the old scores.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import money
from .errors import ConfigurationError, InvalidParameter, SyncQualityFailed, SyncWeightsMissing
from .sync_record import SyncQuality

if TYPE_CHECKING:
    from .config import Settings
    from .journal import Journal
    from .quality.evaluate import Evaluation
    from .quality.syncnet import SyncNet
    from .quality.weights import SyncNetWeights
    from .types import JobRecord, LipSyncResult

__all__ = ["SyncGate", "gate_of", "min_sync_confidence_of", "set_aside"]

log = logging.getLogger(__name__)

_models: dict[tuple[str, str], SyncNet] = {}
#: scores by (output sha256, audio, weights sha256): the same bytes scored with the same weights give the
#: same numbers, so a batch of identical outputs (or a re-run) is scored once per process
_scores: dict[tuple[str, str, str], SyncQuality] = {}
_lock = threading.Lock()


def min_sync_confidence_of(value: Any, *, name: str = "min_sync_confidence") -> float | None:
    """A gate value as given (``None`` for none); a bool, NaN or non-number is refused by name."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidParameter(name, f"must be a finite number (an LSE-C, e.g. 3), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SyncGate:
    """Scoring asked for one call: the verified weights, the loaded network and the gate (``None``: scores only)."""

    weights: SyncNetWeights
    model: SyncNet
    minimum: float | None = None

    def judge(self, result: LipSyncResult, journal: Journal, *, jsonl: Path | None = None) -> LipSyncResult:
        """The result with its output's scores, recorded; :class:`SyncQualityFailed` under the gate."""
        record = result.record
        known = record.sync_scores
        scores = known if known is not None and known.weights_sha256 == self.weights.sha256 else self._score(record)
        scores = scores.model_copy(update={"min_sync_confidence": self.minimum, "gate": outcome(scores, self.minimum)})
        if scores != known:
            record = record.model_copy(update={"sync_scores": scores})
            journal.save(record)
            if jsonl is not None:
                from .records import append_jsonl

                append_jsonl(jsonl, record)
        judged = result.model_copy(update={"record": record, "sync_scores": scores})
        if scores.failed:
            raise SyncQualityFailed(failure_message(judged, scores), judged)
        return judged

    def _score(self, record: JobRecord) -> SyncQuality:
        audio = record.inputs[1] if len(record.inputs) > 1 and record.inputs[1].kind == "path" else None
        return self.score_output(Path(record.output_path or ""), Path(audio.source) if audio else None)

    def score_output(self, output: Path, audio: Path | None = None) -> SyncQuality:
        """``output`` scored against its own audio (else ``audio``, when it has none); a message when it cannot
        be scored. Scored once per process for the same bytes and weights."""
        from .media import sha256_of
        from .types import MediaSource

        digest = sha256_of(MediaSource(kind="path", path=output)) or str(output)
        with _lock:
            found = _scores.get((digest, "", self.weights.sha256)) or _scores.get(
                (digest, str(audio), self.weights.sha256)
            )
            if found is not None:
                return found
            started = time.perf_counter()
            evaluated, against = self._evaluate(output, audio)
            common: dict[str, Any] = {
                "weights_sha256": self.weights.sha256,
                "weights_pin": self.weights.pin,
                "seconds": round(time.perf_counter() - started, 3),
            }
            if isinstance(evaluated, str):
                scores = SyncQuality(error=evaluated, **common)
            else:
                report = evaluated.to_dict()
                scores = SyncQuality(
                    lse_c=evaluated.lse_c, lse_d=evaluated.lse_d, av_offset=evaluated.av_offset,
                    verdict=evaluated.verdict, tracks=report["tracks"],
                    official_average=report["summary"]["official_average"], **common,
                )  # fmt: skip
            _scores[(digest, against, self.weights.sha256)] = scores
            return scores

    def _evaluate(self, output: Path, audio: Path | None) -> tuple[Evaluation | str, str]:
        """The evaluation (or why there is none), and the audio it was scored against ("": the output's own)."""
        from .quality.errors import MediaUnreadable, QualityError
        from .quality.evaluate import evaluate_video

        against = ""
        try:
            try:
                return evaluate_video(output, self.model), against
            except MediaUnreadable as exc:
                if audio is None or "no audio stream" not in exc.message:
                    raise
                against = str(audio)
                return evaluate_video(output, self.model, audio=audio), against
        except QualityError as exc:
            log.warning("the output %s could not be scored: %s", output, exc.message)
            return f"{type(exc).__name__}: {exc.message}", against


def set_aside(journal: Journal, result: LipSyncResult) -> Path | None:
    """Move a failed-quality output out of the way of the next route's (fallback), keeping it: the file goes
    to ``<stem>.failed-quality.<job id>.mp4`` beside it, and its record says where."""
    record = result.record
    if not record.output_path or not Path(record.output_path).is_file():
        return None
    source = Path(record.output_path)
    kept = source.with_name(f"{source.stem}.failed-quality.{record.job_id[:8]}{source.suffix}")
    source.replace(kept)
    journal.save(record.model_copy(update={"output_path": str(kept)}))
    return kept


def outcome(scores: SyncQuality, minimum: float | None) -> str:
    """``not gated`` without a gate; else ``passed`` at or over it, ``failed-quality`` under it or unscored."""
    if minimum is None:
        return "not gated"
    return "passed" if scores.lse_c is not None and scores.lse_c >= minimum else "failed-quality"


def failure_message(result: LipSyncResult, scores: SyncQuality) -> str:
    paid = money.total([result.cost.actual, result.cost.billed_failures])
    why = (
        f"LSE-C {scores.lse_c:.3f} (LSE-D {scores.lse_d:.3f}, offset {scores.av_offset:+d}) is under "
        f"min_sync_confidence {scores.min_sync_confidence:g}"
        if scores.lse_c is not None and scores.lse_d is not None and scores.av_offset is not None
        else f"the output could not be scored ({scores.error})"
    )
    return (
        f"job {result.job_id} failed-quality: {why}; it was paid (${paid:.4f}) and its output is kept at "
        f"{result.output_path}"
    )


def gate_of(settings: Settings, options: Mapping[str, Any]) -> SyncGate | None:
    """The scoring a call asks for, with its weights loaded, or ``None``; refused before any upload.

    ``min_sync_confidence`` per call, else the setting (unless the call says ``evaluate=False``); either
    implies ``evaluate``. The weights: ``syncnet_weights`` per call, else the setting, else the copy
    ``latentsync-routes download --syncnet`` pinned.
    """
    evaluate = options.get("evaluate")
    given = min_sync_confidence_of(options.get("min_sync_confidence"))
    if evaluate is False and given is not None:
        raise InvalidParameter("min_sync_confidence", "a quality gate needs the output scored: drop evaluate=False")
    minimum = given if given is not None else (settings.min_sync_confidence if evaluate is not False else None)
    if not evaluate and minimum is None:
        return None
    weights, model = load_weights(options.get("syncnet_weights") or settings.syncnet_weights)
    return SyncGate(weights, model, minimum)


def load_weights(path: str | Path | None) -> tuple[SyncNetWeights, SyncNet]:
    """The verified weights and their network (loaded once per process and file content)."""
    from .local.checkpoints import CheckpointError
    from .local.errors import ModuleMissing
    from .quality.errors import SyncNetWeightsError
    from .routes.base import module_available

    if not module_available("mediapipe"):  # the scorer's face tracks: missing after payment would be too late
        raise ConfigurationError(
            "scoring the output needs MediaPipe's face detector: pip install 'latentsync-routes[faces]'"
        )
    try:
        from .quality.weights import load_syncnet, resolve_syncnet

        weights = resolve_syncnet(path)
        with _lock:
            if (weights.sha256, "cpu") not in _models:
                _models[(weights.sha256, "cpu")] = load_syncnet(weights.path)
            return weights, _models[(weights.sha256, "cpu")]
    except SyncNetWeightsError as exc:
        raise SyncWeightsMissing(
            f"scoring the output (evaluate / min_sync_confidence) needs SyncNet weights: {exc.message}"
        ) from None
    except (CheckpointError, ModuleMissing) as exc:
        raise ConfigurationError(f"scoring the output needs SyncNet: {exc.message}") from None
    except ImportError as exc:  # torch is the local extra's
        raise ConfigurationError(
            f"scoring the output needs torch ({exc}): pip install 'latentsync-routes[local]'"
        ) from None
