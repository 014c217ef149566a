"""The ``latentsync-routes`` command line.

Every command takes ``--json`` and then prints exactly one JSON document on stdout (errors included, as
``{"error": {...}}``); human output goes through rich. Exit codes come from the error classes: 0 success,
2 bad usage or input refused before any upload, 3 policy stop, 4 provider or route failure, 5 budget.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from . import __version__
from .errors import LatentSyncError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Run LatentSync lip-sync on any route.")
jobs_app = typer.Typer(no_args_is_help=True, help="The job journal: list, show, resume, delete.")
app.add_typer(jobs_app, name="jobs")

out = Console()
err = Console(stderr=True)

JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout.")
ConfigOpt = typer.Option(None, "--config", help="TOML config file.")
RouteOpt = typer.Option(None, "--route", "-r", help="Route name (default: LATENTSYNC_ROUTES_ROUTE or config).")
RetryFailedOpt = typer.Option(False, "--retry-failed",
                              help="If the job's provider job failed, pay for a new one (otherwise: exit 4).")
ForceResubmitOpt = typer.Option(False, "--force-resubmit",
                                help="After an ambiguous submit that no lookup finds, submit again (may bill twice).")


def _plain(*values: object) -> list[Text]:
    """Table cells shown as written: paths, reasons and consent texts may contain ``[...]``."""
    return [Text(str(value)) for value in values]


def _dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {key: _dump(v) for key, v in value.items()}
    return value


def _emit(as_json: bool, value: Any, human: Callable[[], None]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(_dump(value), indent=2, default=str) + "\n")
    else:
        human()


def _typed(exc: BaseException) -> LatentSyncError:
    """Anything else that escaped a command, as one of our errors (so it has a type and an exit code).

    Problems of the local set-up (a value pydantic refused, a broken journal database, a file that cannot
    be read or written) exit 2 like any configuration error; anything else is an unexpected failure of
    the route and exits 4. The message names the original exception; the traceback goes to the debug log.
    """
    import sqlite3

    from pydantic import ValidationError

    from .errors import ConfigurationError, RouteError

    name = type(exc).__name__
    text = " ".join(str(exc).split())[:300] or name
    if isinstance(exc, KeyboardInterrupt):
        interrupted = LatentSyncError("interrupted")
        interrupted.exit_code = 130
        return interrupted
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'value'}: {problem['msg']}"
            for problem in exc.errors(include_url=False)[:3]
        )
        return ConfigurationError(f"invalid value: {problems}")
    if isinstance(exc, sqlite3.Error):
        return ConfigurationError(
            f"the job journal (jobs.sqlite3 in LATENTSYNC_ROUTES_HOME) cannot be used: {name}: {text}; "
            "move it aside to start a new one"
        )
    if isinstance(exc, OSError) and exc.filename is not None:
        return ConfigurationError(f"{exc.strerror or text}: {exc.filename}")
    return RouteError(f"unexpected {name}: {text}")


def _reported_by_click() -> tuple[type[BaseException], ...]:
    """Exits and usage errors that click (or typer's vendored copy of it, typer >= 0.24) reports itself."""
    kinds: list[type[BaseException]] = [typer.Exit, typer.Abort]
    vendored = getattr(typer, "TyperException", None)
    if isinstance(vendored, type) and issubclass(vendored, BaseException):
        kinds.append(vendored)
    try:
        import click
    except ImportError:  # pragma: no cover - typer vendors click and click is not installed
        return tuple(kinds)
    return (*kinds, click.exceptions.Exit, click.exceptions.Abort, click.exceptions.ClickException)


def _fail(as_json: bool, exc: LatentSyncError) -> typer.Exit:
    """Print one error (one JSON document on stdout with --json) and give the exit to raise."""
    if as_json:
        sys.stdout.write(json.dumps({"error": exc.to_dict()}, indent=2) + "\n")
    err.print(f"[bold red]error[/]: {type(exc).__name__}: {escape(str(exc))}", highlight=False)
    return typer.Exit(exc.exit_code)


@contextmanager
def _errors(as_json: bool) -> Iterator[None]:
    """Turn any error into an exit code and one clear message (JSON on stdout with --json), no traceback."""
    try:
        yield
    except LatentSyncError as exc:
        raise _fail(as_json, exc) from None
    except (Exception, KeyboardInterrupt) as exc:
        if isinstance(exc, _reported_by_click()):
            raise  # typer.Exit(3) from `check`, and the like
        logging.getLogger(__name__).debug("command failed", exc_info=exc)
        raise _fail(as_json, _typed(exc)) from None


def _client(config: Path | None, route: str | None = None) -> Any:
    from .client import LipSyncClient

    return LipSyncClient(route=route, config_file=config)


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


@jobs_app.command("list")
def jobs_list(
    limit: int = typer.Option(20, "--limit"),
    route: str | None = typer.Option(None, "--route", help="Only this route's jobs."),
    state: str | None = typer.Option(None, "--state", help="Only jobs in this state."),
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Recent jobs in the journal."""
    with _errors(as_json):
        records = _client(config).journal.list(limit=limit, route=route, state=state)

        def human() -> None:
            if not records:
                out.print("no jobs")
                return
            table = Table("job", "route", "state", "cost", "provider request", "output", "created")
            for r in records:
                cost = r.cost.actual if r.cost.actual is not None else r.cost.estimated
                shown = f"${cost + r.cost.billed_failures:.4f}" + ("" if r.cost.actual is not None else " (est.)")
                state_shown = f"{r.state} (interrupted)" if r.interrupted else r.state
                table.add_row(*_plain(r.job_id, r.route, state_shown, shown, r.provider_request_id, r.output_path,
                                      r.created_at.isoformat(timespec="seconds")))
            out.print(table)

        _emit(as_json, records, human)


@jobs_app.command("show")
def jobs_show(job_id: str, as_json: bool = JsonOpt, config: Path | None = ConfigOpt) -> None:
    """One job's full production record."""
    from .errors import ConfigurationError

    with _errors(as_json):
        record = _client(config).journal.get(job_id)
        if record is None:
            raise ConfigurationError(f"no job {job_id!r} in the journal")
        _emit(as_json, record, lambda: out.print_json(record.model_dump_json()))


@jobs_app.command("resume")
def jobs_resume(
    job_id: str,
    retry_failed: bool = RetryFailedOpt,
    force_resubmit: bool = ForceResubmitOpt,
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Carry on a journalled job: wait for its provider job and fetch the output (never a second paid job
    unless --retry-failed or --force-resubmit says so)."""
    with _errors(as_json):
        result = _client(config).resume(job_id, retry_failed=retry_failed, force_resubmit=force_resubmit)
        _emit(as_json, result, lambda: out.print(f"[green]done[/]: {escape(str(result.output_path))}"))


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, as_json: bool = JsonOpt, config: Path | None = ConfigOpt) -> None:
    """Cancel a job: its provider job too, whichever process is running it; the record says what it cost."""
    with _errors(as_json):
        record = _client(config).cancel(job_id)

        def human() -> None:
            out.print(f"job {escape(record.job_id)}: {record.state}")
            if record.failure_reason:
                out.print(escape(record.failure_reason))

        _emit(as_json, record, human)


@jobs_app.command("delete")
def jobs_delete(
    job_id: str,
    keep_output: bool = typer.Option(False, "--keep-output", help="Delete remote uploads only."),
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Delete a job's output and remote uploads where the provider allows; the record says what went."""
    with _errors(as_json):
        record = _client(config).delete_job(job_id, delete_output=not keep_output)

        def human() -> None:
            for item in record.deleted:
                out.print(f"[green]deleted[/]: {escape(item)}")
            for item in record.not_deleted:
                out.print(f"[yellow]not deleted[/]: {escape(item)}")

        _emit(as_json, record, human)


@app.command()
def doctor(as_json: bool = JsonOpt, config: Path | None = ConfigOpt) -> None:
    """What is installed, which credentials are present (never their values), GPU, usable routes."""
    from .doctor import diagnose

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
    from .local.checkpoints import download as fetch

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

    from .client import LipSyncClient
    from .config import load_settings
    from .testing import FakeFal, write_test_audio, write_test_video

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


def main() -> None:
    """The console script. Under --json even a usage error or a crash is one JSON document on stdout."""
    if "--json" not in sys.argv[1:]:
        app()
        return
    try:
        code = app(standalone_mode=False)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback under --json
        format_message = getattr(exc, "format_message", None)
        if isinstance(exc, _reported_by_click()) and callable(format_message):  # a usage error
            usage = LatentSyncError(str(format_message()))
            usage.exit_code = int(getattr(exc, "exit_code", 2))
            sys.stdout.write(json.dumps({"error": {**usage.to_dict(), "type": type(exc).__name__}}, indent=2) + "\n")
            err.print(f"[bold red]error[/]: {escape(usage.message)}", highlight=False)
            code = usage.exit_code
        else:  # an Abort, or something that escaped outside a command's error handling
            code = _fail(True, _typed(KeyboardInterrupt() if isinstance(exc, typer.Abort) else exc)).exit_code
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
