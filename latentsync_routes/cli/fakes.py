"""``latentsync-routes fakes``: the loopback fake of every route that has one, for trying the CLI offline.

It serves each registered route's fake (``routes/<name>/fake.py``, named by its kit) on 127.0.0.1 and
prints the ``export`` lines that point the package at them (each route's base URL variable and the dummy
credential its fake accepts, both named by the kit) until Ctrl-C. The dummy keys start with ``lsr-fake-``:
exported without the base URLs, the package refuses to send them to the real hosts
(:mod:`latentsync_routes.dummy_keys`) and says what to export. Nothing leaves the machine and nothing is
paid; the fakes answer with the input video, not a lip-synced one.
"""

from __future__ import annotations

import shlex
import sys
import threading
from contextlib import ExitStack
from typing import Any

import typer
from rich.markup import escape

from ._common import JsonOpt, _emit, _errors, app, err, out


def _start(stack: ExitStack, port: int | None) -> dict[str, Any]:
    """Start each kit's fake (on ``port``, ``port + 1``, ... in registry order when given) and its env lines."""
    from ..routes import REGISTRY

    fakes: dict[str, Any] = {}
    for kit in REGISTRY.values():
        spec = kit.fake
        if spec is None:
            continue
        chosen = 0 if port is None else port + len(fakes)
        server = stack.enter_context(kit.start_fake(**spec.demo_options, strict=False, port=chosen))
        env = [(kit.settings.base_url_env, server.url), (kit.settings.credential_env, spec.dummy_credential)]
        fakes[kit.name] = {"url": server.url, "env": {key: value for key, value in env if key}}
    return fakes


@app.command()
def fakes(
    port: int | None = typer.Option(
        None,
        "--port",
        min=1,
        max=65000,
        help="Serve the fakes on PORT, PORT+1, ... in the order `routes` lists them (default: free ports).",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Serve offline fakes of every hosted route and print the lines to export, until Ctrl-C.

    In another shell, after the exports: `latentsync-routes run clip.mp4 voice.wav -o out.mp4 --route fal
    --consent test`. The fakes return the input video (not lip-synced) and bill nothing.
    """
    with _errors(as_json), ExitStack() as stack:
        served = _start(stack, port)
        lines = [f"export {key}={shlex.quote(value)}" for fake in served.values() for key, value in fake["env"].items()]

        def human() -> None:
            for line in lines:
                out.print(escape(line), highlight=False, soft_wrap=True)

        _emit(as_json, {"fakes": served, "exports": lines}, human)
        sys.stdout.flush()
        err.print("fakes serving on 127.0.0.1; press Ctrl-C to stop", highlight=False)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            err.print("stopped", highlight=False)
