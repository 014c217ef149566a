"""What counts as a consent basis: text a person wrote, the one rule every entry point applies.

The consent text is the gate before a face and a voice are uploaded, and it is stored in the job's record
and printed back by ``jobs show``. A string of terminal escapes (``$'\\e[2J'``), zero-width or bidi marks,
or control bytes is not something a person wrote; it must not open the gate, and it must not reach a
terminal later. So the CLI's ``--consent``, the page's consent box, a manifest row's ``consent``, the
client's ``consent=`` and the checklist's ``consent`` row all go through :func:`consent_problem` and
:func:`normalise_consent` here, and ``tests/test_security.py`` holds them to one table of cases.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import InvalidConsent

#: Letters a consent basis needs at least ("test", "synthetic", a name): fewer is a stray key press.
MIN_LETTERS = 3
#: A basis is a sentence or two ("signed release #42, 2026-03-01"); more is not a consent text.
MAX_CONSENT_CHARS = 1000

# ECMA-48 escape sequences: CSI (ESC [ or the C1 byte 0x9b) with parameters, OSC/DCS/APC/PM strings up
# to their terminator, and the two-byte escapes. Removed whole, so "\x1b[31m" leaves nothing behind
# (stripping only the ESC would leave "[31m", three letters).
_ANSI = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x9d\x98\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)


def _kept(ch: str) -> str:
    """Control characters become a space (a newline separates words); format and other C* go entirely."""
    category = unicodedata.category(ch)
    if category == "Cc" or ch.isspace():
        return " "
    if category.startswith("C"):  # Cf (zero-width, bidi overrides), Cs, Co, Cn
        return ""
    return ch


def _cleaned(text: str) -> str:
    without_escapes = _ANSI.sub("", text)
    return " ".join("".join(_kept(ch) for ch in without_escapes).split())


def consent_problem(text: str | None) -> str | None:
    """Why ``text`` is not a consent basis, in words; ``None`` when it is one (or when none was given)."""
    if text is None:
        return None
    if len(text) > MAX_CONSENT_CHARS:
        return f"the consent text is {len(text)} characters; at most {MAX_CONSENT_CHARS} are taken"
    letters = sum(1 for ch in _cleaned(text) if unicodedata.category(ch).startswith("L"))
    if letters < MIN_LETTERS:
        return (
            f"the consent text has {letters} letter{'' if letters == 1 else 's'} once control characters and "
            f"terminal escapes are removed; a consent basis needs at least {MIN_LETTERS} "
            "(who agreed and how, or 'synthetic' for synthetic media)"
        )
    return None


def normalise_consent(text: str | None) -> str | None:
    """The consent basis as it is checked, stored and shown; ``None`` when ``text`` is none or not one."""
    if text is None or consent_problem(text) is not None:
        return None
    return _cleaned(text)


def checked_consent(text: str | None, *, where: str = "consent") -> str | None:
    """``text`` normalised, or :class:`InvalidConsent` naming ``where`` it came from; ``None`` stays ``None``.

    An empty text is "not given" (the checklist then asks for one); anything else, blanks included, must
    be a basis.
    """
    if not text:
        return None
    problem = consent_problem(text)
    if problem is not None:
        raise InvalidConsent(f"{where}: {problem}")
    return _cleaned(text)
