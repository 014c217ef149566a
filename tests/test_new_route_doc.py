"""docs/new-route.md describes the hosted template's hooks as the template declares them."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from latentsync_routes.routes import REGISTRY
from latentsync_routes.routes.hosted import HostedRoute

DOC = Path(__file__).resolve().parents[1] / "docs" / "new-route.md"


def documented_hooks() -> dict[str, bool]:
    """Hook name -> required, from the doc's table."""
    table = DOC.read_text("utf-8").split("<!-- hooks -->\n", 1)[1].split("<!-- /hooks -->", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (yes|no) \|", table, flags=re.M)
    return {name: required == "yes" for name, required in rows}


def test_the_doc_lists_every_hook_the_template_declares_and_which_are_required() -> None:
    documented = documented_hooks()
    assert list(documented) == list(HostedRoute.HOOKS)
    for name, required in documented.items():
        assert inspect.isfunction(getattr(HostedRoute, name)), name
        assert (name in HostedRoute.__abstractmethods__) is required, name
    assert HostedRoute.__abstractmethods__ <= set(HostedRoute.HOOKS)


def test_no_hosted_route_adds_a_public_method_the_template_does_not_declare() -> None:
    """A hook found by getattr on some routes only is the drift this table prevents."""
    declared = {name for name in dir(HostedRoute) if not name.startswith("_")}
    for kit in REGISTRY.values():
        cls = kit.route_class()
        if not issubclass(cls, HostedRoute):
            continue
        extra = {
            name for name, value in vars(cls).items() if not name.startswith("_") and inspect.isfunction(value)
        } - declared
        assert not extra, f"{kit.name}: {sorted(extra)} are not declared on HostedRoute"
