"""Stop rules in action: a policy stop and a budget stop, both before anything leaves the machine.

Usage: python examples/policy_and_budget.py
Uses synthetic media; no credentials or network are needed because both stops happen before upload.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from latentsync_routes import BudgetExceeded, LipSyncClient, PolicySettings, PolicyViolation, load_settings
from latentsync_routes.testing import write_test_audio, write_test_video


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    video = write_test_video(folder / "clip.mp4", seconds=2.0)
    audio = write_test_audio(folder / "voice.wav", seconds=90.0)

    # 1. A policy that caps retention at one hour and requires a consent basis.
    strict = load_settings(home=folder, policy=PolicySettings(max_retention_days=1 / 24))
    client = LipSyncClient(route="fal", settings=strict, credentials={"fal": "not-used"})
    for result in client.check(video, audio):
        print(f"  {result.check:16s} {'pass' if result.passed else 'STOP'}  {result.reason}")
    try:
        client.run(video, audio, folder / "out.mp4")
    except PolicyViolation as stop:
        print(f"policy stop (exit code {stop.exit_code}): {[f.check for f in stop.failures]}")

    # 2. A per-call budget below the estimate's worst case.
    capped = LipSyncClient(
        route="replicate",
        credentials={"replicate": "not-used"},
        budget_per_call=0.10,
        settings=load_settings(home=folder),
    )
    print("estimate:", capped.estimate(video, audio).basis)
    try:
        # face_check=False: this synthetic clip shows no face, which the face check would rightly stop.
        capped.run(video, audio, folder / "out.mp4", consent="synthetic", face_check=False)
    except BudgetExceeded as stop:
        print(f"budget stop (exit code {stop.exit_code}): {stop}")


if __name__ == "__main__":
    main()
