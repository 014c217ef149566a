"""A batch manifest: CSV with a header row, or JSON Lines, one job per row.

A manifest is read whole and refused whole: every bad row is named with its line number, so a catalogue
of hundreds of clips is fixed in one pass instead of failing at row 212 after paying for 211.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..errors import ManifestError
from ..options import JOB_PARAMETERS
from ..types import LoopMode

#: a manifest's job parameters: the job options a column can hold (``extras`` is a dict, not a column)
PARAMETERS = tuple(name for name in JOB_PARAMETERS if name != "extras")
#: the columns a manifest may have; ``video``, ``audio`` and ``output`` are required
FIELDS = ("video", "audio", "output", "route", "consent", *PARAMETERS)
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

        return self.model_copy(update={"video": absolute(self.video), "audio": absolute(self.audio),
                                       "output": absolute(self.output)})

    def run_options(self) -> dict[str, Any]:
        """Keyword arguments for ``LipSyncClient.run`` beyond the inputs, output and route."""
        given = {name: getattr(self, name) for name in ("consent", *PARAMETERS)}
        return {name: value for name, value in given.items() if value is not None}


def _row(values: Mapping[str, Any], line: int, folder: Path) -> BatchJob:
    cleaned = {key.strip(): (value.strip() if isinstance(value, str) else value) for key, value in values.items()
               if key is not None}
    unknown = sorted(set(cleaned) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown column(s) {', '.join(unknown)} (known: {', '.join(FIELDS)})")
    cleaned = {key: value for key, value in cleaned.items() if value not in ("", None)}
    try:
        job = BatchJob.model_validate({**cleaned, "line": line})
    except ValidationError as exc:
        raise ValueError("; ".join(
            f"{'.'.join(str(p) for p in problem['loc']) or 'row'}: {problem['msg']}"
            for problem in exc.errors(include_url=False)
        )) from None
    return job.resolved(folder)


def _rows(path: Path) -> Iterable[tuple[int, Mapping[str, Any] | None, str | None]]:
    """``(line, values, problem)`` for each row, CSV or JSONL by the file's first character."""
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("{"):
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                values = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield number, None, f"not JSON: {exc.msg}"
                continue
            if not isinstance(values, dict):
                yield number, None, "each JSON line must be an object"
                continue
            yield number, values, None
        return
    reader = csv.DictReader(text.splitlines())
    header = [name.strip() for name in reader.fieldnames or []]
    if not {"video", "audio", "output"} <= set(header):
        yield 1, None, "a CSV manifest needs a header row naming at least video, audio and output"
        return
    unknown = [name for name in header if name not in FIELDS]
    if unknown:
        yield 1, None, f"unknown column(s) {', '.join(unknown)} (known: {', '.join(FIELDS)})"
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
    jobs: list[BatchJob] = []
    problems: list[tuple[int, str]] = []
    for line, values, problem in _rows(source):
        if problem is not None or values is None:
            problems.append((line, problem or "unreadable row"))
            continue
        try:
            jobs.append(_row(values, line, folder))
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
            jobs.append(_row({k: (str(v) if k in ("video", "audio", "output") else v) for k, v in values.items()},
                             number, base))
        except ValueError as exc:
            problems.append((number, str(exc)))
    if problems:
        raise ManifestError(problems)
    return jobs
