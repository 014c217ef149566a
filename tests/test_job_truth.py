"""A finished job keeps its truth: deleted or expired outputs are told from the record, a running job is
never deleted from under its owner, and a new payment is made only with ``new_job`` (CLI ``--new-job``).

Each scenario runs for every hosted route in the registry, against its loopback fake (the contract suite's
harness), and counts provider jobs and requests.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from latentsync_routes.errors import AmbiguousSubmit, JobStillRunning, OutputGone
from latentsync_routes.journal import Journal
from latentsync_routes.testing import FakeFal, Fault
from latentsync_routes.types import JobRecord, utcnow
from tests.cli_helpers import run_cli
from tests.contract_harness import Harness
from tests.hosted_fixtures import FAL_KEY, fal, hosted_env, media  # noqa: F401 - fixtures
from tests.test_contract import _wait_until, client, h, held_owner, only_record  # noqa: F401 - h is a fixture


def _traffic(h: Harness) -> tuple[int, int, int]:
    """Submits, polls and downloads the provider has seen."""
    return len(h.requests(h.submit)), len(h.requests(h.poll)), len(h.requests(h.download))


def _rewrite(home: Path, record: JobRecord) -> None:
    """Write a record as a later moment sees it (time passed), outside any claim."""
    Journal(home / "jobs.sqlite3").save(record)


def test_delete_then_run_again_is_told_from_the_record_and_only_new_job_pays(
    h: Harness,
    media: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
) -> None:
    out = tmp_path / "out.mp4"
    first = client(h).run(*media, out)
    paid = first.cost.actual
    assert paid is not None and paid > 0
    deleted = client(h).delete_job(first.job_id)
    assert not out.exists() and f"local output {out}" in deleted.deleted
    assert deleted.state == "fetched" and deleted.cost.actual == paid and deleted.outputs_deleted_at is not None
    seen = _traffic(h)
    for again in (
        lambda: client(h).run(*media, out),
        lambda: client(h).run(*media, out, retry_failed=True, force_resubmit=True),
        lambda: client(h).resume(first.job_id),
        lambda: client(h).resume(first.job_id, retry_failed=True, force_resubmit=True),
        lambda: client(h).job(first.job_id).wait(),
    ):
        with pytest.raises(OutputGone) as info:
            again()
        error = info.value
        assert error.exit_code == 4 and error.reason == "deleted" and error.job_id == first.job_id
        assert "deleted on request" in error.message and "--new-job" in error.message
        assert f"${paid:.4f}" in error.message
    assert _traffic(h) == seen and len(h.jobs()) == 1  # told from the record: no request at all
    kept = client(h).journal.get(first.job_id)
    assert kept is not None and kept.state == "fetched" and kept.cost.actual == paid

    second = client(h).run(*media, out, new_job=True)
    assert second.job_id != first.job_id and second.record.previous_job_id == first.job_id
    assert len(h.jobs()) == 2 and out.is_file() and second.provider_request_id != first.provider_request_id
    old = client(h).journal.get(first.job_id)
    assert old is not None and old.state == "fetched" and old.outputs_deleted_at is not None  # unchanged
    (row,) = client(h).journal.spend()
    assert row.jobs == 2 and row.spent == pytest.approx(paid + (second.cost.actual or 0))
    assert client(h).run(*media, out).already_done and len(h.jobs()) == 2  # the new job's output answers


def test_an_expired_output_is_told_up_front_from_the_record(
    h: Harness,
    media: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
) -> None:
    out = tmp_path / "out.mp4"
    result = client(h).run(*media, out)
    record = result.record
    assert record.output_expires_at is not None and record.completed_at is not None
    kept_for = record.output_expires_at - record.completed_at
    expected = {"fal": timedelta(hours=24), "replicate": timedelta(hours=1), "wavespeed": timedelta(days=7)}
    assert expected[h.route] - timedelta(minutes=1) <= kept_for <= expected[h.route] + timedelta(hours=1)
    out.unlink()
    later = record.model_copy(update={"output_expires_at": utcnow() - timedelta(minutes=5)})
    _rewrite(hosted_env, later)
    seen = _traffic(h)
    with pytest.raises(OutputGone) as info:
        client(h).resume(result.job_id)
    assert info.value.reason == "expired" and f"{h.route} deleted the output by" in info.value.message
    assert record.output_expiry_basis and record.output_expiry_basis in info.value.message
    assert _traffic(h) == seen and only_record(hosted_env).state == "fetched"
    renewed = client(h).resume(result.job_id, new_job=True)
    assert renewed.job_id != result.job_id and out.is_file() and len(h.jobs()) == 2


@pytest.mark.parametrize("answer", ["poll", "download", "poll after a killed re-fetch"])
def test_a_refetch_the_provider_refuses_leaves_the_job_fetched_and_paid(
    h: Harness,
    media: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
    answer: str,
) -> None:
    out = tmp_path / "out.mp4"
    result = client(h).run(*media, out)
    out.unlink()  # lost here, by hand: the provider may still hold it, so it is asked
    if answer.endswith("killed re-fetch"):  # an earlier re-fetch was killed after it marked the job completed
        _rewrite(hosted_env, result.record.model_copy(update={"state": "completed", "interrupted": "killed"}))
    h.fault(h.download if answer == "download" else h.poll, Fault.status(404, json={"detail": "not found (test)"}))
    with pytest.raises(OutputGone) as info:
        client(h).resume(result.job_id, retry_failed=True)
    assert info.value.reason == "gone" and "--new-job" in info.value.message
    record = only_record(hosted_env)
    assert record.state == "fetched" and record.cost == result.record.cost and record.failure_reason is None
    assert record.interrupted is None and len(h.jobs()) == 1


def test_delete_of_a_job_another_caller_runs_is_refused_and_the_run_ends_whole(
    h: Harness,
    media: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
) -> None:
    out = tmp_path / "out.mp4"
    with held_owner(h, media, out) as (runner, failure):
        _wait_until(lambda: len(h.jobs()) == 1 and only_record(hosted_env).state == "submitted")
        job_id = only_record(hosted_env).job_id
        with pytest.raises(JobStillRunning, match="running in another process") as info:
            client(h).delete_job(job_id)
        assert info.value.exit_code == 4 and "jobs cancel" in info.value.message
    assert not failure, failure
    record = only_record(hosted_env)
    assert record.state == "fetched" and record.outputs_deleted_at is None
    assert not any(line.startswith(("local output", "fal request")) for line in record.deleted)  # only its cleanup
    assert out.is_file() and len(h.jobs()) == 1
    assert client(h).delete_job(job_id).outputs_deleted_at is not None  # once it has ended, it can go


def test_delete_of_a_job_whose_provider_job_runs_unowned_is_refused(
    h: Harness,
    media: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
) -> None:
    h.hold()
    job = client(h).submit(*media, tmp_path / "out.mp4")  # the provider holds it; nobody runs it here
    assert job.state == "submitted"
    with pytest.raises(JobStillRunning, match="has not ended"):
        client(h).delete_job(job.id)
    assert only_record(hosted_env).outputs_deleted_at is None
    h.release()
    assert job.wait().output_path is not None and len(h.jobs()) == 1


def test_cli_delete_then_run_again_exit_4_then_new_job_and_spend_counts_each_payment_once(
    fal: FakeFal,
    media: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
) -> None:
    out = tmp_path / "out.mp4"
    command = ("run", str(media[0]), str(media[1]), "-o", str(out), "--route", "fal", "--consent", "test", "--json")
    env = {"LATENTSYNC_ROUTES_FAL_BASE_URL": fal.url, "FAL_KEY": FAL_KEY, "LATENTSYNC_ROUTES_POLL_INTERVAL": "0.01"}
    assert run_cli(*command, home=hosted_env, env=env).returncode == 0
    job_id = only_record(hosted_env).job_id
    done = run_cli("jobs", "delete", job_id[:8], home=hosted_env, env=env)
    assert done.returncode == 0 and "the record stays: fetched" in done.stdout, done.stderr
    again = run_cli(*command, home=hosted_env, env=env)
    error = json.loads(again.stdout)["error"]
    assert again.returncode == 4 and error["type"] == "OutputGone" and "--new-job" in error["message"]
    resumed = run_cli("jobs", "resume", job_id[:8], "--retry-failed", "--json", home=hosted_env, env=env)
    assert resumed.returncode == 4 and json.loads(resumed.stdout)["error"]["type"] == "OutputGone"
    assert len(fal.jobs) == 1
    paid = run_cli(*command, "--new-job", home=hosted_env, env=env)
    assert paid.returncode == 0, paid.stderr
    assert len(fal.jobs) == 2 and out.is_file()
    spend = json.loads(run_cli("jobs", "spend", "--json", home=hosted_env, env=env).stdout)
    assert sum(r["jobs"] for r in spend) == 2
    assert sum(r["actual"] for r in spend) == pytest.approx(0.40)  # two jobs at $0.20, each counted once


@pytest.fixture
def url_media(media: tuple[Path, Path]) -> Iterator[tuple[str, str]]:  # noqa: F811
    """The test media served over loopback HTTP: the inputs given as URLs, as a user with hosted media does."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(media[0].parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield f"{base}/{media[0].name}", f"{base}/{media[1].name}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("fault", ["drop", "drop_after_accept"])
def test_a_dropped_submit_never_adopts_the_provider_job_another_journal_job_holds(
    h: Harness,
    url_media: tuple[str, str],
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
    fault: str,
) -> None:
    """Same URL inputs, another output: the first job's provider job was sent moments before (inside the
    second's window, with the very same inputs) and must never be adopted by the second."""
    first = client(h).run(*url_media, tmp_path / "a.mp4")
    assert first.provider_request_id is not None
    h.fault(h.submit, getattr(Fault, fault)())
    with contextlib.suppress(AmbiguousSubmit):  # undecided within the deadline: the user decides
        client(h).run(*url_media, tmp_path / "b.mp4", deadline_seconds=6)
    second = next(r for r in Journal(hosted_env / "jobs.sqlite3").list() if r.job_id != first.job_id)
    assert second.provider_request_id != first.provider_request_id
    created = [j for j in h.jobs() if j != first.provider_request_id]
    assert second.provider_request_id in (None, *created)
    assert len(created) == (1 if fault == "drop_after_accept" else 0)
    if second.provider_request_id is None:
        assert second.state == "submitting" and first.provider_request_id not in str(second.cost.billed_unknown_basis)


def test_new_job_is_admitted_under_budget_total_counting_the_paid_job(
    fal: FakeFal,
    media: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
) -> None:
    from latentsync_routes import LipSyncClient
    from latentsync_routes.errors import BudgetExceeded

    out = tmp_path / "out.mp4"
    capped = LipSyncClient(route="fal", credentials={"fal": FAL_KEY}, consent="test", budget_total=0.3)
    first = capped.run(*media, out)
    capped.delete_job(first.job_id)
    with pytest.raises(BudgetExceeded, match=r"committed to \$0\.2000 of the budget_total of \$0\.3000"):
        capped.run(*media, out, new_job=True)  # the deleted job was paid: it still counts
    assert len(fal.jobs) == 1 and [r.job_id for r in capped.journal.list()] == [first.job_id]
    assert (
        LipSyncClient(route="fal", credentials={"fal": FAL_KEY}, consent="test", budget_total=0.4)
        .run(*media, out, new_job=True)
        .record.previous_job_id
        == first.job_id
    )
    assert len(fal.jobs) == 2
