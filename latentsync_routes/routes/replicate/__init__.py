"""The Replicate route kit: ``bytedance/latentsync`` at a pinned version (route, fact sheet, fake, prices)."""

from __future__ import annotations

from ..kit import FakeEndpoints, FakeSpec, RouteKit, RouteSettings, dummy_key

NAME = "replicate"
SETTINGS = RouteSettings(
    provider_domains=("replicate.com", "replicate.delivery"),
    base_url_env="LATENTSYNC_ROUTES_REPLICATE_BASE_URL",
    default_base_url="https://api.replicate.com",
    credential_env="REPLICATE_API_TOKEN",
    extra={"version": "LATENTSYNC_ROUTES_REPLICATE_VERSION"},
)
KIT = RouteKit(
    name=NAME,
    package=__name__,
    route="route:ReplicateRoute",
    settings=SETTINGS,
    fake=FakeSpec(
        factory="FakeReplicate",
        dummy_credential=dummy_key(NAME),
        credential_arg="expected_token",
        endpoints=FakeEndpoints(
            upload="file_create", submit="create", poll="get", download="output_download", cancel="cancel"
        ),
        demo_options={"processing_polls": 2},
    ),
)
