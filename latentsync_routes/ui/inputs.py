"""What the page accepts as an input, and where the files it serves live.

Why a module of its own: the page is reachable by whoever can open it (anyone with the link under
``--share``), so every value it gets is an attacker's until checked. Two rules, applied here and nowhere
else:

- a URL box takes an ``http(s)://`` URL and nothing else, validated by the same rules as the CLI
  (:class:`~latentsync_routes.types.MediaSource`: https anywhere, plain http to loopback only, every redirect
  hop checked by :mod:`latentsync_routes.media_url`); a server path, ``file:`` or any other scheme typed
  there is refused, never opened;
- a file input is used only when it lies in the folder the page created for uploads (Gradio's upload
  folder, :func:`new_served_folder`); Gradio already refuses other paths posted to its API, and this is
  the second lock on the same door.

The served folder is a fresh private folder under the system's temporary folder: Gradio serves nothing
else (no ``allowed_paths``), nothing under the working directory, the journal or the home, and the file
URLs it hands out name that folder only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import unicodedata
import uuid
from pathlib import Path

from ..errors import UnsupportedSource
from ..types import MediaSource

#: Longer than any media URL a person pastes; a bigger value is refused before it is parsed.
MAX_URL_CHARS = 2048
_SCHEMES = ("https://", "http://")


def new_served_folder() -> Path:
    """A new private folder (mode 0700) for the page's uploads and the copies Gradio serves."""
    return Path(tempfile.mkdtemp(prefix="latentsync-ui-")).resolve()


def page_url(text: str, role: str) -> str:
    """The URL typed in the ``role`` box, or :class:`UnsupportedSource` saying why it is refused."""
    given = text.strip()
    if len(given) > MAX_URL_CHARS:
        raise UnsupportedSource(f"the {role} URL is {len(given)} characters; at most {MAX_URL_CHARS} are taken")
    if any(unicodedata.category(ch).startswith("C") or ch.isspace() for ch in given):
        raise UnsupportedSource(f"the {role} URL contains spaces or control characters")
    if not given.lower().startswith(_SCHEMES):
        raise UnsupportedSource(
            f"the {role} box takes an http(s):// URL only; this page never reads a file "
            "on the server: upload the file in the box above instead"
        )
    try:
        source = MediaSource(kind="url", url=given)
    except UnsupportedSource:
        raise
    except ValueError:
        raise UnsupportedSource(f"the {role} URL is not a valid URL") from None
    assert source.url is not None
    return source.url


def uploaded_file(value: str, served: Path, role: str) -> Path:
    """A file the page's upload box gave: it must lie (links resolved) inside ``served``."""
    if len(value) > 4096 or "\x00" in value:
        raise UnsupportedSource(f"the {role} upload is not a file this page received")
    path = Path(value).resolve()
    root = Path(served).resolve()
    if path == root or root not in path.parents:
        raise UnsupportedSource(f"the {role} upload is not a file this page received; upload it with the page")
    return path


def served_copy(path: str | Path, served: Path) -> str:
    """``path`` copied into the served folder (a new sub-folder per copy), for Gradio to show it.

    Files the page keeps (staged inputs, outputs) stay under the home, which Gradio does not serve; what
    the browser plays is this copy, under a name that says nothing about the server's folders.
    """
    source = Path(path)
    folder = Path(served) / uuid.uuid4().hex[:16]
    folder.mkdir(mode=0o700)
    target = folder / f"{source.stem[:40] or 'file'}{source.suffix.lower()[:8]}"
    shutil.copyfile(source, target)
    return str(target)


def remove_served(served: Path) -> None:
    """Remove the served folder when the page stops (only a folder :func:`new_served_folder` made)."""
    root = Path(served)
    if root.name.startswith("latentsync-ui-") and root.parent == Path(tempfile.gettempdir()).resolve():
        shutil.rmtree(root, ignore_errors=True)


def point_gradio_at(served: Path) -> None:
    """Before Gradio is imported: its uploads and cached copies in ``served``, no telemetry."""
    os.environ["GRADIO_TEMP_DIR"] = str(served)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(Path(served) / "examples")  # the default is under the cwd
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
