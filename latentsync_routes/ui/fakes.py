"""``--fakes``: every hosted route pointed at the package's own loopback fakes, so nothing is paid.

The fakes (:mod:`latentsync_routes.testing`) speak each provider's protocol, so the page drives the same
client, routes and provider SDKs as it would for real; only the base URLs and the credentials differ. The
credentials are made-up strings known to the fakes alone (the real ones in the environment or keyring are
never read: an explicit credential wins), and the jobs go to a journal of their own (``<home>/ui-fakes``)
so fake spend never mixes with real spend. The local route is blocked: it would load real checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..dummy_keys import DUMMY_KEYS

if TYPE_CHECKING:
    from ..client import LipSyncClient
    from ..config import Settings

#: The routes ``--fakes`` will not run, and why (shown as a STOP row).
FAKES_BLOCKED = {"local": "disabled under --fakes: the local route would load real checkpoints"}

_FAKE_CREDENTIALS = dict(DUMMY_KEYS)


@dataclass(frozen=True)
class FakeSetup:
    client: LipSyncClient
    urls: dict[str, str]
    #: the fake servers by route name (their ``requests`` and ``jobs`` say what reached them)
    servers: dict[str, Any] = field(default_factory=dict)


def fakes_home(settings: Settings) -> Path:
    return Path(settings.home) / "ui-fakes"


@contextmanager
def fake_providers(settings: Settings, *, queue_polls: int = 3, poll_interval: float = 0.25) -> Iterator[FakeSetup]:
    """Start the three fakes and yield a client on them; the servers stop when the block ends."""
    from ..client import LipSyncClient
    from ..testing import FakeFal, FakeReplicate, FakeWaveSpeed

    with ExitStack() as stack:
        # fal bills this endpoint in output seconds with a 40-unit minimum; the fake reports the same.
        fal = stack.enter_context(
            FakeFal(expected_key=_FAKE_CREDENTIALS["fal"], queue_polls=queue_polls, progress_polls=2, billable_units=40)
        )
        rep = stack.enter_context(FakeReplicate(expected_token=_FAKE_CREDENTIALS["replicate"], processing_polls=2))
        ws = stack.enter_context(FakeWaveSpeed(expected_key=_FAKE_CREDENTIALS["wavespeed"], processing_polls=2))
        urls = {"fal": fal.url, "replicate": rep.url, "wavespeed": ws.url}
        fake_settings = settings.model_copy(
            update={
                "home": fakes_home(settings),
                "fal_base_url": fal.url,
                "replicate_base_url": rep.url,
                "base_urls": {**settings.base_urls, "wavespeed": ws.url},
                "poll_interval": poll_interval,
                "jsonl_path": None,
            }
        )
        client = LipSyncClient(settings=fake_settings, credentials=dict(_FAKE_CREDENTIALS))
        yield FakeSetup(client=client, urls=urls, servers={"fal": fal, "replicate": rep, "wavespeed": ws})
