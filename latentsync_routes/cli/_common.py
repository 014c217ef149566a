"""What every command shares: the typer apps, the common options, JSON output and typed errors.

Every command takes ``--json`` and then prints exactly one JSON document on stdout (errors included, as
``{"error": {...}}``); human output goes through rich. Exit codes come from the error classes: 0 success,
2 bad usage or input refused before any upload, 3 policy stop, 4 provider or route failure, 5 budget.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from ..errors import LatentSyncError

out = Console()
err = Console(stderr=True)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Run LatentSync lip-sync on any route.")
jobs_app = typer.Typer(no_args_is_help=True, help="The job journal: list, show, resume, cancel, delete, spend.")
app.add_typer(jobs_app, name="jobs")


def _print_version(value: bool) -> None:
    if value:
        from .._version import __version__

        out.print(__version__)
        raise typer.Exit(0)


@app.callback()
def _app_options(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the library version and exit."
    ),
) -> None:
    """Run LatentSync lip-sync on any route."""


def _flags_without_type() -> None:
    """Show ``--json`` and ``--help`` as the flags they are, not as ``--json <bool>``.

    typer (>= 0.24) prints a type column for every option, a flag's included; a flag takes no value, so
    its type is left blank. Older typers print none, and then nothing is changed.
    """
    option = getattr(getattr(typer, "core", None), "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if option is None or shown is None or getattr(shown, "flags_blank", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich.flags_blank = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


_flags_without_type()


JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout.")
ConfigOpt = typer.Option(None, "--config", help="TOML config file.")
RouteOpt = typer.Option(None, "--route", "-r", help="Route name (default: LATENTSYNC_ROUTES_ROUTE or config).")
FaceCheckOpt = typer.Option(
    None,
    "--face-check/--no-face-check",
    help="Sample the video for a face before uploading it (default: policy.face_check, on).",
)
DeadlineOpt = typer.Option(
    None, "--deadline", help="Seconds before the job is cancelled (default: LATENTSYNC_ROUTES_DEADLINE_SECONDS, 1800)."
)
RetryFailedOpt = typer.Option(
    False, "--retry-failed", help="If the job's provider job failed, pay for a new one (otherwise: exit 4)."
)
FallbackOpt = typer.Option(
    False, "--fallback", help="After a provider job failed at no charge, run the job on the next route."
)
AfterBilledOpt = typer.Option(
    False,
    "--fallback-after-billed-failure",
    help="With --fallback, move on after a billed failure too (both routes are paid; a batch's --budget counts both).",
)
OnQualityOpt = typer.Option(
    False,
    "--fallback-on-quality",
    help="With --fallback, move on after a job under --min-sync-confidence too (both routes are paid; a batch's "
    "--budget counts both).",
)
NewJobOpt = typer.Option(
    False,
    "--new-job",
    help="Pay for a new job when the journal's job of these inputs cannot give its output (deleted, expired) "
    "or failed; without it a re-run never pays twice.",
)
ForceResubmitOpt = typer.Option(
    False, "--force-resubmit", help="After an ambiguous submit that no lookup finds, submit again (may bill twice)."
)


def _plain(*values: object) -> list[Text]:
    """Table cells shown as written: paths, reasons and consent texts may contain ``[...]``."""
    return [Text(str(value)) for value in values]


def _dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {key: _dump(v) for key, v in value.items()}
    return value


def _emit(as_json: bool, value: Any, human: Callable[[], None]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(_dump(value), indent=2, default=str) + "\n")
    else:
        human()


def _typed(exc: BaseException) -> LatentSyncError:
    """Anything else that escaped a command, as one of our errors (so it has a type and an exit code).

    Problems of the local set-up (a value pydantic refused, a broken journal database, a file that cannot
    be read or written) exit 2 like any configuration error; a busy journal is transient and exits 4, like
    anything else, an unexpected failure of the route. The message names the original exception; the
    traceback goes to the debug log.
    """
    import sqlite3

    from pydantic import ValidationError

    from ..errors import ConfigurationError, JournalBusy, JournalError, RouteError
    from ..journal_db import is_busy

    name = type(exc).__name__
    text = " ".join(str(exc).split())[:300] or name
    if isinstance(exc, KeyboardInterrupt):
        interrupted = LatentSyncError("interrupted")
        interrupted.exit_code = 130
        return interrupted
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'value'}: {problem['msg']}"
            for problem in exc.errors(include_url=False)[:3]
        )
        return ConfigurationError(f"invalid value: {problems}")
    if isinstance(exc, sqlite3.Error):
        if is_busy(exc):
            return JournalBusy(
                f"the job journal (jobs.sqlite3 in LATENTSYNC_ROUTES_HOME) is busy: {text}; nothing "
                "was lost: run the same command again"
            )
        return JournalError(
            f"the job journal (jobs.sqlite3 in LATENTSYNC_ROUTES_HOME) cannot be used: {name}: "
            f"{text}; keep the file (it holds every job's record) and see `latentsync-routes doctor`"
        )
    if isinstance(exc, OSError) and exc.filename is not None:
        return ConfigurationError(f"{exc.strerror or text}: {exc.filename}")
    return RouteError(f"unexpected {name}: {text}")


def _reported_by_click() -> tuple[type[BaseException], ...]:
    """Exits and usage errors that click (or typer's vendored copy of it, typer >= 0.24) reports itself."""
    kinds: list[type[BaseException]] = [typer.Exit, typer.Abort]
    vendored = getattr(typer, "TyperException", None)
    if isinstance(vendored, type) and issubclass(vendored, BaseException):
        kinds.append(vendored)
    try:
        import click
    except ImportError:  # pragma: no cover - typer vendors click and click is not installed
        return tuple(kinds)
    return (*kinds, click.exceptions.Exit, click.exceptions.Abort, click.exceptions.ClickException)


def _fail(as_json: bool, exc: LatentSyncError) -> typer.Exit:
    """Print one error (one JSON document on stdout with --json) and give the exit to raise."""
    if as_json:
        sys.stdout.write(json.dumps({"error": exc.to_dict()}, indent=2) + "\n")
    err.print(f"[bold red]error[/]: {type(exc).__name__}: {escape(str(exc))}", highlight=False)
    return typer.Exit(exc.exit_code)


@contextmanager
def _errors(as_json: bool) -> Iterator[None]:
    """Turn any error into an exit code and one clear message (JSON on stdout with --json), no traceback."""
    try:
        yield
    except LatentSyncError as exc:
        raise _fail(as_json, exc) from None
    except (Exception, KeyboardInterrupt) as exc:
        if isinstance(exc, _reported_by_click()):
            raise  # typer.Exit(3) from `check`, and the like
        logging.getLogger(__name__).debug("command failed", exc_info=exc)
        raise _fail(as_json, _typed(exc)) from None


def _client(config: Path | None, route: str | None = None) -> Any:
    from ..client import LipSyncClient

    client = LipSyncClient(route=route, config_file=config)
    if route is None:
        _known_default_route(client.settings.route)
    return client


def _known_default_route(name: str) -> None:
    """Refuse a default route that no route answers to, naming where it came from (exit 2)."""
    from ..errors import UnknownRoute
    from ..routes.base import route_names

    names = route_names()
    if name != "cheapest" and name not in names:
        raise UnknownRoute(
            f"the default route {name!r} (LATENTSYNC_ROUTES_ROUTE or the config file's 'route') "
            f"is not a route: use one of {', '.join(names)}, or cheapest"
        )
