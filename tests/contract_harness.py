"""What the contract suite needs to know of each hosted route's fake: one entry per route.

The suite (``tests/test_contract.py``) writes each fault scenario once and runs it for every hosted route
in the registry; a route without an entry here fails the suite, so a new route cannot skip it. An entry
names the fake, how to point the client at it, and the fake's own names for its endpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from latentsync_routes.testing import FakeFal, FakeReplicate, Fault
from latentsync_routes.testing.wavespeed import FakeWaveSpeed

CREDENTIALS = {"fal": ("FAL_KEY", "contract-fal-key-5f4e"), "replicate": ("REPLICATE_API_TOKEN", "r8_contract_9a8b"),
               "wavespeed": ("WAVESPEED_API_KEY", "ws_contract_7c6d")}


@dataclass
class Harness:
    """One hosted route's fake, seen through the names the contract suite uses."""

    route: str
    server: Any
    env: dict[str, str]
    #: the fake's endpoint names for: an upload, the submit, a status poll, the output download, a cancel
    #: (None where the provider has no cancel)
    upload: str
    submit: str
    poll: str
    download: str
    cancel: str | None
    jobs: Callable[[], list[str]]
    complete: Callable[[str], Any]
    fail_next: Callable[[], None]
    hold: Callable[[], None]  # keep every job running until released
    release: Callable[[], None]
    #: whether the provider's job list can be matched to a job's inputs (so an ambiguous submit is found)
    searchable: bool = True

    @property
    def secret(self) -> str:
        return CREDENTIALS[self.route][1]

    def fault(self, endpoint: str, *faults: Fault) -> None:
        getattr(self.server.faults, endpoint).extend(faults)

    def requests(self, endpoint: str) -> list[Any]:
        return list(self.server.requests_for(endpoint))


@contextmanager
def _fal() -> Iterator[Harness]:
    env_name, key = CREDENTIALS["fal"]
    with FakeFal(expected_key=key, queue_polls=1, progress_polls=1) as fal:
        def hold() -> None:
            fal.queue_polls = 10**9

        def release() -> None:
            fal.queue_polls = 1
            for request_id in list(fal.jobs):
                if fal.jobs[request_id].state != "COMPLETED":
                    fal.complete(request_id)

        yield Harness(
            route="fal", server=fal, env={"LATENTSYNC_ROUTES_FAL_BASE_URL": fal.url, env_name: key},
            upload="cdn_upload", submit="submit", poll="status", download="file_download", cancel="cancel",
            jobs=lambda: list(fal.jobs), complete=fal.complete, fail_next=lambda: fal.fail_job(status_code=500),
            hold=hold, release=release,
        )


@contextmanager
def _replicate() -> Iterator[Harness]:
    env_name, token = CREDENTIALS["replicate"]
    with FakeReplicate(expected_token=token) as rep:
        def hold() -> None:
            rep.processing_polls = 10**9

        def release() -> None:
            rep.processing_polls = 1
            for prediction_id, prediction in list(rep.predictions.items()):
                if not prediction.terminal:
                    rep.complete(prediction_id)

        yield Harness(
            route="replicate", server=rep,
            env={"LATENTSYNC_ROUTES_REPLICATE_BASE_URL": rep.url, env_name: token},
            upload="file_create", submit="create", poll="get", download="output_download", cancel="cancel",
            jobs=lambda: list(rep.predictions), complete=rep.complete, fail_next=lambda: rep.fail_job(),
            hold=hold, release=release,
        )


@contextmanager
def _wavespeed() -> Iterator[Harness]:
    env_name, key = CREDENTIALS["wavespeed"]
    with FakeWaveSpeed(expected_key=key) as ws:
        def hold() -> None:
            ws.processing_polls = 10**9

        def release() -> None:
            ws.processing_polls = 1
            for prediction_id, prediction in list(ws.predictions.items()):
                if prediction.status not in ("completed", "failed"):
                    ws.complete(prediction_id)

        yield Harness(
            route="wavespeed", server=ws, env={"LATENTSYNC_ROUTES_WAVESPEED_BASE_URL": ws.url, env_name: key},
            upload="upload_ticket", submit="submit", poll="result", download="file_download", cancel=None,
            jobs=lambda: list(ws.predictions), complete=ws.complete, fail_next=lambda: ws.fail_job(),
            hold=hold, release=release, searchable=False,
        )


HARNESSES: dict[str, Callable[[], Any]] = {"fal": _fal, "replicate": _replicate, "wavespeed": _wavespeed}
