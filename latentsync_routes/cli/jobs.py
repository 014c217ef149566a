"""``latentsync-routes jobs ...``: the journal, seen and acted on."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from .. import money
from ..spend import per_accepted_job
from ._common import (
    ConfigOpt,
    ForceResubmitOpt,
    JsonOpt,
    NewJobOpt,
    RetryFailedOpt,
    _client,
    _emit,
    _errors,
    _plain,
    jobs_app,
    out,
)


@jobs_app.command("list")
def jobs_list(
    limit: int = typer.Option(20, "--limit"),
    route: str | None = typer.Option(None, "--route", help="Only this route's jobs."),
    state: str | None = typer.Option(None, "--state", help="Only jobs in this state."),
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Recent jobs in the journal; each id is shown as its shortest unique prefix, which every command
    taking a job id accepts (as does the whole id)."""
    with _errors(as_json):
        records = _client(config).journal.list(limit=limit, route=route, state=state)

        def human() -> None:
            if not records:
                out.print("no jobs")
                return
            table = Table("job", "route", "state", "cost", "provider request", "output", "created")
            table.columns[0].no_wrap = True  # an id is taken whole or as a prefix: never cut
            shown_id = _client(config).journal.prefix_length(r.job_id for r in records)
            for r in records:
                cost = r.cost.actual if r.cost.actual is not None else r.cost.estimated
                shown = f"${cost + r.cost.billed_failures:.4f}" + ("" if r.cost.actual is not None else " (est.)")
                state_shown = f"{r.state} (interrupted)" if r.interrupted else r.state
                if r.sync_scores is not None and r.sync_scores.failed:
                    state_shown = f"{r.state} (failed-quality)"  # paid and kept, under its min_sync_confidence
                table.add_row(
                    *_plain(
                        r.job_id[:shown_id],
                        r.route,
                        state_shown,
                        shown,
                        r.provider_request_id,
                        r.output_path,
                        r.created_at.isoformat(timespec="seconds"),
                    )
                )
            out.print(table)

        _emit(as_json, records, human)


@jobs_app.command("show")
def jobs_show(job_id: str, as_json: bool = JsonOpt, config: Path | None = ConfigOpt) -> None:
    """One job's full production record (ID: the job id or a unique prefix of it, at least 6 characters)."""
    with _errors(as_json):
        record = _client(config).journal.find(job_id)
        _emit(as_json, record, lambda: out.print_json(record.model_dump_json()))


@jobs_app.command("resume")
def jobs_resume(
    job_id: str,
    retry_failed: bool = RetryFailedOpt,
    force_resubmit: bool = ForceResubmitOpt,
    new_job: bool = NewJobOpt,
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Carry on a journalled job: wait for its provider job and fetch the output (never a second paid job
    unless --retry-failed or --force-resubmit says so; a finished job whose output was deleted or has expired
    is paid again only with --new-job)."""
    with _errors(as_json):
        result = _client(config).resume(
            job_id, retry_failed=retry_failed, force_resubmit=force_resubmit, new_job=new_job
        )
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
    """Delete a job's output and remote uploads where the provider allows; the record (still fetched and paid)
    says what went and when. A job still running is refused (exit 4): cancel it or wait for it to end."""
    with _errors(as_json):
        record = _client(config).delete_job(job_id, delete_output=not keep_output)

        def human() -> None:
            for item in record.deleted:
                out.print(f"[green]deleted[/]: {escape(item)}")
            for item in record.not_deleted:
                out.print(f"[yellow]not deleted[/]: {escape(item)}")
            if record.outputs_deleted_at is not None:
                out.print(
                    f"the record stays: {record.state}, paid as it was; running the job again says its outputs "
                    "were deleted, and --new-job pays for a new one"
                )

        _emit(as_json, record, human)


@jobs_app.command("spend")
def jobs_spend(
    route: str | None = typer.Option(None, "--route", help="Only this route's jobs."),
    since: str | None = typer.Option(None, "--since", help="Only jobs created on or after this day (YYYY-MM-DD, UTC)."),
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """What the journalled jobs cost, per route and per day: estimated before, actual after, failure-billed,
    and per accepted job (spent over the jobs fetched and not failed-quality; JSON: per_accepted_job).

    "cost unknown" counts jobs with no actual cost recorded (not finished, failed, or a provider that did
    not say what it billed); their cost is in "estimated" only (JSON: without_actual).
    """
    from datetime import date

    from ..errors import InvalidParameter

    with _errors(as_json):
        try:
            start = date.fromisoformat(since) if since else None
        except ValueError:
            raise InvalidParameter("--since", f"takes a day as YYYY-MM-DD; got {since!r}") from None
        rows = _client(config).journal.spend(route=route, since=start)

        def human() -> None:
            if not rows:
                out.print("no jobs")
                return
            table = Table("day", "route", "jobs", "estimated", "actual", "failure-billed", "cost unknown")
            for r in rows:
                route_name = f"{r.route} (sandbox)" if r.sandbox else r.route
                table.add_row(
                    *_plain(
                        r.day.isoformat(),
                        route_name,
                        r.jobs,
                        f"${r.estimated:.4f}",
                        f"${r.actual:.4f}",
                        f"${r.billed_failures:.4f}",
                        r.without_actual,
                    )
                )
            out.print(table)
            for sandbox, words in ((False, "known spend"), (True, "sandbox (base-URL overrides, not real money)")):
                kept = [r for r in rows if r.sandbox == sandbox]
                if kept:
                    spent = money.total(r.spent for r in kept)
                    out.print(f"{words} (actual + failure-billed): ${spent:.4f} over {sum(r.jobs for r in kept)} jobs")
                    accepted = sum(r.accepted for r in kept)
                    each = per_accepted_job(spent, accepted)
                    shown = "none accepted" if each is None else f"${each:.4f} over {accepted} accepted jobs"
                    out.print(f"  per accepted job (fetched, not failed-quality): {shown}")

        _emit(as_json, rows, human)
