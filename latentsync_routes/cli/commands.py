"""The single-job commands: routes, estimate, check, run, doctor, download, demo, version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .. import __version__
from ._common import (
    ConfigOpt,
    ForceResubmitOpt,
    JsonOpt,
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


@app.command()
def routes(as_json: bool = JsonOpt, config: Path | None = ConfigOpt) -> None:
    """The routes and the facts each declares (owner, retention, licences, billing, support)."""
    with _errors(as_json):
        client = _client(config)
        infos = client.routes()

        def human() -> None:
            table = Table("route", "owner", "uploads to", "retention", "weights licence", "failure billing")
            for i in infos:
                table.add_row(*_plain(i.name, i.owner, i.upload_destination, i.retention, i.weights_licence,
                                      i.failure_billing))
            out.print(table)

        _emit(as_json, infos, human)


@app.command()
def estimate(
    video: str = typer.Argument(..., help="Video path or https URL."),
    audio: str = typer.Argument(..., help="Audio path or https URL."),
    route: str | None = RouteOpt,
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Price the job on one route, or on every route; nothing is uploaded."""
    with _errors(as_json):
        client = _client(config)
        estimates = [client.estimate(video, audio, route=route)] if route else client.estimate_all(video, audio)

        def human() -> None:
            table = Table("route", "amount", "range", "basis", "source (checked)")
            for e in estimates:
                table.add_row(*_plain(e.route, f"${e.amount:.4f}", f"${e.low:.4f}-${e.high:.4f}", e.basis,
                                      f"{e.price_source} ({e.price_checked})"))
            out.print(table)

        _emit(as_json, estimates, human)


@app.command()
def check(
    video: str = typer.Argument(...),
    audio: str = typer.Argument(...),
    route: str | None = RouteOpt,
    consent: str | None = typer.Option(None, "--consent", help="Consent basis for the people in the media."),
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Show the safety checklist for this job without running it (exit 3 if any check fails)."""
    with _errors(as_json):
        client = _client(config)
        results = client.check(video, audio, route=route, consent=consent)

        def human() -> None:
            table = Table("check", "outcome", "reason")
            for r in results:
                table.add_row(r.check, "[green]pass[/]" if r.passed else "[red]STOP[/]", Text(r.reason))
            out.print(table)

        _emit(as_json, results, human)
        if not all(r.passed for r in results):
            raise typer.Exit(3)


@app.command()
def run(
    video: str = typer.Argument(...),
    audio: str = typer.Argument(...),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the lip-synced mp4."),
    route: str | None = RouteOpt,
    consent: str | None = typer.Option(None, "--consent", help="Consent basis (required to upload media)."),
    seed: int | None = typer.Option(None, "--seed"),
    guidance_scale: float | None = typer.Option(None, "--guidance-scale"),
    inference_steps: int | None = typer.Option(None, "--inference-steps"),
    loop_mode: str | None = typer.Option(None, "--loop-mode", help="pingpong or loop"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    deadline: float | None = typer.Option(None, "--deadline", help="Seconds before the job is cancelled."),
    retry_failed: bool = RetryFailedOpt,
    force_resubmit: bool = ForceResubmitOpt,
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Lip-sync VIDEO to AUDIO on a route and write OUTPUT (a re-run carries on the same job)."""
    from rich.progress import Progress

    with _errors(as_json):
        client = _client(config, route)
        kwargs: dict[str, Any] = dict(
            route=route, consent=consent, seed=seed, guidance_scale=guidance_scale,
            inference_steps=inference_steps, loop_mode=loop_mode, overwrite=overwrite, deadline_seconds=deadline,
            retry_failed=retry_failed, force_resubmit=force_resubmit,
        )
        if as_json or not err.is_terminal:
            result = client.run(video, audio, output, **kwargs)
        else:
            with Progress(console=err, transient=True) as bar:
                task = bar.add_task("starting", total=1.0)

                def progress(message: str, fraction: float | None) -> None:
                    bar.update(task, description=message, completed=fraction if fraction is not None else None)

                result = client.run(video, audio, output, progress=progress, **kwargs)

        def human() -> None:
            out.print(f"[green]done[/]: {escape(str(result.output_path))}  route={result.route}  job={result.job_id}")
            actual = "unknown" if result.cost.actual is None else f"${result.cost.actual:.4f}"
            out.print(f"cost: estimated ${result.cost.estimated:.4f}, actual {actual}")

        _emit(as_json, result, human)



@app.command()
def doctor(as_json: bool = JsonOpt, config: Path | None = ConfigOpt) -> None:
    """What is installed, which credentials are present (never their values), GPU, usable routes."""
    from ..doctor import diagnose

    with _errors(as_json):
        report = diagnose(_client(config))

        def human() -> None:
            table = Table("item", "value")
            for key, value in report.items():
                table.add_row(*_plain(key, json.dumps(value) if not isinstance(value, str) else value))
            out.print(table)

        _emit(as_json, report, human)


@app.command()
def download(
    version: str = typer.Option(..., "--version", help="LatentSync version: 1.5 (256 px) or 1.6 (512 px)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Default: $LATENTSYNC_ROUTES_HOME/models."),
    as_json: bool = JsonOpt,
) -> None:
    """Fetch the local route's checkpoints at pinned revisions and verify them."""
    from ..routes.local import download_checkpoints as fetch

    with _errors(as_json):
        checkpoints = fetch(version, cache_dir=cache_dir)
        paths = {name: str(path) for name, path in checkpoints.paths.items()}
        _emit(as_json, {"version": version, "paths": paths}, lambda: out.print_json(json.dumps(paths)))


@app.command()
def demo(as_json: bool = JsonOpt) -> None:
    """Run the whole data path offline: synthetic media, the in-package fake fal server, one real job.

    Nothing leaves the machine and nothing is paid: the real fal-client talks to a loopback server that
    speaks fal's protocol. Everything lands in a fresh temporary folder, printed at the end.
    """
    import tempfile

    from ..client import LipSyncClient
    from ..config import load_settings
    from ..testing import FakeFal, write_test_audio, write_test_video

    with _errors(as_json):
        folder = Path(tempfile.mkdtemp(prefix="latentsync-demo-"))
        video = write_test_video(folder / "clip.mp4", seconds=2.0)
        audio = write_test_audio(folder / "voice.wav", seconds=3.0)
        # fal bills this endpoint in output seconds with a 40-unit minimum; the fake reports the same.
        with FakeFal(expected_key="demo-key", billable_units=40) as fal:
            settings = load_settings(home=folder / "home", fal_base_url=fal.url, poll_interval=0.05)
            client = LipSyncClient(route="fal", fal_key="demo-key", consent="synthetic", settings=settings)
            estimate = client.estimate(video, audio)
            checks = client.check(video, audio)
            result = client.run(video, audio, folder / "out.mp4")
        summary = {"folder": str(folder), "estimate": estimate, "checks": checks, "result": result}

        def human() -> None:
            out.print(f"[bold]demo folder[/]: {escape(str(folder))}")
            out.print(Text(f"estimate on fal: ${estimate.amount:.4f} ({estimate.basis})"))
            out.print("checks: " + ", ".join(f"{c.check} {'pass' if c.passed else 'STOP'}" for c in checks))
            out.print(f"[green]output[/]: {escape(str(result.output_path))} (request {result.provider_request_id})")
            actual = "unknown" if result.cost.actual is None else f"${result.cost.actual:.4f}"
            out.print(f"cost: estimated ${result.cost.estimated:.4f}, actual {actual}")
            out.print(Text(f"journal: {settings.journal_path}"))

        _emit(as_json, summary, human)


@app.command()
def version() -> None:
    """Print the library version."""
    out.print(__version__)
