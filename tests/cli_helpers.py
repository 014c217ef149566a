"""Running the real console script in a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def clean_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any credentials or settings of ours, plus a private home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LATENTSYNC_ROUTES_", "FAL_", "REPLICATE_"))}
    env.update(
        {
            "LATENTSYNC_ROUTES_HOME": str(home),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "LATENTSYNC_ROUTES_POLICY__FACE_CHECK": "false",  # synthetic clips show no face (conftest.py)
            "LATENTSYNC_ROUTES_POLICY__DEADLINE_CHECK": "false",
        }
    )  # fakes beat any estimate (conftest.py)
    env.update(extra or {})
    return env


def console_script() -> str:
    return str(Path(sys.executable).with_name("latentsync-routes"))


def run_cli(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(), *args], capture_output=True, text=True, env=clean_env(home, env), timeout=120
    )
