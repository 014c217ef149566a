"""The docs site: every page in the nav, every public name documented and shown, generated pages current.

``mkdocs build --strict`` itself runs in .ci/run (it takes seconds, not milliseconds); these checks hold
what the build alone would not notice.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import pytest

import latentsync_routes

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _docs_gen() -> Any:
    spec = importlib.util.spec_from_file_location("docs_gen", ROOT / "tools" / "docs_gen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("docs_gen", module)
    spec.loader.exec_module(module)
    return module


def _nav_pages() -> set[str]:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:") :]
    return set(re.findall(r":\s*([\w/.-]+\.md)\s*$", nav, flags=re.MULTILINE))


def test_every_page_in_docs_is_in_the_nav() -> None:
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    generated = {_docs_gen().CLI_PAGE, _docs_gen().ROUTES_PAGE}
    nav = _nav_pages()
    assert pages - nav == set(), "pages missing from mkdocs.yml's nav"
    assert nav - pages == generated, "the nav names pages that are neither in docs/ nor generated"


def test_every_public_name_has_its_own_docstring() -> None:
    missing = [
        name for name in latentsync_routes.__all__ if not (getattr(latentsync_routes, name).__doc__ or "").strip()
    ]
    assert missing == []


def test_every_public_name_is_shown_in_the_api_reference() -> None:
    shown = set()
    for page in (DOCS / "api").glob("*.md"):
        shown |= set(re.findall(r"^::: latentsync_routes\.(\w+)\s*$", page.read_text(encoding="utf-8"), re.MULTILINE))
    assert set(latentsync_routes.__all__) - shown == set()


def test_every_jobrecord_field_is_documented_where_the_reference_reads_it() -> None:
    griffe = pytest.importorskip("griffe", reason="the docs extra (griffe comes with mkdocstrings[python])")
    module = griffe.load("latentsync_routes.types", search_paths=[str(ROOT)])
    record = module["JobRecord"]
    fields = list(latentsync_routes.JobRecord.model_fields)
    undocumented = [f for f in fields if record.members[f].docstring is None or not record.members[f].docstring.value]
    assert undocumented == []


def test_cli_reference_names_every_command_and_option() -> None:
    import typer

    from latentsync_routes.cli import app

    page = _docs_gen().render_cli()
    root = typer.main.get_command(app)
    for path, command in _docs_gen()._commands(root, ["latentsync-routes"]):
        assert f"## `{' '.join(path)}`" in page
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden:
                assert param.opts[0] in page, (path, param.opts)


def test_choose_a_route_page_has_a_row_per_route(tmp_path: Path) -> None:
    from latentsync_routes import LipSyncClient, Settings

    page = _docs_gen().render_routes()
    names = [info.name for info in LipSyncClient(settings=Settings(home=str(tmp_path))).routes()]
    assert names
    for name in names:
        assert f"| `{name}` |" in page
        assert f"| `{name}` |" in page.split("## Support")[0]


def test_api_pages_name_their_module_docstrings_truthfully() -> None:
    # the errors page renders the module docstring: it must still list every error class it documents
    doc = inspect.getdoc(importlib.import_module("latentsync_routes.errors")) or ""
    for name in latentsync_routes.__all__:
        value = getattr(latentsync_routes, name)
        if (
            isinstance(value, type)
            and issubclass(value, latentsync_routes.LatentSyncError)
            and value.__module__.endswith(".errors")
        ):
            assert name in doc, name
