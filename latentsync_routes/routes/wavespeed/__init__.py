"""The WaveSpeed route kit: ``bytedance/latentsync`` on WaveSpeed AI (route, fact sheet, fake, prices)."""

from __future__ import annotations

from ..kit import FakeEndpoints, FakeSpec, RouteKit, RouteSettings, dummy_key

NAME = "wavespeed"
SETTINGS = RouteSettings(
    provider_domains=("wavespeed.ai",),
    base_url_env="LATENTSYNC_ROUTES_WAVESPEED_BASE_URL",
    default_base_url="https://api.wavespeed.ai",
    credential_env="WAVESPEED_API_KEY",
)
KIT = RouteKit(
    name=NAME,
    package=__name__,
    route="route:WaveSpeedRoute",
    settings=SETTINGS,
    fake=FakeSpec(
        factory="FakeWaveSpeed",
        dummy_credential=dummy_key(NAME),
        endpoints=FakeEndpoints(
            upload="upload_ticket", submit="submit", poll="result", download="file_download", cancel=None
        ),
        # WaveSpeed lists predictions without their inputs: an ambiguous submit cannot be matched to a job.
        searchable=False,
        demo_options={"processing_polls": 2},
    ),
)
