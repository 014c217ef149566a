"""The sync scorer against the official evaluation code, through the public goldens (``goldens/syncnet``).

The goldens were made by the official ``SyncNetEval.evaluate`` with random weights (they check that we
compute the same function, not that lip-sync is good). Tolerances are those of the issue and the goldens'
README: MFCC within 1e-6 relative, trunks, embeddings and distances within 1e-4, the offset exact, LSE-D
and LSE-C within 1e-4. Cases the goldens never saw are held to a plain, per-window re-statement of the
official computation written here from the README (and MFCC to ``python_speech_features`` itself where
it is installed).
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

from latentsync_routes.quality import AudioTooShort, SyncNet, SyncNetWeightsError, mfcc, sync_scores  # noqa: E402
from latentsync_routes.quality.cepstrum import mfcc_frame_count  # noqa: E402
from latentsync_routes.quality.scores import lip_input, offset_scores  # noqa: E402
from tests.conftest import SHARED  # noqa: E402

SYNC_GOLDENS = SHARED / "goldens" / "syncnet"
CASES = ("case_a_50f_2s", "case_b_64f_audio_short")
ATOL = 1e-4


def golden(*parts: str) -> Path:
    path = SYNC_GOLDENS.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"SyncNet goldens not found at {path} (they live in ../shared/goldens beside a development "
            "checkout, not on user machines)"
        )
    return path


def load_xz(path: Path) -> dict[str, Any]:
    return {k: v.numpy() for k, v in safetensors_torch.load(lzma.open(path).read()).items()}


@pytest.fixture(scope="module")
def random_state() -> dict[str, Any]:
    return safetensors_torch.load(lzma.open(golden("syncnet_random_seed20250101.safetensors.xz")).read())


@pytest.fixture(scope="module")
def model(random_state: dict[str, Any]) -> SyncNet:
    return SyncNet.from_state_dict(random_state)


@pytest.fixture(scope="module", params=CASES)
def case(request: pytest.FixtureRequest, model: SyncNet) -> dict[str, Any]:
    name = request.param
    inputs = load_xz(golden(name, "inputs.safetensors.xz"))
    scores = sync_scores(inputs["frames_bgr"], inputs["audio_int16"], model)
    return {
        "name": name,
        "inputs": inputs,
        "expected": load_xz(golden(name, "expected.safetensors.xz")),
        "result": json.loads(golden(name, "result.json").read_text()),
        "scores": scores,
    }


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


# ------------------------------------------------------------------------------------------------- goldens


def test_mfcc_matches_within_1e_6_relative(case: dict[str, Any]) -> None:
    got, want = case["scores"].mfcc, case["expected"]["mfcc"]
    assert got.dtype == np.float64 and got.shape == want.shape == (case["result"]["n_mfcc_frames"], 13)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_network_inputs_are_the_officials(case: dict[str, Any]) -> None:
    s, expected = case["scores"], case["expected"]
    np.testing.assert_array_equal(s.aud_input[:3], expected["aud_input_first"])
    np.testing.assert_array_equal(lip_input(case["inputs"]["frames_bgr"], 0), expected["lip_input_window0"])


def test_trunks_and_embeddings_within_1e_4(case: dict[str, Any]) -> None:
    s, expected = case["scores"], case["expected"]
    assert max_abs(s.aud_trunk[:3], expected["aud_trunk_first"]) < ATOL
    assert max_abs(s.lip_trunk[:3], expected["lip_trunk_first"]) < ATOL
    assert max_abs(s.im_feat, expected["im_feat"]) < ATOL
    assert max_abs(s.cc_feat, expected["cc_feat"]) < ATOL


def test_distances_within_1e_4(case: dict[str, Any]) -> None:
    s, expected = case["scores"], case["expected"]
    assert s.dists.shape == (case["result"]["n_windows"], 31)
    assert max_abs(s.dists, expected["dists"]) < ATOL
    assert max_abs(s.mean_dists, expected["mean_dists"]) < ATOL


def test_offset_exact_and_scores_within_1e_4(case: dict[str, Any]) -> None:
    s, result = case["scores"], case["result"]
    assert s.av_offset == result["av_offset"] == result["official_evaluate_return"][0]
    assert s.min_index == result["minidx"] and s.min_length == result["min_length"]
    assert s.windows == result["n_windows"]
    assert abs(s.lse_d - result["LSE_D_min_dist"]) < ATOL
    assert abs(s.lse_c - result["LSE_C_conf"]) < ATOL


# --------------------------------------------------------------------------------------------- the loader


def test_loads_with_or_without_num_batches_tracked(random_state: dict[str, Any], model: SyncNet) -> None:
    trimmed = {k: v for k, v in random_state.items() if not k.endswith("num_batches_tracked")}
    assert len(trimmed) < len(random_state)
    other = SyncNet.from_state_dict(trimmed)
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(other.state_dict()[key], value), key
    assert not other.training


@pytest.mark.parametrize("change", ["missing", "unknown", "shape"])
def test_weights_that_are_not_syncnet_are_refused_by_key(random_state: dict[str, Any], change: str) -> None:
    state = dict(random_state)
    if change == "missing":
        del state["netfclip.3.bias"]
    elif change == "unknown":
        state["module.extra"] = torch.zeros(1)
    else:
        state["netcnnaud.0.weight"] = torch.zeros(64, 1, 5, 5)
    expected_key = {"missing": "netfclip.3.bias", "unknown": "module.extra", "shape": "netcnnaud.0.weight"}[change]
    with pytest.raises(SyncNetWeightsError, match=expected_key.replace(".", r"\.")):
        SyncNet.from_state_dict(state)


# ----------------------------------------------------------------------------------- cases never seen here


def reference_scores(frames: np.ndarray, audio: np.ndarray, model: SyncNet) -> tuple[int, float, float, np.ndarray]:
    """The official computation re-stated per window from the goldens' README: batches of 20 stacked
    5-frame windows, one pairwise-distance call per window, float32 throughout."""
    features = torch.from_numpy(mfcc(audio).T.astype(np.float32))[None, None]  # [1, 1, 13, M]
    video = torch.from_numpy(frames.astype(np.float64)).float().permute(3, 0, 1, 2)[None]  # [1, 3, T, H, W]
    windows = min(frames.shape[0], audio.shape[0] // 640) - 5
    im, cc = [], []
    with torch.inference_mode():
        for start in range(0, windows, 20):
            batch = range(start, min(windows, start + 20))
            im.append(model.forward_lip(torch.cat([video[:, :, i : i + 5] for i in batch])))
            cc.append(model.forward_aud(torch.cat([features[:, :, :, 4 * i : 4 * i + 20] for i in batch])))
        im_feat, cc_feat = torch.cat(im), torch.cat(cc)
        padded = torch.nn.functional.pad(cc_feat, (0, 0, 15, 15))
        dists = torch.stack(
            [
                torch.nn.functional.pairwise_distance(im_feat[[i]].repeat(31, 1), padded[i : i + 31])
                for i in range(windows)
            ]
        )
        means = dists.mean(0)
        low, index = torch.min(means, 0)
        return 15 - int(index), float(low), float(torch.median(means) - low), dists.numpy()


@pytest.fixture(scope="module")
def unseen() -> tuple[np.ndarray, np.ndarray]:
    """A pairing the goldens never scored: case A's frames reversed, against case B's audio from 3000 on."""
    frames = load_xz(golden(CASES[0], "inputs.safetensors.xz"))["frames_bgr"]
    audio = load_xz(golden(CASES[1], "inputs.safetensors.xz"))["audio_int16"]
    return np.ascontiguousarray(frames[::-1][:41]), np.ascontiguousarray(audio[3000:])


def test_unseen_input_matches_a_per_window_restatement(unseen: tuple[np.ndarray, np.ndarray], model: SyncNet) -> None:
    frames, audio = unseen
    got = sync_scores(frames, audio, model)
    offset, lse_d, lse_c, dists = reference_scores(frames, audio, model)
    assert got.windows == 36
    assert got.av_offset == offset
    assert max_abs(got.dists, dists) < ATOL
    assert abs(got.lse_d - lse_d) < ATOL and abs(got.lse_c - lse_c) < ATOL
    again = sync_scores(frames, audio, model)
    assert (again.av_offset, again.lse_d, again.lse_c) == (got.av_offset, got.lse_d, got.lse_c)  # deterministic
    np.testing.assert_array_equal(again.dists, got.dists)


@pytest.mark.parametrize("length", [1, 399, 400, 401, 561, 16_000, 32_123])
def test_mfcc_matches_python_speech_features_on_new_audio(length: int) -> None:
    psf = pytest.importorskip("python_speech_features", reason="python_speech_features (dev extra) not installed")
    rng = np.random.default_rng(length)
    audio = (rng.standard_normal(length) * 4000).clip(-32768, 32767).astype(np.int16)
    if length > 1000:
        audio[200:900] = 0  # silence: the zero-energy guard
    got = mfcc(audio)
    assert got.shape == (mfcc_frame_count(length), 13)
    np.testing.assert_allclose(got, psf.mfcc(audio, 16000), rtol=1e-6, atol=1e-9)


def test_offset_sign_and_scores_on_constructed_distances() -> None:
    """Audio window i + 3 matching video window i gives av_offset -3 (README: positive means audio earlier)."""
    means = np.full(31, 10.0, dtype=np.float32)
    means[15 + 3] = 4.0
    means[:5] = [9.0, 8.0, 7.0, 6.0, 5.0]
    index, lse_d, lse_c = offset_scores(means)
    assert (15 - index, lse_d, lse_c) == (-3, 4.0, 6.0)
    assert offset_scores(np.array([2.0, 1.0, 1.0, 3.0], dtype=np.float32))[0] == 1  # first index on ties
    assert offset_scores(np.array([2.0, 1.0, 4.0, 3.0], dtype=np.float32)) == (1, 1.0, 1.0)  # lower middle median


def test_one_window_is_the_minimum_and_less_is_refused(model: SyncNet) -> None:
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, (6, 224, 224, 3), dtype=np.uint8)
    audio = (rng.standard_normal(6 * 640) * 3000).astype(np.int16)
    scores = sync_scores(frames, audio, model)
    assert scores.windows == 1 and scores.min_length == 6 and scores.dists.shape == (1, 31)
    assert np.isfinite(scores.lse_d) and scores.lse_c >= 0
    with pytest.raises(AudioTooShort, match="needs at least 6"):
        sync_scores(frames[:5], audio, model)
    with pytest.raises(AudioTooShort, match="0.240 s of audio give 5 frames"):
        sync_scores(frames, audio[: 6 * 640 - 1], model)


def test_wrong_arrays_are_refused_before_any_work(model: SyncNet) -> None:
    audio = np.zeros(16_000, np.int16)
    with pytest.raises(ValueError, match="uint8"):
        sync_scores(np.zeros((10, 224, 224, 3), np.float32), audio, model)
    with pytest.raises(ValueError, match=r"\[T, 224, 224, 3\]"):
        sync_scores(np.zeros((10, 112, 112, 3), np.uint8), audio, model)
    with pytest.raises(ValueError, match="int16 mono"):
        sync_scores(np.zeros((10, 224, 224, 3), np.uint8), audio.astype(np.float32), model)
