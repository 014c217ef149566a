"""``latentsync-routes batch MANIFEST``: many jobs, checked and priced whole, run with live progress."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ..consent import checked_consent
from ._common import AfterBilledOpt, ConfigOpt, FallbackOpt, JsonOpt, _client, _emit, _errors, _plain, app, err, out


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
        "seed, guidance_scale, loop_mode, inference_steps].",
    ),
    route: str | None = typer.Option(
        None, "--route", "-r", help="Route of rows that name none: a route name, or 'cheapest' per job."
    ),
    among: str | None = typer.Option(None, "--among", help="Routes 'cheapest' may choose from, e.g. fal,replicate."),
    consent: str | None = typer.Option(None, "--consent", help="Consent basis of rows that give none."),
    budget: float | None = typer.Option(None, "--budget", help="Refuse the batch (exit 5) if it may cost more (USD)."),
    fallback: bool = FallbackOpt,
    after_billed: bool = AfterBilledOpt,
    concurrency: list[str] = typer.Option([], "--concurrency", help="ROUTE=N, per route; repeat for each route."),
    report: Path | None = typer.Option(None, "--report", help="Write the report here as .json and .csv."),
    executor: str = typer.Option("local", "--executor", help="local (threads here) or ray."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster: auto or ray://HOST:PORT."),
    on_interrupt: str = typer.Option(
        "wait", "--on-interrupt", help="On Ctrl-C stop submitting, then 'wait' for or 'cancel' running jobs."
    ),
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Run every job of MANIFEST; running the same command again resumes it (finished jobs are not paid again).

    Exit codes: 0 when every job is fetched, 4 when any failed, 130 after Ctrl-C (rows that never started
    are reported as not_started), 2/3/5 when the manifest was refused before anything ran.
    """
    from ..batch import StopSignal, execute_plan, plan_batch, read_manifest
    from ..batch.plan import FallbackRule, parse_concurrency
    from ..errors import ConfigurationError

    with _errors(as_json):
        if on_interrupt not in ("wait", "cancel"):
            raise ConfigurationError(f"--on-interrupt {on_interrupt!r}: use 'wait' or 'cancel'")
        if executor not in ("local", "ray"):
            raise ConfigurationError(f"--executor {executor!r}: use 'local' or 'ray'")
        if executor == "ray":  # refused before the manifest is even read, with the line that installs it
            from ..batch.ray_executor import import_ray
            from ..routes.base import module_available

            if not module_available("ray"):
                import_ray()
        consent = checked_consent(consent, where="--consent")
        client = _client(config)
        limits = parse_concurrency(concurrency)
        candidates = [name.strip() for name in among.split(",") if name.strip()] if among else None
        rule = FallbackRule(fallback, after_billed)
        plan = plan_batch(
            client,
            read_manifest(manifest),
            route=route,
            consent=consent,
            budget=budget,
            among=candidates,
            fallback=rule,
        )
        if not as_json:
            err.print(_plan_table(plan))
        stop = StopSignal()
        done: dict[str, Any] = {}
        finished = threading.Event()  # waited on, not Thread.join: a join cut short by Ctrl-C can lose track

        def work() -> None:
            try:
                done["report"] = execute_plan(
                    client,
                    plan,
                    concurrency=limits,
                    executor=executor,
                    address=address,
                    on_update=lambda s: done.__setitem__("snapshot", s),
                    stop=stop,
                )
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which reports it
                done["error"] = exc
            finally:
                finished.set()

        worker = threading.Thread(target=work, name="batch", daemon=True)
        worker.start()
        live = Live(console=err, transient=True, auto_refresh=False) if err.is_terminal and not as_json else None
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
                    stop.stop(cancel_running=on_interrupt == "cancel")
                    err.print(
                        f"stopping: no new jobs; {'cancelling' if on_interrupt == 'cancel' else 'waiting for'}"
                        " the running ones (Ctrl-C again to leave them running)"
                    )
        finally:
            if live is not None:
                live.stop()
        if "error" in done:
            raise done["error"]
        result = done["report"]
        if report is not None:
            for written in result.write(report):
                err.print(f"report: {escape(str(written))}")

        def human() -> None:
            table = Table("line", "route", "state", "estimated", "actual", "output / error")
            for job in result.jobs:
                actual = "-" if job.actual is None else f"${job.actual:.4f}"
                shown = job.output_path or (job.error or {}).get("message", "")
                table.add_row(*_plain(job.line, job.route, job.state, f"${job.estimated:.4f}", actual, shown))
            out.print(table)
            totals = result.totals
            out.print(
                f"{totals['states']}  estimated ${totals['estimated']:.4f}, actual ${totals['actual']:.4f}, "
                f"failure-billed ${totals['failure_billed']:.4f}"
            )

        _emit(as_json, result.to_json(), human)
        if not result.ok:
            raise typer.Exit(130 if result.interrupted else 4)
