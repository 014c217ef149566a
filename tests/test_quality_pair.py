"""The pair the issue asks for: a face whose drawn mouth opens with its audio's energy, against the same
video with other audio (what a fake provider returns: the input video carrying the new audio).

With random weights the scores mean nothing about sync, so these tests show what they can: the whole
path (decode, MediaPipe tracking, crop, MFCC, SyncNet, summary, CLI JSON) runs on real-shaped media and
is deterministic. With the official ``syncnet_v2.model`` present (``SYNCNET_WEIGHTS=/path`` or the copy
``latentsync-routes download --syncnet`` pinned) the matched pair must score the higher confidence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

from latentsync_routes.quality import SyncNet, SyncNetWeightsError  # noqa: E402
from latentsync_routes.quality.evaluate import Evaluation, evaluate_video  # noqa: E402
from latentsync_routes.quality.weights import load_syncnet, resolve_syncnet  # noqa: E402
from tests.cli_helpers import run_cli  # noqa: E402
from tests.quality_media import speech_like, talking_clip, write_wav  # noqa: E402

pytestmark = pytest.mark.slow  # each evaluation decodes, tracks and scores 3 s of 448 px video on the CPU


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pair")
    clip, own = talking_clip(folder / "talking.mp4", 3.0, seed=1)
    other = speech_like(3.0, seed=2)
    assert not np.array_equal(own, other)
    return clip, write_wav(folder / "other.wav", other)


@pytest.fixture(scope="module")
def random_model() -> SyncNet:
    torch.manual_seed(0)
    return SyncNet()


@pytest.fixture(scope="module")
def scored(pair: tuple[Path, Path], random_model: SyncNet) -> tuple[Evaluation, Evaluation]:
    clip, other = pair
    return evaluate_video(clip, random_model), evaluate_video(clip, random_model, audio=other)


def test_the_pair_is_scored_end_to_end(scored: tuple[Evaluation, Evaluation]) -> None:
    for evaluation in scored:
        (track,) = evaluation.tracks
        assert (track.first_frame, track.frames, track.windows) == (0, 75, 70)
        assert 100 < track.face_size < 200
        assert np.isfinite(track.lse_d) and track.lse_d > 0 and track.lse_c >= 0 and -15 <= track.av_offset <= 15
        assert (evaluation.lse_c, evaluation.lse_d, evaluation.av_offset) == (track.lse_c, track.lse_d, track.av_offset)
        assert evaluation.official_lse_c == track.lse_c and evaluation.official_av_offset == track.av_offset
        assert evaluation.verdict.startswith("in sync" if evaluation.passed else "out of sync")
    own, other = scored
    assert own.lse_d != other.lse_d  # the audio differs, so the distances do


def test_scores_are_deterministic(pair: tuple[Path, Path], random_model: SyncNet,
                                  scored: tuple[Evaluation, Evaluation]) -> None:  # fmt: skip
    again = evaluate_video(pair[0], random_model)
    assert again.to_dict()["tracks"] == scored[0].to_dict()["tracks"]


def test_cli_json_has_the_contract_fields(pair: tuple[Path, Path], tmp_path: Path) -> None:
    weights = tmp_path / "random.model"
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), weights)
    done = run_cli("evaluate", str(pair[0]), "--audio", str(pair[1]), "--syncnet-weights", str(weights), "--json",
                   home=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (track,) = report["tracks"]
    assert {"av_offset", "lse_d", "lse_c", "frames"} <= set(track) and track["frames"] == 75
    assert {"lse_c", "lse_d", "av_offset", "verdict", "official_average"} <= set(report["summary"])
    assert report["weights"]["pin"] == "user-supplied (not pinned)"
    human = run_cli("evaluate", str(pair[0]), "--syncnet-weights", str(weights), home=tmp_path)
    assert human.returncode == 0 and "sync:" in human.stdout and "Traceback" not in human.stderr


def official_weights() -> Path:
    named = os.environ.get("SYNCNET_WEIGHTS")
    if named:
        return Path(named)
    try:
        return resolve_syncnet().path
    except SyncNetWeightsError:
        pytest.skip("the official syncnet_v2.model is not here (set SYNCNET_WEIGHTS=/path, or run latentsync-routes "
                    "download --syncnet): the pair's ordering needs the real weights; random weights only show the "
                    "path runs")  # fmt: skip


def test_with_the_official_weights_the_matched_audio_scores_higher(pair: tuple[Path, Path]) -> None:
    model = load_syncnet(official_weights())
    matched = evaluate_video(pair[0], model)
    mismatched = evaluate_video(pair[0], model, audio=pair[1])
    assert matched.lse_c > mismatched.lse_c, (matched.to_dict()["summary"], mismatched.to_dict()["summary"])


def test_importing_the_package_or_the_quality_layer_loads_no_torch() -> None:
    code = ("import sys, latentsync_routes, latentsync_routes.quality; "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
