"""A local web page (Gradio) for the safe path: the price, the checklist and the consent question first.

``latentsync-routes ui`` serves it; :func:`serve` is the same from Python. Gradio is imported only when a
page is built (the ``ui`` extra): importing this package, or ``latentsync_routes``, imports no Gradio.

The modules: :mod:`.state` (staging inputs, the per-route assessment, the run gate), :mod:`.runner` (the
running job, its progress, cancel), :mod:`.history` (journal rows and the spend chart), :mod:`.render`
(HTML panels), :mod:`.fakes` (``--fakes``: the hosted routes on loopback fakes) and :mod:`.app` (the page).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..client import LipSyncClient

__all__ = ["SHARE_WARNING", "build_page", "serve"]

SHARE_WARNING = (
    "--share makes this page reachable by anyone who has the link, through a public tunnel: they can see the "
    "job history, play every input and output on it, start runs that bill YOUR provider accounts with the "
    "credentials of this process, and delete jobs. Use it only with --fakes or on media you may share."
)


def prepare_environment(home: Path) -> None:
    """Before Gradio is imported: its uploads and copies under the home, no telemetry."""
    cache = Path(home) / "ui" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"


def build_page(client: LipSyncClient, *, fakes: bool = False, blocked: Mapping[str, str] | None = None) -> Any:
    """The Gradio Blocks of the page on ``client`` (call ``.launch()`` on it, or use :func:`serve`)."""
    prepare_environment(Path(client.settings.home))
    from .app import Page, build

    page = Page(client, blocked)
    page.prune()
    return build(page, fakes=fakes)


def serve(client: LipSyncClient, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
          fakes: bool = False, blocked: Mapping[str, str] | None = None, block: bool = True) -> Any:
    """Build the page and serve it (on the loopback interface unless ``host`` says otherwise)."""
    from . import render
    from .state import uploads_root

    home = Path(client.settings.home)
    demo = build_page(client, fakes=fakes, blocked=blocked)
    demo.queue(default_concurrency_limit=4)
    demo.launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=not block, quiet=True,
        allowed_paths=[str(uploads_root(home))], css=render.CSS, head=render.HEAD, ssr_mode=False,
        mcp_server=False, footer_links=[], show_error=True,
        theme=_theme(),
    )
    return demo


def _theme() -> Any:
    """The default look with system fonts: the stock theme would fetch web fonts from the internet."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])
