"""``latentsync-routes ui``: the local web page (the ``ui`` extra), safe by default.

It binds to 127.0.0.1 unless told otherwise and answers only requests addressed to that host. A page
others can reach (``--share``, or a ``--host`` that is not loopback) needs ``--auth USER:PASS``, and
refuses to start while real provider keys are reachable unless ``--fakes`` runs every hosted route on the
package's loopback fakes (nothing is paid, nothing leaves the machine): whoever logs in could otherwise
spend on those accounts.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..errors import ConfigurationError
from ._common import ConfigOpt, JsonOpt, _emit, _errors, app, err

if TYPE_CHECKING:
    from ..config import Settings


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _auth(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user.strip() or not password:
        raise ConfigurationError("--auth takes USER:PASS (a user name, a colon, a password)")
    return user.strip(), password


def _exposure_problem(
    *, share: bool, host: str, auth: tuple[str, str] | None, fakes: bool, reachable: list[str]
) -> str | None:
    """Why a page others can reach must not start as asked, or ``None``."""
    exposed = "--share" if share else (f"--host {host}" if not _loopback(host) else None)
    if exposed is None:
        return None
    if auth is None:
        return (
            f"{exposed} makes the page reachable by others: give --auth USER:PASS (the page then asks for "
            "them), or serve on 127.0.0.1"
        )
    if reachable and not fakes:
        return (
            f"{exposed} with real provider keys reachable ({', '.join(reachable)}): anyone who logs in could "
            "spend on those accounts; add --fakes, or unset them for this process"
        )
    return None


def _reachable_keys(client: Any) -> list[str]:
    """The names (never the values) of the real provider credentials this process would use."""
    from ..dummy_keys import is_dummy_key
    from ..routes import REGISTRY

    found = []
    for name in REGISTRY:
        credential = client.credential(name)
        if credential is not None and not is_dummy_key(credential.value.get_secret_value()):
            found.append(f"{credential.name} ({credential.source})")
    return found


def _wait_forever() -> None:
    """The page serves from Gradio's threads; this one waits for Ctrl+C."""
    threading.Event().wait()


@dataclass(frozen=True)
class _PageOptions:
    """How the page was asked to be served: what the start-up checks judge and :func:`~..ui.serve` gets."""

    host: str
    port: int | None
    share: bool
    fakes: bool
    login: tuple[str, str] | None

    @property
    def exposed(self) -> bool:
        """Others can reach the page: a public link, or an interface that is not loopback."""
        return self.share or not _loopback(self.host)


def _checked_settings(page: _PageOptions, config: Path | None) -> Settings:
    """Warn about what others can reach, then refuse a page others could use to spend real money.

    Everything here runs before Gradio starts, so a refused page never listens for a moment.
    """
    from ..client import LipSyncClient
    from ..config import load_settings
    from ..ui import SHARE_WARNING

    if page.share:
        err.print(f"[bold yellow]warning[/]: {SHARE_WARNING}", highlight=False)
    if not _loopback(page.host):
        err.print(
            f"[bold yellow]warning[/]: binding to {page.host}: other machines on the network can reach the "
            "page, its history and its run button.",
            highlight=False,
        )
    settings = load_settings(config)
    reachable = _reachable_keys(LipSyncClient(settings=settings)) if page.exposed and not page.fakes else []
    problem = _exposure_problem(
        share=page.share, host=page.host, auth=page.login, fakes=page.fakes, reachable=reachable
    )
    if problem:
        raise ConfigurationError(problem)
    return settings


def _serve_until_stopped(page: _PageOptions, settings: Settings, as_json: bool) -> None:
    """Serve on the real providers or on the fakes, say where (and, with --json, print it), wait for Ctrl+C."""
    from ..client import LipSyncClient
    from ..ui import serve
    from ..ui.fakes import fake_providers

    with ExitStack() as stack:
        if page.fakes:
            setup = stack.enter_context(fake_providers(settings))
            client, blocked = setup.client, setup.blocked
        else:
            client = LipSyncClient(settings=settings)
            blocked = {}
        demo = serve(
            client, host=page.host, port=page.port, share=page.share, fakes=page.fakes, blocked=blocked, block=False,
            auth=page.login,
        )  # fmt: skip
        stack.callback(demo.close)
        err.print(
            f"serving on {demo.local_url} ({'fakes: nothing is paid' if page.fakes else 'real providers'}); "
            "Ctrl+C stops",
            highlight=False,
        )
        share_url = getattr(demo, "share_url", None) if page.share else None
        if share_url:
            err.print(f"public link: {share_url}", highlight=False)
        served = {"url": demo.local_url, "host": page.host, "fakes": page.fakes, "share_url": share_url}
        _emit(as_json, served, lambda: None)
        sys.stdout.flush()  # a caller reading the JSON from a pipe gets it now, not when the page stops
        try:
            _wait_forever()
        except KeyboardInterrupt:
            err.print("stopped", highlight=False)


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (default: loopback only)."),
    port: int | None = typer.Option(None, "--port", help="Port (default: the first free one from 7860)."),
    fakes: bool = typer.Option(False, "--fakes", help="Run the hosted routes on the built-in fakes: nothing is paid."),
    share: bool = typer.Option(False, "--share", help="Also open a public link (needs --auth; read the warning)."),
    auth: str | None = typer.Option(
        None,
        "--auth",
        metavar="USER:PASS",
        envvar="LATENTSYNC_UI_AUTH",
        show_envvar=True,
        help="Ask for this login (needed by --share and a non-loopback --host).",
    ),
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Serve the web page: inputs, every route's price and checklist, consent, run, result and history.

    With --json, one JSON document on stdout once the page answers: its url, host, fakes and share_url.
    """
    with _errors(as_json):
        if importlib.util.find_spec("gradio") is None:
            raise ConfigurationError("the ui needs Gradio: pip install 'latentsync-routes[ui]'")
        page = _PageOptions(host=host, port=port, share=share, fakes=fakes, login=_auth(auth))
        settings = _checked_settings(page, config)
        _serve_until_stopped(page, settings, as_json)
