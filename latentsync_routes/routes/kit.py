"""A route kit: everything the rest of the package needs to know of one route, in the route's own folder.

A kit names the route class, the route's settings (its base-URL variable, its credential variable and the
keyring name the credential is kept under), its loopback fake (factory, dummy credential, the fake's names
for its endpoints) and its price-book entry. Everything that lists routes (the CLI, config and credential
lookup, doctor, the fakes, the page, the contract suite, the docs' route table) iterates
:data:`latentsync_routes.routes.REGISTRY`, so a new route is one folder plus one registry line.

Kits import nothing heavy: the route class and the fake are named as ``module:attribute`` strings
relative to the kit's package and imported on first use, so listing routes imports no provider SDK.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib import resources
from types import ModuleType
from typing import Any, Literal, Protocol

#: The keyring service every credential is kept under (the user name is the kit's ``keyring_name``).
KEYRING_SERVICE = "latentsync-routes"
#: Every fake's dummy key starts so; no provider issues keys like it (fal: ``<id>:<secret>``, Replicate:
#: ``r8_``, WaveSpeed: hex), and the package never sends one to a real host (:mod:`..dummy_keys`).
DUMMY_KEY_PREFIX = "lsr-fake-"


def dummy_key(route: str) -> str:
    """The made-up key of a route's fake."""
    return f"{DUMMY_KEY_PREFIX}{route}-not-a-real-key"


@dataclass(frozen=True)
class RouteSettings:
    """How a route is configured from outside the code: the variables it reads and their meaning.

    ``extra`` maps a route setting (a key of ``route_settings[<route>]``) to the environment variable
    that also sets it, e.g. Replicate's ``version`` to ``LATENTSYNC_ROUTES_REPLICATE_VERSION``.
    """

    base_url_env: str | None = None
    default_base_url: str | None = None
    credential_env: str | None = None
    #: the keyring user name the credential is stored under (service ``latentsync-routes``)
    keyring_name: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    #: the provider's own domains: a base URL on one of them is no override (a dummy key never goes there)
    provider_domains: tuple[str, ...] = ()

    @property
    def keyring_user(self) -> str | None:
        return self.keyring_name or self.credential_env


@dataclass(frozen=True)
class FakeEndpoints:
    """The fake's own names for the endpoints the contract suite injects faults into and counts."""

    upload: str
    submit: str
    poll: str
    download: str
    #: ``None`` where the provider publishes no cancel
    cancel: str | None


class FakeProvider(Protocol):
    """What the CLI's ``fakes``, the page's ``--fakes`` and the contract suite need of a route's fake."""

    url: str
    faults: Any

    @property
    def jobs(self) -> Mapping[str, Any]: ...

    def requests_for(self, endpoint: str) -> list[Any]: ...

    def complete(self, job_id: str) -> Any: ...

    def fail_job(self) -> None: ...

    def hold_jobs(self) -> None:
        """Keep every job running until :meth:`release_jobs`."""

    def release_jobs(self) -> None:
        """Let jobs end again, and end those held."""

    def __enter__(self) -> FakeProvider: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass(frozen=True)
class FakeSpec:
    """A route's loopback fake: the class (``module:Class`` in the kit's package) and how to start it."""

    factory: str
    #: the made-up credential the fake is started with for ``fakes`` and ``ui --fakes`` (never a real key)
    dummy_credential: str
    endpoints: FakeEndpoints
    #: the constructor's keyword for the credential it accepts
    credential_arg: str = "expected_key"
    #: whether the provider's job list can be matched to a job's inputs (an ambiguous submit is found)
    searchable: bool = True
    #: options for a demo run (``fakes``, ``ui --fakes``): jobs that take a few polls, as a user would see
    demo_options: Mapping[str, Any] = field(default_factory=dict)
    #: options for the contract suite: jobs that end on the first polls
    contract_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fact:
    """One provider behaviour a route relies on, with where it was read and when.

    ``documented`` is False where the provider's docs are silent and the statement is our reading; the
    fake then implements the cautious reading (the one that would cost the user money if assumed better).
    """

    id: str
    statement: str
    source: str
    checked: date
    documented: bool = True


@dataclass(frozen=True)
class RouteKit:
    """One route, as the registry lists it; its modules live in the package ``package``."""

    name: str
    package: str
    #: ``module:Class`` of the route, the module relative to ``package``
    route: str
    settings: RouteSettings = field(default_factory=RouteSettings)
    fake: FakeSpec | None = None
    kind: Literal["hosted", "local"] = "hosted"

    def target(self, spec: str) -> Any:
        """Import ``module:attribute`` relative to the kit's package."""
        module_name, _, attribute = spec.partition(":")
        module: ModuleType = importlib.import_module(f"{self.package}.{module_name}")
        return getattr(module, attribute)

    def route_class(self) -> type[Any]:
        cls: type[Any] = self.target(self.route)
        return cls

    def fake_class(self) -> type[Any]:
        if self.fake is None:
            raise LookupError(f"route {self.name!r} has no fake")
        cls: type[Any] = self.target(f"fake:{self.fake.factory}")
        return cls

    def start_fake(self, *, credential: str | None = None, **options: Any) -> FakeProvider:
        """A new (not yet started) fake of this route accepting ``credential`` (default: the dummy one)."""
        if self.fake is None:
            raise LookupError(f"route {self.name!r} has no fake")
        key = credential if credential is not None else self.fake.dummy_credential
        server: FakeProvider = self.fake_class()(**{self.fake.credential_arg: key, **options})
        return server

    def prices(self) -> dict[str, Any]:
        """The route's packaged price-book entry (``prices.json`` beside its code)."""
        return dict(_prices(self.package))

    def facts(self) -> tuple[Fact, ...]:
        """The route's fact sheet (``facts.py`` beside its code)."""
        facts: tuple[Fact, ...] = tuple(self.target("facts:FACTS"))
        return facts

    def fact(self, fact_id: str) -> Fact:
        for found in self.facts():
            if found.id == fact_id:
                return found
        raise KeyError(f"route {self.name!r} has no fact {fact_id!r}")


@cache
def _prices(package: str) -> dict[str, Any]:
    text = resources.files(package).joinpath("prices.json").read_text("utf-8")
    entry: dict[str, Any] = json.loads(text)
    return entry


def kit_of(module: str) -> RouteKit:
    """The ``KIT`` of a route package, imported by name (what each line of the registry calls)."""
    kit: RouteKit = importlib.import_module(module).KIT
    return kit


def settings_table(kits: Mapping[str, RouteKit]) -> str:
    """The docs' table of each route's settings (docs/routes.md holds it; a test keeps it equal to this)."""
    rows = [
        "| route | credential variable | keyring user | base-URL variable | default origin | other variables | fake |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(value: str | None) -> str:
        return f"`{value}`" if value else "—"

    for kit in kits.values():
        given = kit.settings
        extra = ", ".join(f"`{variable}` ({key})" for key, variable in given.extra.items()) or "—"
        fake = f"`{kit.fake.factory}`" if kit.fake is not None else "none"
        rows.append(
            f"| `{kit.name}` | {cell(given.credential_env)} | {cell(given.keyring_user)} | "
            f"{cell(given.base_url_env)} | {cell(given.default_base_url)} | {extra} | {fake} |"
        )
    return "\n".join(rows)
