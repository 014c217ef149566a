"""What the README and docs claim, held against the code: commands and flags, exit codes, figures with a
source in code (the local route's CPU speed, the price book's prices and dates)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _cli() -> Any:
    import typer

    from latentsync_routes.cli import app

    return typer.main.get_command(app)


def _options(command: Any) -> set[str]:
    found = {"--help"}
    for param in command.params:
        if param.param_type_name == "option":
            found |= {*param.opts, *param.secondary_opts}
            for opt in param.opts:  # "--face-check/--no-face-check" is written as one in the docs
                found |= {f"{opt}/{other}" for other in param.secondary_opts}
    return found


def _mentions() -> list[tuple[str, int, list[str]]]:
    """Each ``latentsync-routes WORDS...`` written in the README and docs: (page, line, tokens)."""
    found = []
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for segment in line.split("latentsync-routes ")[1:]:
                segment = re.split(r"#|&&|`|\)|;|,\s|\.\s|\.$| — ", segment)[0]
                for part in segment.split(" | "):
                    tokens = [t.strip("[]") for t in part.split() if t.strip("[]")]
                    if tokens:
                        found.append((page.name, number, tokens))
    return found


def test_every_command_and_flag_in_the_docs_exists() -> None:
    root = _cli()
    problems = []
    checked = 0
    for page, number, tokens in _mentions():
        command, path = root, []
        words = list(tokens)
        while words and hasattr(command, "commands") and words[0] in command.commands:
            path.append(words[0])
            command = command.commands[words.pop(0)]
        if not path:
            if words[0].startswith("--"):
                if words[0] not in _options(root):
                    problems.append(f"{page}:{number}: latentsync-routes {words[0]}: no such option")
                checked += 1
            elif words[0] in {"jobs"} or re.fullmatch(r"[a-z]+", words[0]):
                # prose ("latentsync-routes is ...") is not a command; a lone lowercase word may be one
                if (
                    words[0]
                    in {
                        "demo",
                        "run",
                        "check",
                        "estimate",
                        "routes",
                        "doctor",
                        "download",
                        "fakes",
                        "ui",
                        "batch",
                        "prices",
                        "evaluate",
                    }
                    and words[0] not in root.commands
                ):
                    problems.append(f"{page}:{number}: latentsync-routes {words[0]}: no such command")
            continue
        checked += 1
        options = _options(command)
        for word in words:
            flag = word.split("=")[0]
            if flag.startswith("--") and flag not in options:
                problems.append(f"{page}:{number}: latentsync-routes {' '.join(path)} {flag}: no such option")
    assert checked > 20  # the README alone names every command
    assert problems == []


def test_the_readme_exit_codes_are_the_error_classes() -> None:
    from latentsync_routes import errors

    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    sentence = text[text.index("Exit codes: 0 success") :].split(". ")[0]
    meanings = dict(re.findall(r"(\d+) ([a-zA-Z ]+?)(?:,|$| or)", sentence))
    assert {int(k) for k in meanings} == {0, 2, 3, 4, 5}
    assert errors.ConfigurationError.exit_code == errors.InputError.exit_code == 2 and "bad usage" in meanings["2"]
    assert errors.PolicyViolation.exit_code == 3 and "STOP" in meanings["3"]
    assert errors.RouteError.exit_code == 4 and "provider" in meanings["4"]
    assert errors.BudgetExceeded.exit_code == 5 and "budget" in meanings["5"]


def test_every_exit_code_the_docs_name_is_one_the_code_gives() -> None:
    from latentsync_routes import errors

    given = {0, 130} | {
        cls.exit_code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.LatentSyncError)
    }
    named: dict[int, str] = {}
    for page in PAGES:
        text = " ".join(page.read_text(encoding="utf-8").split())
        for match in re.finditer(r"\bexits? (?:code )?(\d+)|\(exit (\d+)|exit codes?(?: is| are)? (\d+)", text):
            code = int(next(g for g in match.groups() if g))
            named.setdefault(code, page.name)
    assert {2, 3, 4, 5} <= set(named)
    assert {code: page for code, page in named.items() if code not in given} == {}


def test_batch_help_and_docs_give_the_same_exit_codes() -> None:
    import inspect

    from latentsync_routes.cli import _common
    from latentsync_routes.cli import batch as batch_cli

    def codes(text: str) -> list[str]:
        text = " ".join(text.split())
        return re.findall(r"\d+", text[text.index("Exit codes:") :].split("ran.")[0])

    help_text = _cli().commands["batch"].help
    docs = (ROOT / "docs" / "batch.md").read_text(encoding="utf-8")
    assert codes(help_text) == codes(docs) == ["0", "4", "130", "2", "3", "5"]
    assert "130 if result.interrupted else 4" in inspect.getsource(batch_cli.batch)
    assert "exit_code = 130" in inspect.getsource(_common)


def _cpu_minutes_per_output_second() -> float:
    from latentsync_routes.local import speed

    figure = speed.speed_figure("cpu", "float32", "1.5").wall_seconds_per_output_second
    return figure * speed._cpu_threads() / 2 / 60  # the docs quote two cores


def test_the_local_routes_cpu_speed_in_the_docs_is_the_speed_tables() -> None:
    pytest.importorskip("torch", reason="the local extra: the speed table counts torch's threads")
    expected = _cpu_minutes_per_output_second()
    claims = []
    for page in PAGES:
        text = " ".join(page.read_text(encoding="utf-8").split())
        claims += [
            (page.name, float(m))
            for m in re.findall(
                r"about (\d+(?:\.\d+)?) minutes? (?:per|for one|for each) second of (?:output|video)", text
            )
        ]
        claims += [
            (page.name, float(m))
            for m in re.findall(r"second of (?:output|video) takes about (\d+(?:\.\d+)?) minutes", text)
        ]
    assert {name for name, _ in claims} >= {"local.md", "safety.md"}
    assert [(name, m) for name, m in claims if abs(m - expected) > 1.0] == [], f"the table says {expected:.1f} min"


def test_the_readme_price_table_is_the_price_books() -> None:
    from latentsync_routes.pricing import packaged_price_book

    book = packaged_price_book()
    rows = {}
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `(\w+)` \|", line)
        if match:
            rows[match.group(1)] = line.split(" | ")[3]
    assert set(rows) >= {"fal", "replicate", "wavespeed", "local"}
    for route in ("fal", "replicate", "wavespeed"):
        entry, cell = book[route], rows[route]
        assert f"({entry['checked']})" in cell, (route, cell)
        figures = {float(f) for f in re.findall(r"\$(\d+(?:\.\d+)?)", cell)}
        known = {float(v) for k, v in entry.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        assert figures and figures <= known, (route, figures - known)
    assert str(book["replicate"]["typical_predict_seconds"]) in rows["replicate"]
    assert f"per {book['wavespeed']['block_seconds']} s" in rows["wavespeed"]
