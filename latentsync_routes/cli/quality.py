"""``latentsync-routes evaluate``: LSE-C / LSE-D of a video, per face track, with a one-line verdict.

The scorer (:mod:`latentsync_routes.quality`) raises its own errors; here they become the package's typed
errors, so every refusal (unreadable media, no face, too little audio, no weights) exits 2 with one
message and never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from ._common import JsonOpt, _emit, _errors, _plain, app, out

if TYPE_CHECKING:
    from ..sync_record import SyncQuality

EvaluateOpt = typer.Option(
    False, "--evaluate", help="Score the output with SyncNet (LSE-C / LSE-D); needs `download --syncnet`."
)
MinSyncOpt = typer.Option(
    None,
    "--min-sync-confidence",
    help="Quality gate: an output under this LSE-C is failed-quality (paid, kept; exit 4). Implies --evaluate.",
)
SyncNetWeightsOpt = typer.Option(
    None, "--syncnet-weights", help="syncnet_v2.model to use (default: the copy `download --syncnet` pinned)."
)


def quality_options(evaluate: bool, minimum: float | None, weights: Path | None) -> dict[str, Any]:
    """The scoring options given on the command line (none given: the settings decide)."""
    found: dict[str, Any] = {"evaluate": True} if evaluate else {}
    if minimum is not None:
        found["min_sync_confidence"] = minimum
    if weights is not None:
        found["syncnet_weights"] = weights
    return found


def sync_line(scores: SyncQuality) -> str:
    """One line of a job's scores and gate outcome."""
    if scores.lse_c is None or scores.lse_d is None or scores.av_offset is None:
        return f"sync: not scored ({scores.error}); gate: {scores.gate}"
    gate = f" (min {scores.min_sync_confidence:g})" if scores.min_sync_confidence is not None else ""
    return (
        f"sync: LSE-C {scores.lse_c:.3f}, LSE-D {scores.lse_d:.3f}, offset {scores.av_offset:+d}; "
        f"gate: {scores.gate}{gate}"
    )


@contextmanager
def quality_errors() -> Iterator[None]:
    """The scorer's and the checkpoint manager's errors as the package's (all exit 2)."""
    from ..errors import ConfigurationError, InputError
    from ..local.checkpoints import CheckpointError
    from ..local.errors import ModuleMissing
    from ..quality.errors import QualityError, SyncNetWeightsError

    try:
        yield
    except SyncNetWeightsError as exc:
        raise ConfigurationError(exc.message) from None
    except QualityError as exc:
        raise InputError(exc.message) from None
    except (CheckpointError, ModuleMissing) as exc:
        raise ConfigurationError(exc.message) from None


def _human(report: dict[str, Any]) -> None:
    table = Table("track", "frames", "from (s)", "to (s)", "offset", "LSE-D", "LSE-C")
    for t in report["tracks"]:
        table.add_row(
            *_plain(
                t["track"],
                t["frames"],
                f"{t['start_s']:.2f}",
                f"{t['end_s']:.2f}",
                t["av_offset"],
                f"{t['lse_d']:.3f}",
                f"{t['lse_c']:.3f}",
            )
        )
    out.print(table)
    summary = report["summary"]
    official = summary["official_average"]
    out.print(
        f"summary: LSE-C {summary['lse_c']:.3f}, LSE-D {summary['lse_d']:.3f}, offset {summary['av_offset']:+d} "
        f"(official average: LSE-C {official['lse_c']:.3f}, offset {official['av_offset']:+d})",
        highlight=False,
    )
    out.print(summary["verdict"], highlight=False, markup=False)


@app.command()
def evaluate(
    video: Path = typer.Argument(..., help="The video to score (a lip-synced output, or any talking-face clip)."),
    audio: Path | None = typer.Option(None, "--audio", help="Score against this audio instead of the video's own."),
    syncnet_weights: Path | None = SyncNetWeightsOpt,
    device: str = typer.Option("cpu", "--device", help="torch device for SyncNet (cpu, cuda, ...)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Default: $LATENTSYNC_ROUTES_HOME/models."),
    as_json: bool = JsonOpt,
) -> None:
    """Lip-sync quality: SyncNet's LSE-C (higher is better) and LSE-D (lower) per face track, and a verdict."""
    with _errors(as_json), quality_errors():
        from ..quality.errors import MediaUnreadable
        from ..quality.evaluate import evaluate_video
        from ..quality.weights import load_syncnet, resolve_syncnet

        for given in (video, audio):
            if given is not None and not given.is_file():  # before the weights: the first thing to fix
                raise MediaUnreadable(f"no file at {given}")
        weights = resolve_syncnet(syncnet_weights, cache_dir=cache_dir)
        model = load_syncnet(weights.path, device=device)
        report = evaluate_video(video, model, audio=audio).to_dict()
        report["weights"] = weights.to_dict()
        _emit(as_json, report, lambda: _human(report))


def download_syncnet_weights(cache_dir: Path | None) -> dict[str, Any]:
    """``download --syncnet``: fetch, verify and pin ``syncnet_v2.model``; the report of what was checked."""
    with quality_errors():
        from ..quality.weights import download_syncnet

        return download_syncnet(cache_dir).to_dict()
