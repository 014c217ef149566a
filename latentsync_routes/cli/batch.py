"""``latentsync-routes batch MANIFEST``: many jobs, checked and priced whole, run with live progress."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ..consent import checked_consent
from ._common import (
    AfterBilledOpt,
    ConfigOpt,
    FallbackOpt,
    JsonOpt,
    OnQualityOpt,
    _client,
    _emit,
    _errors,
    _plain,
    app,
    err,
    out,
)
from .quality import EvaluateOpt, MinSyncOpt, SyncNetWeightsOpt

if TYPE_CHECKING:
    from ..batch.report import BatchReport


def _plan_table(plan: Any) -> Table:
    table = Table("route", "jobs", "low", "expected", "high", title="the batch, priced before anything runs")
    for route, total in sorted(plan.totals.items()):
        table.add_row(*_plain(route, total.jobs, f"${total.low:.4f}", f"${total.expected:.4f}", f"${total.high:.4f}"))
    table.add_row(*_plain("all", len(plan.items), f"${plan.low:.4f}", f"${plan.expected:.4f}", f"${plan.high:.4f}"))
    return table


def _status(snapshot: dict[str, Any]) -> str:
    return (
        f"{snapshot['done']}/{snapshot['total']} done, {snapshot['failed']} failed, {snapshot['running']} running"
        f"  ${snapshot['spent']:.4f} so far  elapsed {snapshot['elapsed']:.0f} s  ETA ~{snapshot['eta']:.0f} s"
    )


@app.command()
def batch(
    manifest: Path = typer.Argument(
        ...,
        help="CSV (header row) or JSONL: video, audio, output[, route, consent, "
        "seed, guidance_scale, loop_mode, inference_steps, min_sync_confidence].",
    ),
    route: str | None = typer.Option(
        None, "--route", "-r", help="Route of rows that name none: a route name, or 'cheapest' per job."
    ),
    among: str | None = typer.Option(None, "--among", help="Routes 'cheapest' may choose from, e.g. fal,replicate."),
    consent: str | None = typer.Option(None, "--consent", help="Consent basis of rows that give none."),
    budget: float | None = typer.Option(None, "--budget", help="Refuse the batch (exit 5) if it may cost more (USD)."),
    fallback: bool = FallbackOpt,
    after_billed: bool = AfterBilledOpt,
    on_quality: bool = OnQualityOpt,
    concurrency: list[str] = typer.Option([], "--concurrency", help="ROUTE=N, per route; repeat for each route."),
    report: Path | None = typer.Option(None, "--report", help="Write the report here as .json and .csv."),
    executor: str = typer.Option("local", "--executor", help="local (threads here) or ray."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster: auto or ray://HOST:PORT."),
    on_interrupt: str = typer.Option(
        "wait", "--on-interrupt", help="On Ctrl-C stop submitting, then 'wait' for or 'cancel' running jobs."
    ),
    evaluate: bool = EvaluateOpt,
    min_sync_confidence: float | None = MinSyncOpt,
    syncnet_weights: Path | None = SyncNetWeightsOpt,
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Run every job of MANIFEST; running the same command again resumes it (finished jobs are not paid again).

    Exit codes: 0 when every job is fetched (and passed its quality gate), 4 when any failed, 130 after
    Ctrl-C (rows that never started are reported as not_started), 2/3/5 when the manifest was refused
    before anything ran.
    """
    from ..batch import plan_batch, read_manifest
    from ..batch.plan import FallbackRule, parse_concurrency
    from ..batch.runner import with_quality

    with _errors(as_json):
        _check_choices(on_interrupt, executor)
        consent = checked_consent(consent, where="--consent")
        client = _client(config)
        limits = parse_concurrency(concurrency)
        candidates = [name.strip() for name in among.split(",") if name.strip()] if among else None
        rule = FallbackRule(fallback, after_billed, on_quality)
        rows = with_quality(client, read_manifest(manifest), evaluate, min_sync_confidence, syncnet_weights)
        plan = plan_batch(client, rows, route=route, consent=consent, budget=budget, among=candidates, fallback=rule)
        if not as_json:
            err.print(_plan_table(plan))
        run = partial(_execute, client, plan, limits=limits, executor=executor, address=address)
        result = _run_live(run, cancel_on_interrupt=on_interrupt == "cancel", show=err.is_terminal and not as_json)
        if report is not None:
            for written in result.write(report):
                err.print(f"report: {escape(str(written))}")
        _emit(as_json, result.to_json(), lambda: _print_report(result))
        if not result.ok:
            raise typer.Exit(130 if result.interrupted else 4)


def _check_choices(on_interrupt: str, executor: str) -> None:
    """The choices Typer takes as text, refused before the manifest is read (Ray with its install line)."""
    from ..errors import ConfigurationError

    if on_interrupt not in ("wait", "cancel"):
        raise ConfigurationError(f"--on-interrupt {on_interrupt!r}: use 'wait' or 'cancel'")
    if executor not in ("local", "ray"):
        raise ConfigurationError(f"--executor {executor!r}: use 'local' or 'ray'")
    if executor == "ray":
        from ..batch.ray_executor import import_ray
        from ..routes.base import module_available

        if not module_available("ray"):
            import_ray()


def _execute(
    client: Any, plan: Any, *, limits: dict[str, int], executor: str, address: str | None, on_update: Any, stop: Any
) -> BatchReport:
    """``execute_plan`` with the command's limits; the live loop adds ``on_update`` and ``stop``."""
    from ..batch import execute_plan

    return execute_plan(
        client, plan, concurrency=limits, executor=executor, address=address, on_update=on_update, stop=stop
    )


def _run_live(run: Callable[..., BatchReport], *, cancel_on_interrupt: bool, show: bool) -> BatchReport:
    """Run the batch on a worker thread while this one shows progress and turns Ctrl-C into a stop."""
    from ..batch import StopSignal

    stop = StopSignal()
    done: dict[str, Any] = {}
    finished = threading.Event()  # waited on, not Thread.join: a join cut short by Ctrl-C can lose track

    def work() -> None:
        try:
            done["report"] = run(on_update=lambda s: done.__setitem__("snapshot", s), stop=stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which reports it
            done["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=work, name="batch", daemon=True).start()
    live = Live(console=err, transient=True, auto_refresh=False) if show else None
    try:
        if live is not None:
            live.start()
        while not finished.is_set():
            try:
                finished.wait(0.25)
                if live is not None and "snapshot" in done:
                    live.update(_status(done["snapshot"]), refresh=True)
            except KeyboardInterrupt:
                if stop.requested.is_set():
                    raise  # a second Ctrl-C: leave now; the journal has every job, re-run to resume
                stop.stop(cancel_running=cancel_on_interrupt)
                err.print(
                    f"stopping: no new jobs; {'cancelling' if cancel_on_interrupt else 'waiting for'}"
                    " the running ones (Ctrl-C again to leave them running)"
                )
    finally:
        if live is not None:
            live.stop()
    if "error" in done:
        raise done["error"]
    report: BatchReport = done["report"]
    return report


def _print_report(result: BatchReport) -> None:
    table = Table("line", "route", "state", "estimated", "actual", "sync", "output / error")
    for job in result.jobs:
        actual = "-" if job.actual is None else f"${job.actual:.4f}"
        shown = job.output_path or (job.error or {}).get("message", "")
        sync = job.sync or {}
        scored = "-" if sync.get("lse_c") is None else f"LSE-C {sync['lse_c']:.2f} {sync.get('gate')}"
        table.add_row(*_plain(job.line, job.route, job.state, f"${job.estimated:.4f}", actual, scored, shown))
    out.print(table)
    totals = result.totals
    out.print(
        f"{totals['states']}  estimated ${totals['estimated']:.4f}, actual ${totals['actual']:.4f}, "
        f"failure-billed ${totals['failure_billed']:.4f}"
    )
