"""Job ids: every command and method taking one also takes a unique prefix (at least 6 characters), and
``jobs list`` shows ids as their shortest unique prefix, never cut."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from latentsync_routes import LipSyncClient
from latentsync_routes.errors import ConfigurationError
from latentsync_routes.journal import Journal
from latentsync_routes.testing import FakeFal
from tests.cli_helpers import run_cli
from tests.hosted_fixtures import FAL_KEY, fal, hosted_env, media  # noqa: F401
from tests.test_journal import record


def _journal_with(tmp_path: Path, *ids: str) -> Journal:
    journal = Journal(tmp_path / "j.sqlite3")
    for n, job_id in enumerate(ids):
        journal.save(record(job_id, key=f"k{n}"))
    return journal


def test_a_unique_prefix_finds_its_job(tmp_path: Path) -> None:
    journal = _journal_with(tmp_path, "abcdef0123", "abcdef9999", "123456789a")
    assert journal.resolve("123456") == "123456789a" and journal.find("abcdef01").job_id == "abcdef0123"
    assert journal.resolve("abcdef0123") == "abcdef0123"  # the whole id, as always


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("abcdef", "starts more than one job id (abcdef0123, abcdef9999); give more characters"),
        ("12345", "at least 6 characters"),
        ("ffffff", "no job 'ffffff'"),
        ("%%%%%%", "no job '%%%%%%'"),
        ("abcde_", "no job 'abcde_'"),
    ],
)
def test_a_prefix_that_is_short_ambiguous_or_unknown_is_refused_by_name(tmp_path: Path, given: str, words: str) -> None:
    journal = _journal_with(tmp_path, "abcdef0123", "abcdef9999", "123456789a")
    with pytest.raises(ConfigurationError) as caught:
        journal.resolve(given)
    assert words in str(caught.value) and caught.value.exit_code == 2


def test_list_shows_the_shortest_unique_prefix_of_at_least_eight(tmp_path: Path) -> None:
    journal = _journal_with(tmp_path, "aaaaaaaaaaaa1", "aaaaaaaaaaaa2", "bbbbbbbbbbbbbbbb")
    assert journal.prefix_length(["bbbbbbbbbbbbbbbb"]) == 8
    assert journal.prefix_length(["aaaaaaaaaaaa1", "bbbbbbbbbbbbbbbb"]) == 13


def test_the_cli_and_the_client_take_prefixes(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: FakeFal,
    hosted_env: Path,  # noqa: F811
) -> None:
    result = LipSyncClient(route="fal", credentials={"fal": FAL_KEY}, consent="test").run(*media, tmp_path / "a.mp4")
    prefix = result.job_id[:7]
    listed = run_cli("jobs", "list", home=hosted_env, env={"COLUMNS": "80"})
    assert result.job_id[:8] in listed.stdout and result.job_id not in listed.stdout
    shown = run_cli("jobs", "show", prefix, "--json", home=hosted_env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["job_id"] == result.job_id
    resumed = run_cli(
        "jobs",
        "resume",
        prefix,
        "--json",
        home=hosted_env,
        env={"LATENTSYNC_ROUTES_FAL_BASE_URL": fal.url, "FAL_KEY": FAL_KEY},
    )
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["job_id"] == result.job_id, resumed.stderr
    client: Any = LipSyncClient(route="fal", credentials={"fal": FAL_KEY})
    assert client.cancel(prefix).job_id == result.job_id  # already finished: returned as it is
    assert client.delete_job(prefix).job_id == result.job_id and not (tmp_path / "a.mp4").exists()
    unknown = run_cli("jobs", "show", "0000000", home=hosted_env)
    assert unknown.returncode == 2 and "no job '0000000'" in unknown.stdout + unknown.stderr
    assert len(fal.jobs) == 1
