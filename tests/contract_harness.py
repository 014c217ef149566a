"""What the contract suite needs to know of each hosted route's fake, read from the route's kit.

The suite (``tests/test_contract.py``) writes each fault scenario once and runs it for every hosted route
in the registry. Each kit names its fake, the credential it accepts, and the fake's own names for its
endpoints (:class:`~latentsync_routes.routes.kit.FakeSpec`); every fake offers the same controls (hold,
release, complete, fail the next job), so a new route with a fake runs the whole suite with no entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from latentsync_routes.routes import REGISTRY
from latentsync_routes.routes.kit import RouteKit
from latentsync_routes.testing import Fault


def contract_secret(route: str) -> str:
    """A credential unlike any dummy or real one, so a leak of it in a log or record is unmistakable."""
    return f"contract-{route}-secret-5f4e"


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
    #: whether the provider's job list can be matched to a job's inputs (so an ambiguous submit is found)
    searchable: bool = True

    @property
    def secret(self) -> str:
        return contract_secret(self.route)

    def jobs(self) -> list[str]:
        return list(self.server.jobs)

    def complete(self, job_id: str) -> Any:
        return self.server.complete(job_id)

    def fail_next(self) -> None:
        self.server.fail_job()

    def hold(self) -> None:
        self.server.hold_jobs()

    def release(self) -> None:
        self.server.release_jobs()

    def fault(self, endpoint: str, *faults: Fault) -> None:
        getattr(self.server.faults, endpoint).extend(faults)

    def requests(self, endpoint: str) -> list[Any]:
        return list(self.server.requests_for(endpoint))


@contextmanager
def harness(kit: RouteKit) -> Iterator[Harness]:
    """Start ``kit``'s fake for the contract suite and describe it."""
    spec = kit.fake
    if spec is None:
        raise LookupError(f"route {kit.name!r} has no fake: the contract suite cannot run on it")
    with kit.start_fake(credential=contract_secret(kit.name), **spec.contract_options) as server:
        env = {kit.settings.base_url_env: server.url, kit.settings.credential_env: contract_secret(kit.name)}
        ends = spec.endpoints
        yield Harness(
            route=kit.name,
            server=server,
            env={k: v for k, v in env.items() if k},
            upload=ends.upload,
            submit=ends.submit,
            poll=ends.poll,
            download=ends.download,
            cancel=ends.cancel,
            searchable=spec.searchable,
        )


def harnesses() -> dict[str, Callable[[], Any]]:
    """A harness per registered route that has a fake (read at call time: a kit registered later counts)."""
    return {name: (lambda kit=kit: harness(kit)) for name, kit in REGISTRY.items() if kit.fake is not None}


HARNESSES = harnesses()
