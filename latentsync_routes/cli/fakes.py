"""``latentsync-routes fakes``: the loopback fakes of every hosted provider, for trying the CLI offline.

It serves FakeFal, FakeReplicate and FakeWaveSpeed on 127.0.0.1 and prints the ``export`` lines that point
the package at them (each route's base URL variable and a dummy credential the fake accepts) until
Ctrl-C. The dummy keys start with ``lsr-fake-``: exported without the base URLs, the package refuses to
send them to the real hosts (:mod:`latentsync_routes.dummy_keys`) and says what to export. Nothing leaves
the machine and nothing is paid; the fakes answer with the input video, not a
lip-synced one.
"""

from __future__ import annotations

import shlex
import sys
import threading
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from typing import Any

import typer
from rich.markup import escape

from ..dummy_keys import DUMMY_KEYS as _DUMMY_KEYS
from ._common import JsonOpt, _emit, _errors, app, err, out

#: The dummy credentials the fakes are started with (and accept; any other key is refused like a bad one).
#: They start with a prefix no provider issues, and the package never sends them to a real host.
DUMMY_KEYS = dict(_DUMMY_KEYS)


def _start(stack: ExitStack, port: int | None) -> dict[str, Any]:
    """Start the three fakes (on ``port``, ``port + 1`` and ``port + 2`` when given) and their env lines."""
    from ..routes.base import route_info
    from ..testing import FakeFal, FakeReplicate, FakeWaveSpeed

    fakes: dict[str, Any] = {}
    makers: list[tuple[str, Callable[..., Any]]] = [
        ("fal", partial(FakeFal, expected_key=DUMMY_KEYS["fal"], billable_units=40)),
        ("replicate", partial(FakeReplicate, expected_token=DUMMY_KEYS["replicate"])),
        ("wavespeed", partial(FakeWaveSpeed, expected_key=DUMMY_KEYS["wavespeed"])),
    ]
    for offset, (name, make) in enumerate(makers):
        server = stack.enter_context(make(strict=False, port=0 if port is None else port + offset))
        info = route_info(name)
        env = [(info.base_url_env, server.url), (info.credential_env, DUMMY_KEYS[name])]
        fakes[name] = {"url": server.url, "env": {key: value for key, value in env if key}}
    return fakes


@app.command()
def fakes(
    port: int | None = typer.Option(
        None,
        "--port",
        min=1,
        max=65533,
        help="Serve fal on PORT, Replicate on PORT+1, WaveSpeed on PORT+2 (default: free ports).",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Serve offline fakes of fal, Replicate and WaveSpeed and print the lines to export, until Ctrl-C.

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
