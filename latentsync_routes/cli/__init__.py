"""The ``latentsync-routes`` command line: one typer app, its commands in one module per group.

A new command group is a module here that registers on ``app`` (or a sub-app) from ``_common`` and one
import line below.
"""

from __future__ import annotations

import json
import sys

import typer
from rich.markup import escape

from ..errors import LatentSyncError
from . import batch, commands, fakes, jobs, prices, quality  # noqa: F401 - importing registers the commands
from . import ui as _ui  # noqa: F401 - the `ui` command (Gradio is imported only when it runs)
from ._common import _fail, _reported_by_click, _typed, app, err

__all__ = ["app", "main"]


def main() -> None:
    """The console script. Under --json even a usage error or a crash is one JSON document on stdout."""
    if "--json" not in sys.argv[1:]:
        app()
        return
    try:
        code = app(standalone_mode=False)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback under --json
        format_message = getattr(exc, "format_message", None)
        if isinstance(exc, _reported_by_click()) and callable(format_message):  # a usage error
            usage = LatentSyncError(str(format_message()))
            usage.exit_code = int(getattr(exc, "exit_code", 2))
            sys.stdout.write(json.dumps({"error": {**usage.to_dict(), "type": type(exc).__name__}}, indent=2) + "\n")
            err.print(f"[bold red]error[/]: {escape(usage.message)}", highlight=False)
            code = usage.exit_code
        else:  # an Abort, or something that escaped outside a command's error handling
            code = _fail(True, _typed(KeyboardInterrupt() if isinstance(exc, typer.Abort) else exc)).exit_code
    sys.exit(code if isinstance(code, int) else 0)
