"""The exception tree drawn in errors.py's docstring is the real one: every class, every parent."""

from __future__ import annotations

import inspect
import re

from latentsync_routes import errors


def drawn_tree() -> dict[str, str | None]:
    """Class name -> parent name, read from the docstring's drawing (indentation gives the parent)."""
    doc = errors.__doc__ or ""
    drawing = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in drawing.splitlines():
        found = re.match(r"^(?P<lead>[ │]*(?:[├└]── )?)(?P<name>[A-Z][A-Za-z]+)", line)
        assert found, line
        depth = len(found["lead"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[found["name"]] = stack[-1][1] if stack else None
        stack.append((depth, found["name"]))
    return parents


def test_the_docstring_tree_is_the_class_tree() -> None:
    real = {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, errors.LatentSyncError) and cls.__module__ == errors.__name__
    }
    drawn = drawn_tree()
    assert set(drawn) == set(real)
    for name, parent in drawn.items():
        bases = [base.__name__ for base in real[name].__bases__ if issubclass(base, errors.LatentSyncError)]
        assert bases == ([parent] if parent else []), (name, bases, parent)


def test_every_error_of_the_package_is_declared_in_errors_py() -> None:
    """No module defines a LatentSyncError of its own: the tree has one home."""
    import pkgutil

    import latentsync_routes

    # Modules that need an optional extra (torch, Gradio, Ray) or run a program when imported.
    skip = (
        "latentsync_routes.local",
        "latentsync_routes.testing.tiny_local",
        "latentsync_routes.ui",
        "latentsync_routes.batch._ray",
        "latentsync_routes.quality",
    )
    for info in pkgutil.walk_packages(latentsync_routes.__path__, "latentsync_routes."):
        if info.name.startswith(skip) or info.name.endswith("__main__"):
            continue
        module = __import__(info.name, fromlist=["_"])
        for name, cls in vars(module).items():
            if inspect.isclass(cls) and issubclass(cls, errors.LatentSyncError):
                assert cls.__module__ == errors.__name__, f"{info.name}.{name} is defined outside errors.py"
