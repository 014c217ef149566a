"""The single-job commands: routes, estimate, check, run, doctor, download, demo, version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .. import __version__
from ..consent import checked_consent
from ._common import (
    AfterBilledOpt,
    ConfigOpt,
    DeadlineOpt,
    FaceCheckOpt,
    FallbackOpt,
    ForceResubmitOpt,
    JsonOpt,
    NewJobOpt,
    OnQualityOpt,
    RetryFailedOpt,
    RouteOpt,
    _client,
    _emit,
    _errors,
    _plain,
    app,
    err,
    out,
)
from .quality import EvaluateOpt, MinSyncOpt, SyncNetWeightsOpt, quality_options, sync_line

if TYPE_CHECKING:
    from ..types import LipSyncResult

if TYPE_CHECKING:
    from ..types import LipSyncResult

#: How ``check`` shows a row's outcome: a skipped check is never shown as a pass.
_OUTCOME_STYLE = {"pass": "[green]pass[/]", "skipped": "[yellow]skipped[/]", "STOP": "[red]STOP[/]"}


@app.command()
def routes(as_json: bool = JsonOpt, config: Path | None = ConfigOpt) -> None:
    """The routes and the facts each declares (owner, retention, licences, billing, support)."""
    with _errors(as_json):
        client = _client(config)
        infos = client.routes()

        def human() -> None:
            # one block per route, label and text side by side: a six-column table of sentences is
            # unreadable at 80 columns
            for n, i in enumerate(infos):
                table = Table.grid(padding=(0, 2))
                table.add_column(style="bold", no_wrap=True)
                table.add_column(overflow="fold")
                for label, text in (("owner", i.owner), ("uploads to", i.upload_destination),
                                    ("retention", i.retention), ("weights licence", i.weights_licence),
                                    ("failure billing", i.failure_billing)):  # fmt: skip
                    table.add_row(label, Text(str(text or "-")))
                out.print(Text(("\n" if n else "") + i.name, style="bold cyan"))
                out.print(table)

        _emit(as_json, infos, human)


@app.command()
def estimate(
    video: str = typer.Argument(..., help="Video path or https URL."),
    audio: str = typer.Argument(..., help="Audio path or https URL."),
    route: str | None = typer.Option(
        None, "--route", "-r", help="Price on this route only (default: every route, whatever the default route is)."
    ),
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Price the job on one route, or on every route; nothing is uploaded.

    A route that would refuse the inputs (over its limits or the policy's) is marked "refused" with the
    reason, which `check` shows as a STOP row and `run` stops on (exit 3).
    """
    with _errors(as_json):
        client = _client(config)
        estimates = [client.estimate(video, audio, route=route)] if route else client.estimate_all(video, audio)

        def human() -> None:
            table = Table("route", "amount", "range", "basis", "source (checked)")
            for e in estimates:
                if e.refused:
                    table.add_row(
                        *_plain(
                            e.route,
                            "refused",
                            "-",
                            f"the route would refuse these inputs: {e.refused}",
                            f"{e.price_source} ({e.price_checked})",
                        )
                    )
                    continue
                table.add_row(
                    *_plain(
                        e.route,
                        f"${e.amount:.4f}",
                        f"${e.low:.4f}-${e.high:.4f}",
                        e.basis,
                        f"{e.price_source} ({e.price_checked})",
                    )
                )
            out.print(table)

        _emit(as_json, estimates, human)


@app.command()
def check(
    video: str = typer.Argument(...),
    audio: str = typer.Argument(...),
    route: str | None = RouteOpt,
    consent: str | None = typer.Option(None, "--consent", help="Consent basis for the people in the media."),
    deadline: float | None = DeadlineOpt,
    face_check: bool | None = FaceCheckOpt,
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Show the checklist `run` enforces, without running anything (exit 3 if a check fails, 5 if only the
    budget row does, 2 if the route is not installed here).

    Rows: availability (when the route's extra is missing: what to install), consent, retention,
    licence, input limits (the route's and the policy's), failure billing,
    support path, deadline (the estimate's expected time), face (a few sampled frames), and with a
    `budget_total` the budget (what the journal's jobs of the budget period are committed to).
    """
    with _errors(as_json):
        consent = checked_consent(consent, where="--consent")
        client = _client(config)
        results, estimate = client.assess(
            video, audio, route=route, consent=consent, deadline_seconds=deadline, face_check=face_check
        )
        budget = client.budget_row(estimate)
        results = [*results, *([budget] if budget is not None else [])]

        def human() -> None:
            table = Table("check", "outcome", "reason")
            for r in results:
                table.add_row(r.check, _OUTCOME_STYLE[r.outcome], Text(r.reason))
            out.print(table)

        _emit(as_json, results, human)
        failed = {r.check for r in results if not r.passed}
        if "availability" in failed:
            raise typer.Exit(2)  # the route is not installed here: configuration, like run's refusal
        if failed:
            raise typer.Exit(5 if failed == {"budget"} else 3)


AmongOpt = typer.Option(
    None,
    "--among",
    help="Routes to move on to with --fallback, in order (with --route cheapest: the candidates), e.g. replicate.",
)


def _fallback_options(
    route: str, among: str | None, fallback: bool, after_billed: bool, on_quality: bool
) -> dict[str, Any]:
    """``run``'s ``routes`` and fallback keywords: ``--route`` first, then the ``--among`` routes."""
    names = [name.strip() for name in (among or "").split(",") if name.strip()]
    if not (names or fallback):
        return {}
    routes = [route, *(name for name in names if name != route)]
    return {
        "routes": routes,
        "fallback": fallback,
        "fallback_after_billed_failure": after_billed,
        "fallback_on_quality": on_quality,
    }


@app.command()
def run(
    video: str = typer.Argument(...),
    audio: str = typer.Argument(...),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Where to write the lip-synced video: a path ending in .mp4, or a folder."
    ),
    route: str | None = RouteOpt,
    consent: str | None = typer.Option(None, "--consent", help="Consent basis (required to upload media)."),
    seed: int | None = typer.Option(None, "--seed"),
    guidance_scale: float | None = typer.Option(None, "--guidance-scale"),
    inference_steps: int | None = typer.Option(None, "--inference-steps"),
    loop_mode: str | None = typer.Option(None, "--loop-mode", help="pingpong or loop"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    deadline: float | None = DeadlineOpt,
    face_check: bool | None = FaceCheckOpt,
    retry_failed: bool = RetryFailedOpt,
    force_resubmit: bool = ForceResubmitOpt,
    among: str | None = AmongOpt,
    fallback: bool = FallbackOpt,
    after_billed: bool = AfterBilledOpt,
    on_quality: bool = OnQualityOpt,
    new_job: bool = NewJobOpt,
    evaluate: bool = EvaluateOpt,
    min_sync_confidence: float | None = MinSyncOpt,
    syncnet_weights: Path | None = SyncNetWeightsOpt,
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Lip-sync VIDEO to AUDIO on a route and write OUTPUT (a re-run carries on the same job)."""
    with _errors(as_json):
        consent = checked_consent(consent, where="--consent")
        client = _client(config, route)
        kwargs: dict[str, Any] = dict(
            route=route,
            consent=consent,
            seed=seed,
            guidance_scale=guidance_scale,
            inference_steps=inference_steps,
            loop_mode=loop_mode,
            overwrite=overwrite,
            deadline_seconds=deadline,
            retry_failed=retry_failed,
            force_resubmit=force_resubmit,
            new_job=new_job,
            face_check=face_check,
            **_fallback_options(route or client.settings.route, among, fallback, after_billed, on_quality),
            **quality_options(evaluate, min_sync_confidence, syncnet_weights),
        )
        result = _run_showing_progress(client, video, audio, output, kwargs, quiet=as_json or not err.is_terminal)
        _emit(as_json, result, lambda: _print_result(result))


def _run_showing_progress(
    client: Any, video: str, audio: str, output: Path, kwargs: dict[str, Any], *, quiet: bool
) -> LipSyncResult:
    """``client.run``, with a progress bar on a terminal."""
    if quiet:
        result: LipSyncResult = client.run(video, audio, output, **kwargs)
        return result
    from rich.progress import Progress

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("starting", total=1.0)

        def progress(message: str, fraction: float | None) -> None:
            bar.update(task, description=message, completed=fraction if fraction is not None else None)

        result = client.run(video, audio, output, progress=progress, **kwargs)
        return result


def _print_result(result: LipSyncResult) -> None:
    """``run``'s human output: where the video is, and what was charged now (nothing for a finished job)."""
    out.print(f"[green]done[/]: {escape(str(result.output_path))}  route={result.route}  job={result.job_id}")
    actual = "unknown" if result.cost.actual is None else f"${result.cost.actual:.4f}"
    sandbox = " (sandbox: a base-URL override, not real money)" if result.record.sandbox else ""
    if result.already_done:
        paid = result.cost.worst_case()
        out.print(
            f"already paid: nothing charged now (job {result.job_id}, ${paid:.4f} on "
            f"{result.record.created_at.date().isoformat()}){sandbox}"
        )
    else:
        out.print(f"cost: estimated ${result.cost.estimated:.4f}, actual {actual}{sandbox}")
    if result.sync_scores is not None:
        out.print(sync_line(result.sync_scores), highlight=False, markup=False)


@app.command()
def doctor(as_json: bool = JsonOpt, config: Path | None = ConfigOpt) -> None:
    """What is installed, which credentials are present (never their values), GPU, usable routes."""
    from ..doctor import diagnose

    with _errors(as_json):
        report = diagnose(_client(config))

        def human() -> None:
            table = Table("item", "value")
            for key, value in report.items():
                table.add_row(*_plain(key, _readable(value)))
            out.print(table)

        _emit(as_json, report, human)


@app.command()
def download(
    version: str | None = typer.Option(None, "--version", help="LatentSync version: 1.5 (256 px) or 1.6 (512 px)."),
    syncnet: bool = typer.Option(False, "--syncnet", help="Fetch the official SyncNet weights (for `evaluate`)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Default: $LATENTSYNC_ROUTES_HOME/models."),
    as_json: bool = JsonOpt,
) -> None:
    """Fetch the local route's checkpoints (--version) or the SyncNet weights (--syncnet), pinned and verified."""
    from ..routes.local.route import download_checkpoints as fetch

    with _errors(as_json):
        from ..errors import InvalidParameter
        from ..local.checkpoint_manifest import VERSIONS

        if syncnet:
            from .quality import download_syncnet_weights

            if version is not None:
                raise InvalidParameter("--version", "fetch one thing at a time: --version or --syncnet")
            report = download_syncnet_weights(cache_dir)
            _emit(as_json, {"syncnet": report}, lambda: out.print_json(json.dumps(report)))
            return
        if version is None or version not in VERSIONS:
            choices = ", ".join(VERSIONS)
            raise InvalidParameter("--version", f"takes one of {choices}; got {version!r} (or pass --syncnet)")
        from ..errors import RouteNotInstalled
        from ..routes.base import module_available, not_installed_message

        if not module_available("huggingface_hub"):  # the downloads go through it: say what to install (exit 2)
            raise RouteNotInstalled(not_installed_message("local", "huggingface_hub", "local"), route="local")
        checkpoints = fetch(version, cache_dir=cache_dir)
        paths = {name: str(path) for name, path in checkpoints.paths.items()}
        _emit(as_json, {"version": version, "paths": paths}, lambda: out.print_json(json.dumps(paths)))


@app.command()
def demo(
    keep: bool = typer.Option(False, "--keep", help="Keep the demo folder (media, output, journal); default: removed."),
    as_json: bool = JsonOpt,
) -> None:
    """Run the whole data path offline: synthetic media, the in-package fake fal server, one real job.

    Nothing leaves the machine and nothing is paid: the real fal-client talks to a loopback server that
    speaks fal's protocol. Its output is NOT lip-synced: the fake returns the input video looped or cut to
    the audio's length, carrying that audio, so its length, the estimate and the bill agree as they would
    on fal. Everything lands in a fresh temporary folder, removed at the end unless --keep is given.
    """
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="latentsync-demo-"))
    try:
        _demo(folder, keep, as_json)
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def _demo(folder: Path, keep: bool, as_json: bool) -> None:
    from ..client import LipSyncClient
    from ..config import load_settings
    from ..testing import FakeFal, write_test_audio, write_test_video

    with _errors(as_json):
        video = write_test_video(folder / "clip.mp4", seconds=2.0)
        audio = write_test_audio(folder / "voice.wav", seconds=3.0)
        # The fake bills by the price book's rule on its output (which follows the audio), like fal's card.
        with FakeFal(expected_key="demo-key") as fal:
            settings = load_settings(home=folder / "home", poll_interval=0.05)
            client = LipSyncClient(
                route="fal",
                credentials={"fal": "demo-key"},
                credentials_only=True,
                route_settings={"fal": {"base_url": fal.url}},
                consent="synthetic",
                settings=settings,
            )
            estimate = client.estimate(video, audio)
            # The synthetic clip shows no face: the face check would rightly STOP it, so it is off for this
            # one job, and the summary says so (docs/safety.md, "The face check").
            checks = client.check(video, audio, face_check=False)
            result = client.run(video, audio, folder / "out.mp4", face_check=False)
        note = (
            "the output is NOT lip-synced: the offline fake returns the input video looped or cut to the "
            "audio's length, with that audio; the face check was off (the synthetic clip has no face)"
        )
        summary = {
            "folder": str(folder),
            "kept": keep,
            "estimate": estimate,
            "checks": checks,
            "result": result,
            "lip_synced": False,
            "note": note,
        }

        def human() -> None:
            shown = escape(str(folder)) if keep else f"{escape(str(folder))} (removed at exit; --keep keeps it)"
            out.print(f"[bold]demo folder[/]: {shown}")
            out.print(Text(f"estimate on fal: ${estimate.amount:.4f} ({estimate.basis})"))
            out.print("checks: " + ", ".join(f"{c.check} {c.outcome}" for c in checks))
            out.print("face check: off for this synthetic clip, which shows no face (a real video is checked)")
            out.print(f"[green]output[/]: {escape(str(result.output_path))} (request {result.provider_request_id})")
            out.print(f"[yellow]note[/]: {note}")
            actual = "unknown" if result.cost.actual is None else f"${result.cost.actual:.4f}"
            out.print(f"cost: estimated ${result.cost.estimated:.4f}, actual {actual}")
            out.print(Text(f"journal: {settings.journal_path}"))

        _emit(as_json, summary, human)


def _readable(value: Any, indent: str = "") -> str:
    """A doctor value as lines a person reads (``key: value``, nested ones indented), never raw JSON."""
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{indent}{key}:\n{_readable(item, indent + '  ')}")
            else:
                lines.append(f"{indent}{key}: {_readable(item)}")
        return "\n".join(lines) or "-"
    if isinstance(value, list):
        return "\n".join(f"{indent}- {_readable(item, indent + '  ').lstrip()}" for item in value) or "none"
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


@app.command()
def version() -> None:
    """Print the library version."""
    out.print(__version__)
