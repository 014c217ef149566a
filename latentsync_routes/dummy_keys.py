"""The dummy credentials of the built-in fakes, and the one rule that keeps them away from real providers.

``latentsync-routes fakes`` prints ``export`` lines: each route's base URL variable and a dummy key. A
shell that exports the keys but not the base URLs (a copy-paste cut short) would send those keys, and the
media, to the real fal, Replicate and WaveSpeed hosts. So every dummy key starts with
:data:`DUMMY_KEY_PREFIX`, a prefix no provider issues, and a hosted route that is handed one while it would
talk to its real host drops it and refuses with :class:`~latentsync_routes.errors.DummyCredentialRefused`,
which names the variables to export. The check sits in the hosted routes' constructor
(:class:`latentsync_routes.routes.hosted.HostedRoute`), where a route's credential and its base URL meet.

The keys, the base-URL variables and the providers' domains are the route kits' (the registry), so a new
route's fake is covered by its registry line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .errors import ConfigurationError
from .routes import REGISTRY
from .routes.kit import DUMMY_KEY_PREFIX

if TYPE_CHECKING:
    from .config import Credential, Settings
    from .routes.base import RouteInfo

__all__ = ["DUMMY_KEYS", "DUMMY_KEY_PREFIX", "dummy_key_refusal", "is_dummy_key", "is_provider_host"]

#: The credentials the fakes are started with and accept (``fakes``, ``ui --fakes``), by route.
DUMMY_KEYS = {name: kit.fake.dummy_credential for name, kit in REGISTRY.items() if kit.fake is not None}
#: The providers' own domains: an "override" that points back at one of them is not an override.
PROVIDER_DOMAINS = tuple(domain for kit in REGISTRY.values() for domain in kit.settings.provider_domains)
#: Every route's base URL variable, named in the refusal (the fakes print them all).
BASE_URL_VARIABLES = tuple(kit.settings.base_url_env for kit in REGISTRY.values() if kit.settings.base_url_env)


def is_dummy_key(value: str) -> bool:
    return value.strip().startswith(DUMMY_KEY_PREFIX)


def is_provider_host(host: str | None) -> bool:
    host = (host or "").lower().rstrip(".")
    return any(host == domain or host.endswith("." + domain) for domain in PROVIDER_DOMAINS)


def dummy_key_refusal(info: RouteInfo, settings: Settings, credential: Credential | None) -> str | None:
    """Why ``credential`` must not be used by the route ``info`` describes, or ``None`` when it may be.

    A dummy key may go only to an overridden base URL (a fake, a gateway) that is not a provider's host.
    """
    if credential is None or not is_dummy_key(credential.value.get_secret_value()):
        return None
    try:
        override = settings.base_url_override(info.name)
    except ConfigurationError:  # an unreadable base URL variable is no override
        override = None
    if override is not None and not is_provider_host(urlsplit(override).hostname):
        return None
    variable = info.base_url_env or f"LATENTSYNC_ROUTES_{info.name.upper()}_BASE_URL"
    where = f"its base URL {override}" if override else f"the real {info.name} host"
    return (
        f"{credential.name} holds a dummy key of the built-in fakes ({DUMMY_KEY_PREFIX}...), and route "
        f"{info.name!r} would send it to {where}; it is never sent there. To use the fakes, export the "
        f"base URL lines `latentsync-routes fakes` printed as well ({variable}; all of them: "
        f"{', '.join(BASE_URL_VARIABLES)}); to use {info.name} for real, set {credential.name} to a real key"
    )
