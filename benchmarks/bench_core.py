"""Core costs users pay on every call: import time and probing.

Run: ``python benchmarks/bench_core.py``. Prints figures and their ratio to the targets
(import < 150 ms without torch/fal_client/replicate; probe of a 1-hour mp4 median < 50 ms).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

IMPORT_TARGET_MS = 150.0
PROBE_TARGET_MS = 50.0


def import_time_ms(statement: str, runs: int = 7) -> tuple[float, list[str]]:
    code = (
        f"import time, sys; t = time.perf_counter(); {statement}; "
        "print((time.perf_counter() - t) * 1000); "
        "print(','.join(m for m in ('torch', 'fal_client', 'replicate') if m in sys.modules))"
    )
    times, heavy = [], ""
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        first, heavy = out.splitlines()[0], (out.splitlines()[1:] or [""])[0]
        times.append(float(first))
    return statistics.median(times), [m for m in heavy.split(",") if m]


def one_hour_mp4(path: Path) -> Path:
    """A real one-hour H.264 mp4, written fast: 1 fps of tiny frames at a 25 fps time base."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 25)
        image = np.zeros((32, 32, 3), dtype=np.uint8)
        for second in range(3600):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = second * 25
            frame.time_base = Fraction(1, 25)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def probe_time_ms(path: Path, runs: int = 21) -> tuple[float, float]:
    from latentsync_routes import MediaSource, probe

    source = MediaSource.of(path)
    times = []
    duration = 0.0
    for _ in range(runs):
        t = time.perf_counter()
        duration = probe(source, with_hash=False).duration
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), duration


def main() -> None:
    import_ms, heavy = import_time_ms("import latentsync_routes")
    print(
        f"import latentsync_routes: median {import_ms:.1f} ms (target {IMPORT_TARGET_MS:.0f} ms, "
        f"ratio {import_ms / IMPORT_TARGET_MS:.2f}); heavy modules imported: {heavy or 'none'}"
    )
    client_ms, client_heavy = import_time_ms("from latentsync_routes import LipSyncClient")
    heavy = heavy + client_heavy
    print(
        f"from latentsync_routes import LipSyncClient (pydantic, settings, client): median {client_ms:.1f} ms; "
        f"heavy modules imported: {client_heavy or 'none'}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = one_hour_mp4(Path(tmp) / "hour.mp4")
        probe_ms, duration = probe_time_ms(path)
    print(
        f"probe of a {duration / 60:.0f}-minute mp4: median {probe_ms:.2f} ms (target {PROBE_TARGET_MS:.0f} ms, "
        f"ratio {probe_ms / PROBE_TARGET_MS:.2f})"
    )
    if heavy or import_ms > IMPORT_TARGET_MS or probe_ms > PROBE_TARGET_MS:
        sys.exit(1)


if __name__ == "__main__":
    main()
