"""No module reaches into another object's private names.

A leading underscore says "this object's own business": read from the source (``ast``), every ``x._name``
in the package must have ``x`` be ``self``, ``cls`` or ``super()``. What one object needs of another is a
public, documented, typed name (``LocalRoute.run_model``, ``AsyncLipSyncClient.in_thread``,
``Journal.renew``), a callable handed over by its owner (the fake servers' ``track``/``dispatch``), or what
the caller can build from public names (``prices refresh`` opens its own client with the route's key).
That holds inside one module too: two classes of one module still change apart.

The rule is wider than the package's own names: a third-party client's internals are private names as
well, and each use of one is listed below with why, so a new one is a decision, not an accident.
"""

from __future__ import annotations

import ast
from pathlib import Path

import latentsync_routes

PACKAGE = Path(latentsync_routes.__file__).parent

#: Private names of third-party objects the package must use (module relative to the package, expression).
THIRD_PARTY = {
    # fal-client keeps its httpx client and auth private; the route bounds that client by the job deadline
    # (routes/fal/hosts.py) and sends its own queue and platform requests through it (routes/fal/route.py)
    ("routes/fal/hosts.py", "sync._client"),
    ("routes/fal/hosts.py", "sync._auth"),
    ("routes/fal/hosts.py", "sync._token_manager"),
    ("routes/fal/route.py", "self._sdk()._client"),
    # fal-client's CDN upload needs its CDN client and token manager; it has no public multipart upload
    # with a deadline (routes/fal/upload.py)
    ("routes/fal/upload.py", "sync._get_cdn_client"),
    ("routes/fal/upload.py", "sync._token_manager"),
    # replicate's ``files.list()`` reads the first page only (through this same method); a file left by an
    # interrupted upload is looked for over the next pages too (routes/replicate/uploads.py)
    ("routes/replicate/uploads.py", "client._request"),
    # torch exposes whether oneDNN runs bf16 natively only under this name
    ("local/precision.py", "torch.ops.mkldnn._is_mkldnn_bf16_supported"),
}


def _own(node: ast.expr) -> bool:
    """Whether ``node`` is the object itself: ``self``, ``cls`` or ``super()``."""
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: str) -> set[str]:
    """Every ``x._name`` of ``source`` where ``x`` is not the object itself, as written."""
    return {
        ast.unparse(node)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and _private(node.attr) and not _own(node.value)
    }


def _uses() -> set[tuple[str, str]]:
    """``(module, expression)`` for every such use in the package."""
    return {
        (path.relative_to(PACKAGE).as_posix(), use)
        for path in PACKAGE.rglob("*.py")
        for use in private_uses(path.read_text("utf-8"))
    }


def test_no_module_reaches_into_another_objects_private_names() -> None:
    found = _uses()
    wrong = sorted(f"{module}: {use}" for module, use in found - THIRD_PARTY)
    assert not wrong, "private names of other objects used:\n" + "\n".join(wrong)


def test_the_allow_lists_hold_only_what_is_still_there() -> None:
    """An entry whose use is gone comes off its list, so the lists only ever shrink to what is needed."""
    found = _uses()
    assert not THIRD_PARTY - found, sorted(THIRD_PARTY - found)


def test_the_check_sees_private_names_and_leaves_the_objects_own() -> None:
    source = """
class A(B):
    def f(self, other):
        self._mine(); cls._too; super()._base(); other.__len__()
        return other._theirs + make()._built + mod.sub._deep
"""
    assert private_uses(source) == {"other._theirs", "make()._built", "mod.sub._deep"}
