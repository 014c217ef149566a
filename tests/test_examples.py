"""The examples are part of the documentation: they must keep running (offline, on synthetic media)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("estimate_all_routes.py", "fal        $0.2250"),
        ("policy_and_budget.py", "budget stop (exit code 5)"),
        ("run_with_toml.py", '"state": "fetched"'),
    ],
)
def test_example_runs(script: str, expected: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LATENTSYNC_ROUTES_", "FAL_", "REPLICATE_"))}
    env.update({"LATENTSYNC_ROUTES_HOME": str(tmp_path), "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"})
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
