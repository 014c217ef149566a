"""``latentsync-routes ui``: the local web page (the ``ui`` extra), safe by default.

It binds to 127.0.0.1 unless told otherwise, warns before a public ``--share`` link, and with ``--fakes``
runs every hosted route on the package's loopback fakes (nothing is paid, nothing leaves the machine).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from contextlib import ExitStack
from pathlib import Path

import typer

from ..errors import ConfigurationError
from ._common import ConfigOpt, JsonOpt, _emit, _errors, app, err


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _wait_forever() -> None:
    """The page serves from Gradio's threads; this one waits for Ctrl+C."""
    threading.Event().wait()


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: loopback only)."),
    port: int | None = typer.Option(None, "--port", help="Port (default: the first free one from 7860)."),
    fakes: bool = typer.Option(False, "--fakes", help="Run the hosted routes on the built-in fakes: nothing is paid."),
    share: bool = typer.Option(False, "--share", help="Also open a public link (read the warning it prints)."),
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Serve the web page: inputs, every route's price and checklist, consent, run, result and history.

    With --json, one JSON document on stdout once the page answers: its url, host, fakes and share_url.
    """
    from ..client import LipSyncClient
    from ..config import load_settings

    with _errors(as_json):
        if importlib.util.find_spec("gradio") is None:
            raise ConfigurationError("the ui needs Gradio: pip install 'latentsync-routes[ui]'")
        from ..ui import SHARE_WARNING, serve
        from ..ui.fakes import fake_providers

        if share:
            err.print(f"[bold yellow]warning[/]: {SHARE_WARNING}", highlight=False)
        if not _loopback(host):
            err.print(f"[bold yellow]warning[/]: binding to {host}: other machines on the network can reach the "
                      "page, its history and its run button.", highlight=False)
        settings = load_settings(config)
        with ExitStack() as stack:
            if fakes:
                setup = stack.enter_context(fake_providers(settings))
                client, blocked = setup.client, setup.blocked
            else:
                client = LipSyncClient(settings=settings)
                blocked = {}
            demo = serve(client, host=host, port=port, share=share, fakes=fakes, blocked=blocked, block=False)
            stack.callback(demo.close)
            err.print(f"serving on {demo.local_url} ({'fakes: nothing is paid' if fakes else 'real providers'}); "
                      "Ctrl+C stops", highlight=False)
            share_url = getattr(demo, "share_url", None) if share else None
            if share_url:
                err.print(f"public link: {share_url}", highlight=False)
            served = {"url": demo.local_url, "host": host, "fakes": fakes, "share_url": share_url}
            _emit(as_json, served, lambda: None)
            sys.stdout.flush()  # a caller reading the JSON from a pipe gets it now, not when the page stops
            try:
                _wait_forever()
            except KeyboardInterrupt:
                err.print("stopped", highlight=False)
