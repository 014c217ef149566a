"""A batch manifest: CSV with a header row, or JSON Lines, one job per row.

A manifest is read whole and refused whole: every bad row is named with its line number, so a catalogue
of hundreds of clips is fixed in one pass instead of failing at row 212 after paying for 211.

It is read strictly, because a lenient reading runs a job nobody wrote: a column named twice (which one
was meant?), a column nobody knows (a typo of ``consent``?), a JSON value of another type (``"seed":
true`` is not seed 1), a cell of megabytes, a scheme other than http(s) or a consent of control
characters are each refused, naming the line and the column, before anything runs.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..consent import consent_problem
from ..errors import ManifestError
from ..options import JOB_PARAMETERS
from ..types import LoopMode

#: a manifest's job parameters: the job options a column can hold (``extras`` is a dict, not a column)
PARAMETERS = tuple(name for name in JOB_PARAMETERS if name != "extras")
#: the columns a manifest may have; ``video``, ``audio`` and ``output`` are required
FIELDS = ("video", "audio", "output", "route", "consent", *PARAMETERS, "min_sync_confidence")
_URL_PREFIXES = ("http://", "https://", "data:")


class BatchJob(BaseModel):
    """One job of a batch: what a manifest row says, with paths made absolute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    video: str
    audio: str
    output: str
    route: str | None = None
    consent: str | None = None
    seed: int | None = None
    guidance_scale: float | None = None
    loop_mode: LoopMode | None = None
    inference_steps: int | None = None
    #: this row's quality gate (LSE-C), over the batch's ``min_sync_confidence``; implies scoring
    min_sync_confidence: float | None = Field(default=None, allow_inf_nan=False)
    #: score the output (the batch's ``evaluate`` option; not a column)
    evaluate: bool = False
    #: the SyncNet weights to score with (the batch's ``syncnet_weights`` option; not a column)
    syncnet_weights: str | None = None
    #: the manifest line this job came from (0 for jobs given in code)
    line: int = 0

    @field_validator("video", "audio", "output")
    @classmethod
    def _given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    def resolved(self, folder: Path) -> BatchJob:
        """This job with relative paths made absolute against ``folder`` (URLs are kept as given)."""

        def absolute(value: str) -> str:
            if value.startswith(_URL_PREFIXES):
                return value
            path = Path(value).expanduser()
            return str(path if path.is_absolute() else (folder / path).resolve())

        return self.model_copy(
            update={"video": absolute(self.video), "audio": absolute(self.audio), "output": absolute(self.output)}
        )

    def run_options(self) -> dict[str, Any]:
        """Keyword arguments for ``LipSyncClient.run`` beyond the inputs, output and route."""
        given = {
            name: getattr(self, name) for name in ("consent", *PARAMETERS, "min_sync_confidence", "syncnet_weights")
        }
        found = {name: value for name, value in given.items() if value is not None}
        return {**found, "evaluate": True} if self.evaluate else found


#: the JSON type each column takes in a JSONL manifest (CSV cells are text, parsed by the job's fields)
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("video", "audio", "output", "route", "consent", "loop_mode"), (str,)),
    "seed": (int,),
    "inference_steps": (int,),
    "guidance_scale": (int, float),
    "min_sync_confidence": (int, float),
}
_JSON_NAMES: dict[type, str] = {str: "a string", int: "an integer", float: "a number"}
#: longer than any path or URL a row needs: a bigger cell is a mistake (or an attack), named, not run
MAX_CELL_CHARS = 4096
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


def _json_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    shown = {dict: "an object", list: "an array", **_JSON_NAMES}
    return shown.get(type(value), type(value).__name__)


def _cell_problem(column: str, value: Any, *, typed: bool) -> str | None:
    """Why one cell cannot be run as written (its JSON type, its size, a scheme, a consent), or ``None``."""
    if typed:
        wanted = _JSON_TYPES[column]
        if isinstance(value, bool) or not isinstance(value, wanted):
            return f"must be {' or '.join(_JSON_NAMES[t] for t in wanted)}, not {_json_name(value)}"
    if not isinstance(value, str):
        return None
    if len(value) > MAX_CELL_CHARS:
        return f"{len(value)} characters; at most {MAX_CELL_CHARS} are taken"
    if column == "consent":
        return consent_problem(value)
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        return "contains control characters"
    scheme = _SCHEME.match(value) if column in ("video", "audio", "output") else None
    if scheme and scheme.group(1).lower() not in ("http", "https"):
        return f"unsupported scheme {scheme.group(1)!r}: a path, or an https URL"
    if scheme and column == "output":
        return "the output must be a path on this machine, not a URL"
    return None


def _row(values: Mapping[str, Any], line: int, folder: Path, *, typed: bool = False) -> BatchJob:
    """One row as a job; ``typed``: the values came from JSON and must have the columns' JSON types."""
    cleaned = {
        key.strip(): (value.strip() if isinstance(value, str) else value)
        for key, value in values.items()
        if key is not None
    }
    unknown = sorted(set(cleaned) - set(FIELDS))
    if unknown:
        raise ValueError("; ".join(f"column {name!r}: unknown column (known: {', '.join(FIELDS)})" for name in unknown))
    cleaned = {key: value for key, value in cleaned.items() if value not in ("", None)}
    problems = [
        f"column {column}: {problem}"
        for column, value in cleaned.items()
        if (problem := _cell_problem(column, value, typed=typed)) is not None
    ]
    if problems:
        raise ValueError("; ".join(problems))
    try:
        job = BatchJob.model_validate({**cleaned, "line": line})
    except ValidationError as exc:
        raise ValueError(
            "; ".join(
                f"{'column ' + '.'.join(str(p) for p in problem['loc']) if problem['loc'] else 'row'}: {problem['msg']}"
                for problem in exc.errors(include_url=False)
            )
        ) from None
    return job.resolved(folder)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are each given once (``json`` would keep the last of two silently)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _is_jsonl(text: str) -> bool:
    return text.lstrip().startswith("{")


def _json_rows(text: str) -> Iterable[tuple[int, Mapping[str, Any] | None, str | None]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            values = json.loads(raw, object_pairs_hook=_unique_keys)
        except _DuplicateKey as exc:
            yield number, None, f"column {exc.key!r}: given twice in one object (which one was meant?)"
            continue
        except json.JSONDecodeError as exc:
            yield number, None, f"not JSON: {exc.msg}"
            continue
        if not isinstance(values, dict):
            yield number, None, "each JSON line must be an object"
            continue
        yield number, values, None


def _rows(text: str) -> Iterable[tuple[int, Mapping[str, Any] | None, str | None]]:
    """``(line, values, problem)`` for each row, CSV or JSONL by the text's first character."""
    if _is_jsonl(text):
        yield from _json_rows(text)
        return
    reader = csv.DictReader(text.splitlines())
    header = [name.strip() for name in reader.fieldnames or []]
    if not {"video", "audio", "output"} <= set(header):
        yield 1, None, "a CSV manifest needs a header row naming at least video, audio and output"
        return
    twice = sorted({name for name in header if header.count(name) > 1})
    for name in twice:
        yield 1, None, f"column {name!r}: named {header.count(name)} times in the header (which one is meant?)"
    for name in (name for name in header if name not in FIELDS):
        yield 1, None, f"column {name!r}: unknown column (known: {', '.join(FIELDS)})"
    if twice:
        return
    for values in reader:
        if None in values:
            yield reader.line_num, None, "more cells than header columns"
            continue
        if not any((value or "").strip() for value in values.values()):
            continue
        yield reader.line_num, {k: v for k, v in values.items() if k.strip() in FIELDS}, None


def read_manifest(path: str | Path) -> list[BatchJob]:
    """Every job of the manifest at ``path``, or :class:`ManifestError` naming every bad row."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise ManifestError([(0, f"no manifest file at {source}")])
    folder = source.resolve().parent
    text = source.read_text(encoding="utf-8-sig")
    typed = _is_jsonl(text)
    jobs: list[BatchJob] = []
    problems: list[tuple[int, str]] = []
    for line, values, problem in _rows(text):
        if problem is not None or values is None:
            problems.append((line, problem or "unreadable row"))
            continue
        try:
            jobs.append(_row(values, line, folder, typed=typed))
        except ValueError as exc:
            problems.append((line, str(exc)))
    if not jobs and not problems:
        problems.append((0, "the manifest has no jobs"))
    if problems:
        raise ManifestError(problems)
    return jobs


def as_jobs(items: Iterable[BatchJob | Mapping[str, Any]], *, folder: Path | None = None) -> list[BatchJob]:
    """Jobs given in code (dicts or :class:`BatchJob`), checked like manifest rows; ``line`` is the 1-based
    position."""
    base = folder or Path.cwd()
    jobs: list[BatchJob] = []
    problems: list[tuple[int, str]] = []
    for number, item in enumerate(items, start=1):
        try:
            values = item.model_dump(exclude={"line"}) if isinstance(item, BatchJob) else dict(item)
            jobs.append(
                _row(
                    {k: (str(v) if k in ("video", "audio", "output") else v) for k, v in values.items()},
                    number,
                    base,
                    typed=True,
                )
            )
        except ValueError as exc:
            problems.append((number, str(exc)))
    if problems:
        raise ManifestError(problems)
    return jobs
