"""The code-shape rules of DEVELOPERS.md, checked: no module over 450 lines, no function over 60.

A function is measured from its ``def`` line to its last line (decorators excluded), so a long parameter
list counts: fourteen parameters are a missing object, not a formatting problem.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "latentsync_routes"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


def function_lengths(source: str, where: str) -> dict[str, tuple[int, int]]:
    """``where:name`` -> (first line, length) of every function and method in ``source``, nested ones too."""
    found = {}
    for node in ast.walk(ast.parse(source, filename=where)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.end_lineno is not None
            found[f"{where}:{node.name}"] = (node.lineno, node.end_lineno - node.lineno + 1)
    return found


def _long_modules() -> dict[str, int]:
    lengths = {_name(path): len(path.read_text(encoding="utf-8").splitlines()) for path in _modules()}
    return {name: lines for name, lines in lengths.items() if lines > MAX_MODULE_LINES}


def _long_functions() -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    for path in _modules():
        found.update(function_lengths(path.read_text(encoding="utf-8"), _name(path)))
    return {name: at for name, at in found.items() if at[1] > MAX_FUNCTION_LINES}


def test_the_package_is_found() -> None:
    assert len(_modules()) > 50 and (PACKAGE / "client.py").is_file()


def test_no_module_is_over_450_lines() -> None:
    offenders = [f"{name} ({lines} lines)" for name, lines in sorted(_long_modules().items())]
    assert not offenders, f"modules over {MAX_MODULE_LINES} lines: {offenders}"


def test_no_function_is_over_60_lines() -> None:
    offenders = [f"{name} (line {first}, {lines} lines)" for name, (first, lines) in sorted(_long_functions().items())]
    assert not offenders, f"functions over {MAX_FUNCTION_LINES} lines: {offenders}"


def test_a_long_signature_counts_and_decorators_do_not() -> None:
    params = "".join(f"    p{i}: int,\n" for i in range(58))
    source = (
        f"@decorator\n@another\ndef wide(\n{params}) -> None:\n    pass\n\n\nasync def short() -> None:\n    pass\n"
    )
    found = function_lengths(source, "m.py")
    assert found == {"m.py:wide": (3, 61), "m.py:short": (66, 2)}
