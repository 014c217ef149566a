"""``--fakes``: every route that has a loopback fake pointed at it, so nothing is paid.

The fakes (each route's ``routes/<name>/fake.py``, listed by the registry) speak each provider's
protocol, so the page drives the same client, routes and provider SDKs as it would for real; only the
base URLs and the credentials differ. The credentials are the kits' made-up strings, known to the fakes
alone, and the client is told to use those and nothing else: a real key in the environment or the
keyring is never read. The jobs go to a journal of their own (``<home>/ui-fakes``) so fake spend never
mixes with real spend. A route without a fake (the local route, which would load real checkpoints, or a
hosted route whose kit has none) is blocked: it would reach a real provider or real weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..routes import REGISTRY

if TYPE_CHECKING:
    from ..client import LipSyncClient
    from ..config import Settings
    from ..routes.kit import FakeProvider


def fakes_blocked() -> dict[str, str]:
    """The routes ``--fakes`` will not run, and why (shown as a STOP row): those without a fake."""
    blocked = {}
    for name, kit in REGISTRY.items():
        if kit.fake is None:
            why = "would load real checkpoints" if kit.kind == "local" else "has no fake and would reach the provider"
            blocked[name] = f"disabled under --fakes: the {name} route {why}"
    return blocked


#: The routes ``--fakes`` will not run at import time (a kit registered later is covered by ``fakes_blocked``).
FAKES_BLOCKED = fakes_blocked()


@dataclass(frozen=True)
class FakeSetup:
    client: LipSyncClient
    urls: dict[str, str]
    #: the fake servers by route name (their ``requests`` and ``jobs`` say what reached them)
    servers: dict[str, FakeProvider] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)


def fakes_home(settings: Settings) -> Path:
    return Path(settings.home) / "ui-fakes"


@contextmanager
def fake_providers(settings: Settings, *, fast: bool = False, poll_interval: float = 0.25) -> Iterator[FakeSetup]:
    """Start every kit's fake and yield a client on them; the servers stop when the block ends.

    Jobs take a few polls, as a user would see them; ``fast`` ends them on the first polls (tests).
    """
    from ..client import LipSyncClient

    with ExitStack() as stack:
        servers: dict[str, FakeProvider] = {}
        credentials: dict[str, str] = {}
        for name, kit in REGISTRY.items():
            if kit.fake is None:
                continue
            options: dict[str, Any] = dict(kit.fake.contract_options if fast else kit.fake.demo_options)
            servers[name] = stack.enter_context(kit.start_fake(**options))
            credentials[name] = kit.fake.dummy_credential
        urls = {name: server.url for name, server in servers.items()}
        # Every route with a fake talks to its fake, whatever the environment or the config file name.
        pointed = {name: {**settings.route_settings.get(name, {}), "base_url": url} for name, url in urls.items()}
        fake_settings = settings.model_copy(
            update={
                "home": fakes_home(settings),
                "route_settings": {**settings.route_settings, **pointed},
                "poll_interval": poll_interval,
                "jsonl_path": None,
            }
        )
        client = LipSyncClient(settings=fake_settings, credentials=dict(credentials), credentials_only=True)
        yield FakeSetup(client=client, urls=urls, servers=servers, blocked=fakes_blocked())
