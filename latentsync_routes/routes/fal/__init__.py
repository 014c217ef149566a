"""The fal route kit: ``fal-ai/latentsync`` on fal's queue (route, fact sheet, fake, prices)."""

from __future__ import annotations

from ..kit import FakeEndpoints, FakeSpec, RouteKit, RouteSettings, dummy_key

NAME = "fal"
SETTINGS = RouteSettings(
    provider_domains=("fal.ai", "fal.run", "fal.media"),
    base_url_env="LATENTSYNC_ROUTES_FAL_BASE_URL",
    credential_env="FAL_KEY",
)
KIT = RouteKit(
    name=NAME,
    package=__name__,
    route="route:FalRoute",
    settings=SETTINGS,
    fake=FakeSpec(
        factory="FakeFal",
        dummy_credential=dummy_key(NAME),
        endpoints=FakeEndpoints(
            upload="cdn_upload", submit="submit", poll="status", download="file_download", cancel="cancel"
        ),
        # fal bills this endpoint in output seconds with a 40-unit minimum; the demo fake reports the same.
        demo_options={"billable_units": 40, "queue_polls": 3, "progress_polls": 2},
        contract_options={"queue_polls": 1, "progress_polls": 1},
    ),
)
