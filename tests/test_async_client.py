from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from latentsync_routes import AsyncLipSyncClient, load_settings
from latentsync_routes.testing import FakeFal, write_test_audio, write_test_video


async def test_concurrent_jobs_respect_the_route_limit(tmp_path: Path) -> None:
    video = write_test_video(tmp_path / "clip.mp4", 1.0)
    audios = [write_test_audio(tmp_path / f"voice{i}.wav", 1.0, hz=200 + 10 * i) for i in range(10)]
    with FakeFal(expected_key="k", queue_polls=2) as fal:
        settings = load_settings(home=tmp_path, route_settings={"fal": {"base_url": fal.url}}, poll_interval=0.01)
        async with AsyncLipSyncClient(
            route="fal", concurrency={"fal": 3}, credentials={"fal": "k"}, consent="test", settings=settings
        ) as client:
            route = client.sync.route("fal")
            original = route.execute
            lock, running, peak = threading.Lock(), [0], [0]

            def counting(job: Any) -> Any:
                with lock:
                    running[0] += 1
                    peak[0] = max(peak[0], running[0])
                try:
                    return original(job)
                finally:
                    with lock:
                        running[0] -= 1

            route.execute = counting  # type: ignore[method-assign]
            results = await asyncio.gather(
                *(client.run(video, audio, tmp_path / f"out{i}.mp4") for i, audio in enumerate(audios))
            )
        assert len(fal.jobs) == 10
    assert peak[0] == 3, f"expected the limit of 3 to be reached and held, saw {peak[0]}"
    assert len({r.job_id for r in results}) == 10
    assert all(Path(r.output_path or "").exists() for r in results)
