"""A local web page (Gradio) for the safe path: the price, the checklist and the consent question first.

``latentsync-routes ui`` serves it; :func:`serve` is the same from Python. Gradio is imported only when a
page is built (the ``ui`` extra): importing this package, or ``latentsync_routes``, imports no Gradio.

The modules: :mod:`.state` (staging inputs, the per-route assessment, the run gate), :mod:`.runner` (the
running job, its progress, cancel), :mod:`.history` (journal rows and the spend chart), :mod:`.render`
(HTML panels), :mod:`.fakes` (``--fakes``: the hosted routes on loopback fakes), :mod:`.inputs` (what the
page accepts and the one folder Gradio serves), :mod:`.hosts` (the ``Host`` check) and :mod:`.app` (the page).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..client import LipSyncClient

__all__ = ["SHARE_WARNING", "build_page", "serve"]

SHARE_WARNING = (
    "--share makes this page reachable by anyone who has the link, through a public tunnel: whoever passes "
    "--auth can see the job history, play every input and output on it, start runs and delete jobs. Without "
    "--fakes those runs bill YOUR provider accounts, so --share and a non-loopback --host need --auth, and "
    "refuse to start while real provider keys are reachable unless --fakes is given."
)


def prepare_environment(served: Path) -> None:
    """Before Gradio is imported: its uploads and copies in ``served`` (the page's own folder), no telemetry."""
    from .inputs import point_gradio_at

    point_gradio_at(served)


def build_page(
    client: LipSyncClient, *, fakes: bool = False, blocked: Mapping[str, str] | None = None, served: Path | None = None
) -> Any:
    """The Gradio Blocks of the page on ``client`` (call ``.launch()`` on it, or use :func:`serve`).

    ``served``: the folder uploads land in and Gradio serves from (a new private one when not given).
    """
    from .inputs import new_served_folder

    served = served or new_served_folder()
    prepare_environment(served)
    from .app import Page, build

    page = Page(client, blocked, served=served)
    page.prune()
    return build(page, fakes=fakes)


def serve(
    client: LipSyncClient,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    fakes: bool = False,
    blocked: Mapping[str, str] | None = None,
    block: bool = True,
    auth: tuple[str, str] | None = None,
) -> Any:
    """Build the page and serve it (on the loopback interface unless ``host`` says otherwise).

    Gradio serves the page's own upload folder and nothing else (no ``allowed_paths``); requests whose
    ``Host`` header names another host are refused (:mod:`.hosts`); ``auth`` is Gradio's login.
    """
    from starlette.middleware import Middleware

    from . import render
    from .hosts import HostCheck, allowed_hosts
    from .inputs import new_served_folder, remove_served

    served = new_served_folder()
    demo = build_page(client, fakes=fakes, blocked=blocked, served=served)
    demo.queue(default_concurrency_limit=4)
    allowed = allowed_hosts(host)
    close = demo.close

    def close_and_clean() -> None:
        close()
        remove_served(served)

    demo.close = close_and_clean
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=not block,
        quiet=True,
        allowed_paths=[],
        css=render.CSS,
        head=render.HEAD,
        ssr_mode=False,
        auth=auth,
        mcp_server=False,
        footer_links=[],
        show_error=True,
        theme=_theme(),
        app_kwargs={"middleware": [Middleware(HostCheck, allowed=allowed)]},
    )
    share_url = getattr(demo, "share_url", None)
    if share_url:
        from urllib.parse import urlsplit

        allowed.add((urlsplit(share_url).hostname or "").lower())
    return demo


def _theme() -> Any:
    """The default look with system fonts: the stock theme would fetch web fonts from the internet."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
