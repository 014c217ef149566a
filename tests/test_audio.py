"""Whisper features: parity with the official LatentSync audio path (goldens) and the frame-count rule."""

from __future__ import annotations

import dataclasses
import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from latentsync_routes.local.audio import (
    TINY_DIMS,
    WhisperDims,
    WhisperFeatures,
    chunk_count,
    feature_row_count,
    frame_count,
    load_audio,
    log_mel_spectrogram,
    mel_frame_count,
    slaney_mel_filterbank,
)
from tests.conftest import goldens_path

TOL = 1e-4


def _read_wav_int16(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() == 16_000
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


@pytest.fixture(scope="module")
def golden() -> dict[str, object]:
    root = goldens_path("whisper_small_dims")
    return {
        "root": root,
        "expected": load_file(str(root / "expected.safetensors")),
        "encoder": load_file(str(root / "encoder.safetensors")),
        "dims": json.loads((root / "dims.json").read_text()),
        "meta": json.loads((root / "meta.json").read_text()),
    }


@pytest.fixture(scope="module")
def model(golden: dict) -> WhisperFeatures:
    return WhisperFeatures.from_state_dict(golden["encoder"], golden["dims"])


@pytest.fixture(scope="module")
def samples(golden: dict) -> np.ndarray:
    return load_audio(golden["root"] / "audio.wav")


@pytest.fixture(scope="module")
def features(model: WhisperFeatures, samples: np.ndarray) -> torch.Tensor:
    return model.features(samples)


# ---- loading ---------------------------------------------------------------------------------------------


def test_load_audio_matches_int16_over_32768(golden: dict, samples: np.ndarray) -> None:
    # The goldens record that the official ffmpeg loader equals int16 / 32768 exactly for this file.
    assert golden["meta"]["official_loader_equals_int16_div_32768"]
    ref = _read_wav_int16(golden["root"] / "audio.wav").astype(np.float32) / 32768.0
    assert samples.dtype == np.float32
    assert samples.shape == (golden["meta"]["num_samples"],)
    np.testing.assert_array_equal(samples, ref)


def test_load_audio_resamples_and_downmixes(tmp_path: Path) -> None:
    rate, seconds, tone = 44_100, 0.5, 440.0
    t = np.arange(int(rate * seconds)) / rate
    left = (0.4 * np.sin(2 * np.pi * tone * t) * 32767).astype("<i2")
    stereo = np.stack([left, left], axis=1).reshape(-1)
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(stereo.tobytes())
    mono = load_audio(path)
    assert mono.dtype == np.float32 and mono.ndim == 1
    assert abs(mono.shape[0] - 8000) <= 64
    spectrum = np.abs(np.fft.rfft(mono[1000:7000]))
    peak_hz = np.argmax(spectrum) * 16_000 / 6000
    assert abs(peak_hz - tone) < 5
    assert 0.3 < np.abs(mono[1000:7000]).max() < 0.5


# ---- log-mel ---------------------------------------------------------------------------------------------


def test_mel_filterbank_shape_and_normalisation() -> None:
    fb = slaney_mel_filterbank()
    assert fb.shape == (80, 201) and fb.dtype == np.float32
    assert (fb >= 0).all()
    assert (fb.max(axis=1) > 0).all()  # no empty band at 16 kHz / 400-point FFT
    # Area normalisation: higher (wider) bands have lower peaks.
    assert fb[-1].max() < fb[10].max()


def test_log_mel_matches_goldens(golden: dict, model: WhisperFeatures, samples: np.ndarray) -> None:
    exp = golden["expected"]
    mel = model.log_mel(samples)
    assert tuple(mel.shape) == tuple(golden["meta"]["log_mel_full_shape"])
    assert mel.dtype == torch.float32
    cols = exp["log_mel_cols"]
    diff = (mel[:, cols] - exp["log_mel"]).abs().max().item()
    assert diff <= TOL, diff
    assert abs(mel.max().item() - golden["meta"]["log_mel_global_max"]) <= TOL
    # Floor = whole-file max - 8 in log10 units, i.e. 2.0 below the max after (x + 4) / 4.
    assert abs((mel.max() - mel.min()).item() - 2.0) <= TOL


def test_log_mel_accepts_tensors_and_rejects_bad_input(samples: np.ndarray) -> None:
    a = log_mel_spectrogram(samples[:16_000])
    b = log_mel_spectrogram(torch.from_numpy(samples[:16_000].copy()))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="too short"):
        log_mel_spectrogram(np.zeros(150, dtype=np.float32))
    with pytest.raises(ValueError, match="mono"):
        log_mel_spectrogram(np.zeros((2, 16_000), dtype=np.float32))


# ---- encoder features --------------------------------------------------------------------------------------


def test_features_match_goldens(golden: dict, features: torch.Tensor) -> None:
    exp = golden["expected"]
    assert tuple(features.shape) == tuple(golden["meta"]["whisper_feature_full_shape"])
    rows = exp["whisper_feature_rows"]
    diff = (features[rows] - exp["whisper_feature"]).abs().max().item()
    assert diff <= TOL, diff


@pytest.mark.parametrize("name", ["first3", "mid3", "last3"])
def test_chunks_match_goldens(golden: dict, features: torch.Tensor, name: str) -> None:
    chunks = WhisperFeatures.chunks(features, fps=25)
    assert chunks.shape == (golden["meta"]["num_chunks"], 50, 64)
    index = golden["meta"]["chunk_indices"][name]
    diff = (chunks[index] - golden["expected"][f"chunks_{name}"]).abs().max().item()
    assert diff <= TOL, diff


def test_chunk_rows_follow_the_clamped_window(golden: dict) -> None:
    meta = golden["meta"]
    length = meta["L"]
    # A stack whose every value is its row number exposes which rows each chunk took, and in which order.
    ramp = torch.arange(length, dtype=torch.float32)[:, None, None].expand(length, 5, 3)
    chunks = WhisperFeatures.chunks(ramp)
    for name, index in meta["chunk_indices"].items():
        for frame, source_rows in zip(index, meta["chunk_source_rows"][name], strict=True):
            taken = chunks[frame, :, 0].reshape(10, 5)
            assert (taken == taken[:, :1]).all()  # all 5 layers of a row are adjacent (row-major)
            assert taken[:, 0].long().tolist() == source_rows


def test_window_batching_does_not_change_features(model: WhisperFeatures, samples: np.ndarray) -> None:
    clip = samples[: 16_000 * 31]  # two windows: a full one and a 1 s tail
    one = model.features(clip, windows_per_batch=1)
    two = model.features(clip, windows_per_batch=2)
    assert one.shape == (feature_row_count(clip.shape[0]), 5, 64)
    torch.testing.assert_close(one, two, rtol=0, atol=1e-5)


# ---- frame counts ----------------------------------------------------------------------------------------


def test_frame_count_of_goldens(golden: dict) -> None:
    meta = golden["meta"]
    n = meta["num_samples"]
    assert mel_frame_count(n) == meta["mel_frames"]
    assert feature_row_count(n) == meta["L"] == sum(w[2] for w in meta["windows_[start,end,kept_rows]"])
    assert frame_count(n) == WhisperFeatures.frame_count(n) == meta["num_chunks"]


@pytest.mark.parametrize("num_samples", [201, 16_000, 16_640, 160_000, 479_999, 480_000, 480_160, 1_000_003])
def test_frame_count_rule(num_samples: int) -> None:
    rows = feature_row_count(num_samples)
    assert rows == (num_samples // 160) // 2
    assert frame_count(num_samples) == rows // 2 + 2
    assert chunk_count(rows, fps=25) == rows // 2 + 2


def test_frame_count_examples() -> None:
    assert frame_count(16_000 * 10) == 252  # 10 s: L = 500
    assert frame_count(16_640) == 28  # 1.04 s: L = 52 (the pipeline_tiny golden)
    with pytest.raises(ValueError):
        chunk_count(10, fps=0)


def test_chunks_count_matches_rule_for_small_stacks() -> None:
    for length in (1, 2, 3, 7, 50):
        feats = torch.zeros(length, 5, 8)
        assert WhisperFeatures.chunks(feats).shape == (length // 2 + 2, 50, 8)
    with pytest.raises(ValueError):
        WhisperFeatures.chunks(torch.zeros(0, 5, 8))


# ---- construction ------------------------------------------------------------------------------------------


def test_state_dict_prefix_and_decoder_keys_are_handled(golden: dict, model: WhisperFeatures) -> None:
    prefixed = {f"encoder.{k}": v for k, v in golden["encoder"].items()}
    prefixed["decoder.token_embedding.weight"] = torch.zeros(4, 4)
    other = WhisperFeatures.from_state_dict(prefixed, golden["dims"])
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert all(p.dtype == torch.float32 for p in other.parameters())


def test_state_dict_must_match_strictly(golden: dict) -> None:
    partial = dict(golden["encoder"])
    partial.pop("blocks.3.mlp.2.weight")
    with pytest.raises(ValueError, match="missing"):
        WhisperFeatures.from_state_dict(partial, golden["dims"])
    with pytest.raises(ValueError, match="unexpected"):
        WhisperFeatures.from_state_dict({**golden["encoder"], "extra.weight": torch.zeros(1)}, golden["dims"])
    with pytest.raises(ValueError, match="n_audio_ctx"):
        WhisperFeatures({**golden["dims"], "n_audio_ctx": 1000})


def test_from_checkpoint_reads_openai_layout(tmp_path: Path, golden: dict, model: WhisperFeatures) -> None:
    state = {f"encoder.{k}": v.half() if v.is_floating_point() else v for k, v in golden["encoder"].items()}
    state["encoder.positional_embedding"] = golden["encoder"]["positional_embedding"]
    state["decoder.ln.weight"] = torch.ones(64, dtype=torch.float16)
    path = tmp_path / "tiny.pt"
    torch.save({"dims": dict(golden["dims"]), "model_state_dict": state}, path)
    loaded = WhisperFeatures.from_checkpoint(path)
    assert loaded.dims == WhisperDims.from_mapping(golden["dims"])
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    bad = tmp_path / "bad.pt"
    torch.save({"weights": {}}, bad)
    with pytest.raises(ValueError, match="openai-whisper checkpoint"):
        WhisperFeatures.from_checkpoint(bad)


def test_positional_embedding_buffer_is_the_sinusoid_table(golden: dict) -> None:
    fresh = WhisperFeatures(golden["dims"])
    torch.testing.assert_close(fresh.positional_embedding, golden["encoder"]["positional_embedding"], rtol=0, atol=1e-5)


def test_short_single_window_clip_matches_pipeline_goldens() -> None:
    # A 1.04 s clip: one window that is >96% zero padding, so the padding rule dominates the result.
    root = goldens_path("pipeline_tiny")
    encoder = load_file(str(root / "whisper_encoder.safetensors"))
    dims = json.loads((root / "whisper_dims.json").read_text())
    expected = load_file(str(root / "expected.safetensors"))["whisper_feature"]
    clip = load_audio(root / "audio.wav")
    feats = WhisperFeatures.from_state_dict(encoder, dims).features(clip)
    assert feats.shape == expected.shape == (feature_row_count(clip.shape[0]), 5, 64)
    assert (feats - expected).abs().max().item() <= TOL
    assert WhisperFeatures.chunks(feats).shape[0] == frame_count(clip.shape[0]) == 28


def test_tiny_dims_give_latentsync_token_shapes(tmp_path: Path) -> None:
    # Real LatentSync runs whisper tiny (384 wide, 6 heads, 4 blocks): each frame gets a (50, 384) matrix.
    torch.manual_seed(0)
    donor = WhisperFeatures(TINY_DIMS)
    state = {f"encoder.{k}": v.half() for k, v in donor.state_dict().items()}
    dims = {**dataclasses.asdict(TINY_DIMS), "n_vocab": 51865, "n_text_ctx": 448}
    torch.save({"dims": dims, "model_state_dict": state}, tmp_path / "tiny.pt")
    model = WhisperFeatures.from_checkpoint(tmp_path / "tiny.pt")
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 32_000).astype(np.float32)
    feats = model.features(noise)
    assert feats.shape == (100, 5, 384)
    assert WhisperFeatures.chunks(feats).shape == (52, 50, 384)
