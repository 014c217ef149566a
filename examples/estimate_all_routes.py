"""Price one job on every route before deciding where to run it.

Usage: python examples/estimate_all_routes.py [VIDEO AUDIO]
Without arguments it makes a 2 s synthetic clip and 45 s of audio in a temp folder.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from latentsync_routes import LipSyncClient
from latentsync_routes.testing.media import write_test_audio, write_test_video


def main() -> None:
    if len(sys.argv) == 3:
        video, audio = Path(sys.argv[1]), Path(sys.argv[2])
    else:
        folder = Path(tempfile.mkdtemp())
        video = write_test_video(folder / "clip.mp4", seconds=2.0)
        audio = write_test_audio(folder / "voice.wav", seconds=45.0)
    client = LipSyncClient()
    for estimate in sorted(client.estimate_all(video, audio), key=lambda e: e.amount):
        print(f"{estimate.route:10s} ${estimate.amount:.4f}  ({estimate.low:.4f}-{estimate.high:.4f})")
        print(f"{'':10s} {estimate.basis}")


if __name__ == "__main__":
    main()
