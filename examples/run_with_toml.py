"""Run one job with settings from a TOML file.

Usage: python examples/run_with_toml.py [CONFIG]
With no fal credentials around, it starts the in-package fake fal server on loopback and points the
route at it, so the whole data path runs offline. With FAL_KEY set and
LATENTSYNC_ROUTES_USE_REAL_FAL=1, it runs on fal for real (and costs money).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

from latentsync_routes import LipSyncClient, load_settings
from latentsync_routes.testing import FakeFal, write_test_audio, write_test_video


def main() -> None:
    config = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("run_with_config.toml")
    folder = Path(tempfile.mkdtemp())
    video = write_test_video(folder / "clip.mp4", seconds=2.0)
    audio = write_test_audio(folder / "voice.wav", seconds=3.0)
    real = os.environ.get("LATENTSYNC_ROUTES_USE_REAL_FAL") == "1"
    with contextlib.ExitStack() as stack:
        overrides: dict[str, object] = {"home": folder / "home"}
        key = os.environ.get("FAL_KEY")
        if not real:
            fal = stack.enter_context(FakeFal(expected_key="example-key", billable_units=40))
            overrides["route_settings"] = {"fal": {"base_url": fal.url}}
            key = "example-key"
        settings = load_settings(config, **overrides)
        client = LipSyncClient(settings=settings, credentials={"fal": key}, consent="synthetic test media")
        print("estimate:", client.estimate(video, audio).basis)
        result = client.run(video, audio, folder / "out.mp4", seed=7)
    print("output:", result.output_path)
    print("cost:", result.cost.model_dump())
    print("record:", result.record.model_dump_json(indent=2)[:400], "...")


if __name__ == "__main__":
    main()
