"""Pages of the docs site generated from the code at build time, so they cannot go stale.

``mkdocs build`` runs :func:`on_files` (a MkDocs hook, named in ``mkdocs.yml``): it adds ``cli.md``, every
command's usage, options and help read from the typer app, and ``choose-a-route.md``, each route's declared
facts read from the routes the client knows. tests/test_docs_site.py renders both too.
"""

from __future__ import annotations

import re
import tempfile
from typing import Any

CLI_PAGE = "cli.md"
ROUTES_PAGE = "choose-a-route.md"


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _commands(group: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    """The command and its subcommands, depth first (typer ships its own click, so no isinstance checks)."""
    found = [(path, group)]
    if hasattr(group, "commands"):
        for name in sorted(group.commands):
            found.extend(_commands(group.commands[name], [*path, name]))
    return found


def _option_row(param: Any, ctx: Any) -> str:
    """One option as ``--help`` shows it: its names with the value it takes, and its help with the default."""
    record = param.get_help_record(ctx)
    names, text = record if record else (", ".join(param.opts), "")
    return f"| `{names}` | {_cell(text)} |"


def render_cli() -> str:
    """The CLI reference: every command of the typer app with its usage line, help and options."""
    import typer

    from latentsync_routes.cli import app

    root = typer.main.get_command(app)
    lines = [
        "# Command line reference",
        "",
        "Generated from the `latentsync-routes` command itself when the site is built; "
        "`latentsync-routes COMMAND --help` prints the same.",
        "",
    ]
    for path, command in _commands(root, ["latentsync-routes"]):
        if getattr(command, "hidden", False):
            continue
        ctx = command.context_class(command, info_name=" ".join(path))
        lines += [f"## `{' '.join(path)}`", ""]
        if command.help:
            lines += [command.help.strip(), ""]
        usage = re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), " ".join(command.collect_usage_pieces(ctx)))
        lines += ["```text", f"Usage: {' '.join(path)} {usage}", "```", ""]
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        options = [p for p in command.params if p.param_type_name == "option" and not p.hidden]
        if arguments:
            lines += ["| argument | help |", "|---|---|"]
            lines += [
                f"| `{(p.metavar or p.name or '').upper()}` | {_cell(getattr(p, 'help', '') or '')} |"
                for p in arguments
            ]
            lines.append("")
        if options:
            lines += ["| option | help |", "|---|---|"]
            lines += [_option_row(p, ctx) for p in options]
            lines.append("")
    return "\n".join(lines)


def _limits(info: Any) -> str:
    parts = []
    if info.max_input_bytes:
        parts.append(f"files up to {info.max_input_bytes / 1e6:g} MB")
    if info.max_video_seconds:
        parts.append(f"video up to {info.max_video_seconds:g} s")
    if info.max_audio_seconds:
        parts.append(f"audio up to {info.max_audio_seconds:g} s")
    return "; ".join(parts) or "none declared"


def render_routes() -> str:
    """The "choose a route" page: per route, who runs it, where the media goes, limits, retention, billing."""
    from latentsync_routes import LipSyncClient, Settings
    from latentsync_routes.pricing import packaged_price_book

    with tempfile.TemporaryDirectory(prefix="latentsync-docs-") as home:
        infos = LipSyncClient(settings=Settings(home=home)).routes()
    book = packaged_price_book()
    lines = [
        "# Choose a route",
        "",
        "Every route runs the same LatentSync model and gives the same result type, journal and safety checks; "
        "they differ in who runs the model, where your media goes, what it costs and what you may do when it "
        "fails. The facts below are read from each route's declaration when the site is built "
        "(`latentsync-routes routes --json` prints them too). Prices: [Routes](routes.md).",
        "",
        "- **Nothing may leave the machine**: `local` (needs the `[local]` extra and, for speed, a GPU).",
        "- **No GPU, a few jobs**: a hosted route; `--route cheapest` picks the cheapest one that is usable, "
        "takes the inputs and passes the safety checks.",
        "- **Trying things out**: `latentsync-routes fakes` or `ui --fakes`: the hosted routes against offline "
        "fakes, nothing paid.",
        "",
        "| route | run by | uploads to | retention | price | limits | failure billing | install |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for info in infos:
        price = _price(book, info.name)
        lines.append(
            f"| `{info.name}` | {_cell(info.owner)} | {_cell(info.upload_destination)} | {_cell(info.retention)} | "
            f"{_cell(price)} | {_cell(_limits(info))} | {_cell(info.failure_billing or 'not declared')} | "
            f"`pip install 'latentsync-routes[{info.install_extra}]'` |"
        )
    lines += ["", "## Support and sources", ""]
    for info in infos:
        support = ", ".join(f"<{p}>" if p.startswith("http") else p for p in info.support_path) or "none declared"
        lines.append(f"- **{info.name}** ({_cell(info.description)}): support {support}.")
        lines += [f"    - source: <{s}>" for s in info.sources if s.startswith("http")]
    return "\n".join(lines) + "\n"


def _price(book: dict[str, Any], route: str) -> str:
    entry = book.get(route)
    if not entry:
        return "not in the price book"
    if route == "local":
        return "$0 from a provider; your GPU time is priced with the `local_gpu_hour_usd` setting"
    return f"{entry.get('quote', '')} (checked {entry.get('checked', '?')}, [source]({entry.get('source', '')}))"


def on_files(files: Any, config: Any) -> Any:
    """MkDocs hook: add the generated pages to the site."""
    from mkdocs.structure.files import File

    for name, render in ((CLI_PAGE, render_cli), (ROUTES_PAGE, render_routes)):
        files.append(File.generated(config, name, content=render()))
    return files
