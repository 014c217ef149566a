"""The exactly-once contract, each scenario written once and run for every hosted route in the registry.

Every test drives the public client (or the console script) against the route's loopback fake, through
the real provider SDK over real sockets, injects one fault, and then counts provider jobs: the promise is
one paid provider job per job and no lost result, whatever fails, with the record saying what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import math
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from latentsync_routes import AsyncLipSyncClient, LipSyncClient
from latentsync_routes.errors import (
    AmbiguousSubmit,
    DeadlineExceeded,
    DownloadError,
    InputError,
    InvalidParameter,
    JobAlreadyFailed,
    JobCancelled,
    JobFailed,
    LatentSyncError,
    ProviderError,
)
from latentsync_routes.journal import Journal
from latentsync_routes.routes import REGISTRY
from latentsync_routes.routes.base import load_route_class
from latentsync_routes.routes.hosted import HostedRoute
from latentsync_routes.testing import Fault
from tests.cli_helpers import clean_env, console_script
from tests.contract_harness import HARNESSES, Harness
from tests.hosted_fixtures import hosted_env, media  # noqa: F401 - fixtures

HOSTED = [name for name, kit in REGISTRY.items() if kit.kind == "hosted"]


def test_every_hosted_route_has_a_contract_harness() -> None:
    assert HOSTED and all(REGISTRY[name].fake is not None for name in HOSTED)
    assert sorted(HARNESSES) == sorted(HOSTED)


@pytest.fixture(params=HOSTED)
def h(request: pytest.FixtureRequest, hosted_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with HARNESSES[request.param]() as harness:
        for name, value in harness.env.items():
            monkeypatch.setenv(name, value)
        yield harness


def client(h: Harness) -> LipSyncClient:
    return LipSyncClient(route=h.route, consent="signed release (test)")


def journal(home: Path) -> Journal:
    return Journal(home / "jobs.sqlite3")


def only_record(home: Path) -> Any:
    (record,) = journal(home).list()
    return record


# -- concurrency ---------------------------------------------------------------------------------------
def test_identical_runs_in_threads_make_one_provider_job(
    h: Harness,
    media: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.mp4"
    results: list[Any] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(client(h).run(*media, out))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == [] and len(results) == 5
    assert len(h.jobs()) == 1 and len(h.requests(h.submit)) == 1
    assert {r.job_id for r in results} == {results[0].job_id}
    assert {r.provider_request_id for r in results} == set(h.jobs())
    assert out.is_file()


def test_identical_runs_in_two_processes_make_one_provider_job(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
) -> None:
    out = tmp_path / "out.mp4"
    command = [
        console_script(),
        "run",
        str(media[0]),
        str(media[1]),
        "-o",
        str(out),
        "--route",
        h.route,
        "--consent",
        "test",
        "--json",
    ]
    env = clean_env(hosted_env, {**h.env, "LATENTSYNC_ROUTES_POLL_INTERVAL": "0.05"})
    procs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    docs = [json.loads(stdout) for stdout, _ in outputs]
    assert len(h.jobs()) == 1 and docs[0]["job_id"] == docs[1]["job_id"]
    assert docs[0]["provider_request_id"] == docs[1]["provider_request_id"] == h.jobs()[0]
    assert only_record(hosted_env).state == "fetched"


# -- ambiguous submits ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fault",
    [Fault.drop_after_accept(), Fault.gateway_error_after_accept(502), Fault.gateway_error_after_accept(504)],
    ids=["drop", "502", "504"],
)
def test_a_submit_accepted_but_answered_badly_is_found_not_repeated(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,
    fault: Fault,  # noqa: F811
) -> None:
    h.fault(h.submit, fault)
    if not h.searchable:  # its job list cannot be matched to inputs: stop, never resubmit unasked
        with pytest.raises(AmbiguousSubmit, match="force-resubmit"):
            client(h).run(*media, tmp_path / "out.mp4")
        with pytest.raises(AmbiguousSubmit):
            client(h).run(*media, tmp_path / "out.mp4")
        assert len(h.jobs()) == 1 and len(h.requests(h.submit)) == 1
        return
    result = client(h).run(*media, tmp_path / "out.mp4")
    assert len(h.jobs()) == 1 and len(h.requests(h.submit)) == 1
    assert result.provider_request_id == h.jobs()[0]
    assert ("submit", "error", "AmbiguousSubmit") in [(a.step, a.status, a.error_type) for a in result.attempts]


def test_a_submit_that_created_nothing_stops_until_forced(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
) -> None:
    h.fault(h.submit, Fault.nginx_503())
    with pytest.raises(AmbiguousSubmit, match="force-resubmit|run the same command again"):
        client(h).run(*media, tmp_path / "out.mp4", deadline_seconds=4)
    assert h.jobs() == [] and only_record(hosted_env).state == "submitting"
    result = client(h).run(*media, tmp_path / "out.mp4", force_resubmit=True)
    assert h.jobs() == [result.provider_request_id]


# -- local failures after the submit: the same provider job is carried on ------------------------------
def _carry_on(h: Harness, inputs: tuple[Path, Path], out: Path, home: Path, expected: type[Exception]) -> None:
    with pytest.raises(expected):
        client(h).run(*inputs, out)
    record = only_record(home)
    assert record.state in ("submitted", "completed") and record.interrupted and record.provider_request_id
    assert len(h.jobs()) == 1
    result = client(h).run(*inputs, out)  # the same call again: no new provider job
    assert len(h.jobs()) == 1 and len(h.requests(h.submit)) == 1
    assert result.provider_request_id == record.provider_request_id and out.is_file()
    assert only_record(home).state == "fetched"


def test_failing_polls_then_a_rerun_carries_on(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,  # noqa: F811
    hosted_env: Path,
) -> None:
    h.fault(h.poll, *(Fault.status(503) for _ in range(8)))
    _carry_on(h, media, tmp_path / "out.mp4", hosted_env, ProviderError)


def test_truncated_downloads_then_a_rerun_carries_on(
    h: Harness,
    media: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
    hosted_env: Path,
) -> None:
    h.fault(h.download, *(Fault.truncate(100) for _ in range(8)))
    _carry_on(h, media, tmp_path / "out.mp4", hosted_env, DownloadError)


def test_a_full_disk_at_the_output_then_a_rerun_carries_on(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import latentsync_routes.download as download

    real = download._move_into_place
    calls: list[int] = []

    def full(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(download, "_move_into_place", full)
    _carry_on(h, media, tmp_path / "out.mp4", hosted_env, LatentSyncError)


def test_a_locked_journal_then_a_rerun_carries_on(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("latentsync_routes.journal_db.BUSY_TIMEOUT_S", 0.3)
    h.hold()
    out = tmp_path / "out.mp4"
    failure: list[BaseException] = []
    runner = threading.Thread(target=lambda: _catch(failure, lambda: client(h).run(*media, out)))
    runner.start()
    _wait_until(lambda: len(h.jobs()) == 1 and only_record(hosted_env).state == "submitted")
    locker = sqlite3.connect(hosted_env / "jobs.sqlite3", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another program holds the journal while the job finishes
    h.release()
    runner.join(60)
    locker.execute("ROLLBACK")
    locker.close()
    assert failure, "the job should have stopped on the locked journal"
    result = client(h).run(*media, out)
    assert len(h.jobs()) == 1 and result.provider_request_id == h.jobs()[0] and out.is_file()


# -- provider failures ----------------------------------------------------------------------------------
def test_a_failed_provider_job_is_paid_again_only_when_asked(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
) -> None:
    h.fail_next()
    out = tmp_path / "out.mp4"
    with pytest.raises(JobFailed):
        client(h).run(*media, out)
    first = only_record(hosted_env)
    assert first.state == "failed" and len(h.jobs()) == 1
    with pytest.raises(JobAlreadyFailed) as info:
        client(h).run(*media, out)
    assert info.value.exit_code == 4 and len(h.jobs()) == 1
    result = client(h).run(*media, out, retry_failed=True)
    assert len(h.jobs()) == 2 and result.record.previous_request_ids == [first.provider_request_id]
    assert [a.step for a in result.attempts].count("submit") >= 2  # both attempts kept in one record


# -- cancel and deadlines -------------------------------------------------------------------------------
def test_cancelling_an_awaiting_async_run_cancels_the_provider_job(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
) -> None:
    h.hold()

    async def scenario() -> None:
        async with AsyncLipSyncClient(route=h.route, consent="test") as aclient:
            task = asyncio.ensure_future(aclient.run(*media, tmp_path / "out.mp4"))
            await asyncio.get_running_loop().run_in_executor(None, _wait_until, lambda: len(h.jobs()) == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    record = only_record(hosted_env)
    assert record.state == "cancelled"
    cancels = [(a.step, a.status) for a in record.attempts if a.step == "cancel"]
    if h.cancel is None:  # no cancel API: the record says the job may still be billed
        assert cancels == [("cancel", "error")] and "may still run" in (record.failure_reason or "")
    else:
        assert len(h.requests(h.cancel)) == 1 and cancels == [("cancel", "ok")]


def test_cancel_by_job_id_reaches_the_running_owner(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
) -> None:
    with held_owner(h, media, tmp_path / "o.mp4") as (runner, failure):
        _wait_until(lambda: len(h.jobs()) == 1)
        record = client(h).cancel(only_record(hosted_env).job_id)
        runner.join(60)
        assert record.state == "cancelled" and isinstance(failure[0], JobCancelled)
        assert len(h.jobs()) == 1 and (h.cancel is None or len(h.requests(h.cancel)) == 1)


@pytest.mark.parametrize("late", ["before the owner sees the cancel", "while the owner cancels"])
def test_cancel_waits_for_a_running_owner_whose_heartbeat_is_late(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    late: str,
) -> None:
    """A heartbeat an hour late (a stalled process, a clock step) does not make the canceller take the job
    from a live owner: the owner cancels, once, and ends JobCancelled (it once ended ClaimLost, on a loaded
    machine, with the provider cancelled twice)."""
    monkeypatch.setattr("latentsync_routes.routes.hosted.CANCEL_FOLLOW_SECONDS", 0.5)  # no cancel API: follow briefly
    monkeypatch.setattr(Journal, "renew", lambda self, claim: None)  # the heartbeat does not catch up
    looks: list[int] = []  # the canceller's looks at the claim
    try_claim = Journal._try_claim

    def look(self: Journal, *args: Any, **kwargs: Any) -> Any:
        looks.append(1)
        return try_claim(self, *args, **kwargs)

    monkeypatch.setattr(Journal, "_try_claim", look)
    cancel_and_follow = HostedRoute.cancel_and_follow

    def late_while_cancelling(self: HostedRoute, job: Any, request_id: str) -> Any:
        if late == "while the owner cancels" and threading.current_thread() is runner:
            key = job.record.idempotency_key
            owner = journal(hosted_env).owner_of(key)
            _make_heartbeat_late(hosted_env)
            seen = len(looks)  # the canceller looks twice more at least, or takes the job over
            _wait_until(lambda: len(looks) >= seen + 3 or journal(hosted_env).owner_of(key) != owner, timeout=20)
        return cancel_and_follow(self, job, request_id)

    monkeypatch.setattr(HostedRoute, "cancel_and_follow", late_while_cancelling)
    with held_owner(h, media, tmp_path / "o.mp4") as (runner, failure):
        _wait_until(lambda: len(h.jobs()) == 1)
        if late == "before the owner sees the cancel":
            _make_heartbeat_late(hosted_env)
        record = client(h).cancel(only_record(hosted_env).job_id)
        runner.join(30)
        assert [type(f).__name__ for f in failure] == ["JobCancelled"], failure
        assert record.state == "cancelled" and len(h.jobs()) == 1
        assert [a.step for a in record.attempts].count("cancel") == 1
        assert h.cancel is None or len(h.requests(h.cancel)) == 1


def test_an_owner_that_lost_its_claim_to_a_cancel_reports_the_cancel(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An owner whose claim was taken over while a cancel is recorded ends JobCancelled, not ClaimLost, and
    leaves the provider cancel to the caller that holds the job now (one cancel request in all)."""
    monkeypatch.setattr("latentsync_routes.routes.hosted.CANCEL_FOLLOW_SECONDS", 0.5)
    with held_owner(h, media, tmp_path / "o.mp4") as (runner, failure):
        _wait_until(lambda: only_record(hosted_env).state == "submitted")
        record = only_record(hosted_env)
        # another caller takes the job over (the owner's lease ran out) and a cancel is asked of it
        taker, _ = journal(hosted_env).claim(record.idempotency_key, lambda: record, lease_s=0.0, wait_s=5)
        assert taker.took_over and journal(hosted_env).request_cancel(record.idempotency_key)
        runner.join(30)
        assert [type(f).__name__ for f in failure] == ["JobCancelled"], failure
        assert h.cancel is None or h.requests(h.cancel) == []  # the old owner sent nothing
        taker.release()
        ended = client(h).cancel(record.job_id)  # the cancel carried out by the next holder
        assert ended.state == "cancelled" and len(h.jobs()) == 1
        assert [a.step for a in ended.attempts].count("cancel") == 1
        assert h.cancel is None or len(h.requests(h.cancel)) == 1


def test_a_cancel_slower_than_its_follow_up_still_ends_cancelled(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The follow-up after a cancel ends when its time is up, even in a poll the deadline refuses to send:
    the owner ends JobCancelled and the job cancelled (not DeadlinePassed, the job left interrupted)."""
    monkeypatch.setattr("latentsync_routes.routes.hosted.CANCEL_FOLLOW_SECONDS", 0.2)
    route_class = load_route_class(h.route)
    cancel = route_class.cancel

    def slow_cancel(self: HostedRoute, job: Any, request_id: str) -> Any:
        try:
            return cancel(self, job, request_id)
        finally:
            time.sleep(0.3)  # the answer comes after the follow-up's time is up

    monkeypatch.setattr(route_class, "cancel", slow_cancel)
    with held_owner(h, media, tmp_path / "o.mp4") as (runner, failure):
        _wait_until(lambda: len(h.jobs()) == 1)
        record = client(h).cancel(only_record(hosted_env).job_id)
        runner.join(30)
        assert [type(f).__name__ for f in failure] == ["JobCancelled"], failure
        assert record.state == "cancelled" and len(h.jobs()) == 1


def test_a_cancel_is_sent_even_when_its_follow_up_has_no_time(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cancel request has its own bound: a follow-up with no time left (a slow machine, a short
    setting) must not keep the cancel from leaving, or the provider job runs on and is billed."""
    monkeypatch.setattr("latentsync_routes.routes.hosted.CANCEL_FOLLOW_SECONDS", 0.0)
    with held_owner(h, media, tmp_path / "o.mp4") as (runner, failure):
        _wait_until(lambda: len(h.jobs()) == 1)
        record = client(h).cancel(only_record(hosted_env).job_id)
        runner.join(30)
        assert [type(f).__name__ for f in failure] == ["JobCancelled"], failure
        assert record.state == "cancelled" and len(h.jobs()) == 1
        cancels = [(a.step, a.status) for a in record.attempts if a.step == "cancel"]
        if h.cancel is None:  # a route without a provider cancel (WaveSpeed) lets the job run on
            return
        assert len(h.requests(h.cancel)) == 1 and cancels == [("cancel", "ok")], cancels


def test_a_deadline_passed_before_the_submit_submits_nothing(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,  # noqa: F811
) -> None:
    h.fault(h.upload, Fault.delay(40))  # an upload that stalls far past the deadline
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="nothing was submitted"):
        client(h).run(*media, tmp_path / "out.mp4", deadline_seconds=1.5)
    assert time.monotonic() - started < 6, "the deadline did not bound the upload"
    assert h.jobs() == [] and h.requests(h.submit) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"guidance_scale": math.nan},
        {"guidance_scale": math.inf},
        {"seed": True},
        {"seed": 2**70},
        {"deadline_seconds": -1.0},
        {"deadline_seconds": math.nan},
    ],
)
def test_bad_parameters_are_refused_before_any_request(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,
    bad: dict[str, Any],  # noqa: F811
) -> None:
    with pytest.raises(InvalidParameter) as info:
        client(h).run(*media, tmp_path / "out.mp4", **bad)
    assert info.value.exit_code == 2 and h.server.requests == []


@pytest.mark.parametrize("where", ["parent-is-a-file", "not-mp4"])
def test_a_bad_output_destination_is_refused_before_any_request(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,
    where: str,  # noqa: F811
) -> None:
    (tmp_path / "FILE").write_text("x")
    target = tmp_path / "FILE" / "sub" / "out.mp4" if where == "parent-is-a-file" else tmp_path / "out.avi"
    with pytest.raises(InputError):
        client(h).run(*media, target)
    assert h.server.requests == []


def test_two_jobs_into_one_folder_never_collide(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,  # noqa: F811
) -> None:
    folder = tmp_path / "outs"
    folder.mkdir()
    first = client(h).run(*media, folder, idempotency_key="job-a")
    second = client(h).run(*media, folder, idempotency_key="job-b")
    again = client(h).run(*media, folder, idempotency_key="job-a")
    assert first.output_path != second.output_path and again.job_id == first.job_id
    assert len(h.jobs()) == 2 and len(list(folder.iterdir())) == 2


# -- kill -9 at each step boundary ----------------------------------------------------------------------
@pytest.mark.parametrize("step", ["upload", "submit", "wait", "download"])
@pytest.mark.parametrize("how", ["run-again", "jobs-resume"])
def test_kill_9_at_each_step_then_carry_on(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,
    hosted_env: Path,
    step: str,
    how: str,  # noqa: F811
) -> None:
    out = tmp_path / "out.mp4"
    command = [
        console_script(),
        "run",
        str(media[0]),
        str(media[1]),
        "-o",
        str(out),
        "--route",
        h.route,
        "--consent",
        "test",
        "--json",
    ]
    env = clean_env(hosted_env, {**h.env, "LATENTSYNC_ROUTES_POLL_INTERVAL": "0.05"})
    reached = {
        "upload": lambda: len(h.requests(h.upload)) >= 1,
        "submit": lambda: len(h.jobs()) == 1,
        "wait": lambda: len(h.jobs()) == 1 and len(h.requests(h.poll)) >= 1,
        "download": lambda: len(h.requests(h.download)) >= 1,
    }[step]
    if step == "upload":
        h.fault(h.upload, Fault.delay(60))
    elif step == "submit":
        h.fault(h.submit, Fault.hold_reply(60))
    elif step == "wait":
        h.hold()
    else:
        h.fault(h.download, Fault.delay(60))
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_until(reached)
        time.sleep(0.2)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    h.release()
    h.server.faults.__init__()  # type: ignore[misc] - no fault for the second run
    if how == "run-again":
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    else:
        job_id = only_record(hosted_env).job_id
        second = subprocess.run(
            [console_script(), "jobs", "resume", job_id, "--json"], env=env, capture_output=True, text=True, timeout=120
        )
    assert len(h.jobs()) == 1, f"a kill during {step} made a second provider job"
    if step == "submit" and not h.searchable:  # the job exists but cannot be found: stop, exit 4
        assert second.returncode == 4 and "AmbiguousSubmit" in second.stdout, second.stdout + second.stderr
        return
    assert second.returncode == 0, second.stdout + second.stderr
    doc = json.loads(second.stdout)
    assert doc["provider_request_id"] == h.jobs()[0] and out.is_file()
    assert not list(out.parent.glob("*.part")), "a killed download left its temp file behind"
    assert h.secret not in second.stdout + second.stderr


@contextlib.contextmanager
def held_owner(
    h: Harness, media: tuple[Path, Path], out: Path
) -> Iterator[tuple[threading.Thread, list[BaseException]]]:
    """A run of the job in a thread (its owner), held at the provider until the block ends; then the
    provider is released and the thread joined. Yields the thread and the exceptions it ended with."""
    h.hold()
    failure: list[BaseException] = []
    runner = threading.Thread(target=lambda: _catch(failure, lambda: client(h).run(*media, out)))
    runner.start()
    try:
        yield runner, failure
    finally:
        h.release()  # an owner left polling ends
        runner.join(30)


def _catch(sink: list[BaseException], func: Any) -> None:
    try:
        func()
    except BaseException as exc:  # noqa: BLE001 - collected for the assertion
        sink.append(exc)


def _make_heartbeat_late(home: Path) -> None:
    """Every claim's heartbeat an hour old, as a canceller sees it after a stall or a clock step."""
    with contextlib.closing(sqlite3.connect(home / "jobs.sqlite3")) as db, db:
        db.execute("UPDATE claims SET heartbeat = heartbeat - 3600")


def _wait_until(condition: Any, timeout: float = 60.0) -> None:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        try:
            if condition():
                return
        except (sqlite3.Error, ValueError, LatentSyncError):
            pass
        time.sleep(0.05)
    raise AssertionError("the condition was never reached")


# -- inputs given as URLs, and where credentials go -------------------------------------------------------
def test_a_resumed_job_sends_the_url_inputs_it_was_given(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
) -> None:
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(media[0].parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        video, audio = f"{base}/{media[0].name}?sig=abc", f"{base}/{media[1].name}?sig=def"
        h.fault(h.submit, Fault.status(400, json={"detail": "refused (test)"}))  # nothing created
        with pytest.raises(LatentSyncError):
            client(h).run(video, audio, tmp_path / "out.mp4")
        record = only_record(hosted_env)
        assert record.state == "failed" and h.jobs() == []
        result = client(h).resume(record.job_id)
        assert len(h.jobs()) == 1 and result.provider_request_id == h.jobs()[0]
        sent = json.dumps(h.requests(h.submit)[-1].json())
        assert video in sent and audio in sent and "resume.invalid" not in sent
    finally:
        server.shutdown()
        server.server_close()


def test_status_urls_named_by_the_submit_answer_are_never_called(
    h: Harness,
    media: tuple[Path, Path],
    tmp_path: Path,  # noqa: F811
) -> None:
    if h.route != "fal":
        pytest.skip("only fal's submit answer names status and result URLs")
    import socket

    thief = socket.socket()
    thief.bind(("127.0.0.1", 0))
    thief.listen()
    thief.settimeout(0.2)
    elsewhere = f"http://127.0.0.1:{thief.getsockname()[1]}/steal"
    h.fault(
        h.submit,
        Fault.status(
            200,
            json={"request_id": "req-1", "status_url": elsewhere, "response_url": elsewhere, "cancel_url": elsewhere},
        ),
    )
    with pytest.raises(LatentSyncError):
        client(h).run(*media, tmp_path / "out.mp4")
    with pytest.raises(TimeoutError):
        thief.accept()  # nobody connected: the key never left for another origin
    thief.close()
    assert any("/requests/req-1/status" in r.path for r in h.requests(h.poll))


# -- what the fakes return -------------------------------------------------------------------------------
def test_the_fake_output_follows_the_audio_and_estimate_and_bill_agree(
    h: Harness,
    tmp_path: Path,
    hosted_env: Path,  # noqa: F811
) -> None:
    import av

    from latentsync_routes.media import output_duration
    from tests.mediafactory import make_video, make_wav

    video, audio = make_video(tmp_path / "face.mp4", 1.2), make_wav(tmp_path / "voice.wav", 3.0)
    result = client(h).run(video, audio, tmp_path / "out.mp4")
    with av.open(result.output_path) as container:
        seconds = {s.type: float(s.duration * s.time_base) for s in container.streams if s.duration}
    assert seconds["video"] == pytest.approx(output_duration(3.0), abs=0.05)  # looped to the audio, not 1.2 s
    assert seconds["audio"] == pytest.approx(3.0, abs=0.1)  # carrying that audio
    assert result.cost.actual == pytest.approx(result.cost.estimated)  # the fake bills what was estimated
    assert result.cost.disagreement is None and result.cost.billed_unknown == 0
