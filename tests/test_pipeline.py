"""The local pipeline: parity with the official run in ``pipeline_tiny/``, the rules it follows (looping, audio
windows, DeepCache schedule), seed reproducibility, and that the streaming path computes exactly what the
in-memory one does.

Tiny random models keep this fast: the goldens' own models for parity, and the same-shape ones of
``latentsync_routes.testing.tiny_local`` for the properties (those tests need no goldens).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from safetensors.torch import load_file

from latentsync_routes.local import pipeline as P
from latentsync_routes.local import sampler as S
from latentsync_routes.local.align import FaceAligner
from latentsync_routes.local.audio import WhisperFeatures, load_audio
from latentsync_routes.local.errors import MissingFace
from latentsync_routes.local.unet import LatentSyncUNet
from latentsync_routes.local.unet_config import as_unet_config
from latentsync_routes.testing.tiny_local import tiny_mask, tiny_unet, tiny_vae, tiny_whisper, write_speechy_wav
from tests.conftest import goldens_path
from tests.local_fixtures import anchors_for, astronaut_frames, write_lossless

torch.set_num_threads(2)

# --------------------------------------------------------------------------------------------- tiny models


@pytest.fixture(scope="module")
def small() -> dict[str, Any]:
    """Tiny models at a 64 px face (8x8 latents): fast enough to run the whole pipeline several times."""
    return {"unet": tiny_unet(), "vae": tiny_vae(), "whisper": tiny_whisper(), "mask": tiny_mask(64), "resolution": 64}


def test_tiny_unet_has_the_goldens_pipeline_tiny_shape() -> None:
    # tiny_unet writes its config out (it ships to users, who have no goldens); this keeps it the goldens' one.
    config = json.loads(goldens_path("pipeline_tiny", "unet_config.json").read_text())
    assert tiny_unet().config == as_unet_config(config)


# --------------------------------------------------------------------------------------------- rules


def test_loop_indices_follow_the_official_loop_video() -> None:
    schedule = json.loads(goldens_path("schedule.json").read_text())
    for case in schedule["loop_video"].values():
        got = P.loop_indices(case["num_video_frames"], case["num_audio_chunks"], "pingpong")
        assert got.tolist() == case["frame_indices"]
    meta = json.loads(goldens_path("pipeline_tiny", "meta.json").read_text())
    assert P.loop_indices(12, 28).tolist() == meta["loop"]["loop_index"]
    assert P.loop_indices(3, 7, "loop").tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_deepcache_full_steps_match_the_recorded_schedule() -> None:
    deepcache = json.loads(goldens_path("schedule.json").read_text())["deepcache"]
    steps = deepcache["num_inference_steps"]
    assert P.deepcache_full_steps(steps, deepcache["set_params"]["cache_interval"]) == deepcache["full_step_indices"]
    timesteps = P.ChunkSampler(
        unet=tiny_unet(), vae=tiny_vae(), mask=tiny_mask(64), resolution=64, num_inference_steps=steps
    ).timesteps
    assert [timesteps[i] for i in deepcache["full_step_indices"]] == deepcache["full_step_timesteps"]


def test_audio_windows_equal_whisper_chunks_chunk_by_chunk() -> None:
    feats = torch.randn(52, 5, 8)
    whole = WhisperFeatures.chunks(feats)
    parts = [P.audio_windows(feats, s, min(16, whole.shape[0] - s)) for s in range(0, whole.shape[0], 16)]
    assert torch.equal(torch.cat(parts), whole)


# --------------------------------------------------------------------------------------------- parity


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    root = goldens_path("pipeline_tiny")
    unet = LatentSyncUNet.from_config(json.loads((root / "unet_config.json").read_text()))
    unet.load_state_dict(load_file(str(root / "unet.safetensors")), strict=True)
    vae = AutoencoderKL.from_config(json.loads((root / "vae_config.json").read_text()))
    vae.load_state_dict(load_file(str(root / "vae.safetensors")), strict=True)
    whisper = WhisperFeatures.from_state_dict(
        load_file(str(root / "whisper_encoder.safetensors")), json.loads((root / "whisper_dims.json").read_text())
    )
    meta = json.loads((root / "meta.json").read_text())
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "whisper": whisper,
        "mask": load_file(str(goldens_path("align", "mask_256.safetensors")))["mask_u8"].numpy(),
        "inputs": load_file(str(root / "inputs.safetensors")),
        "noise": {k: v.float() for k, v in load_file(str(root / "noise.safetensors")).items()},
        "expected": load_file(str(root / "expected.safetensors")),
        "meta": meta,
        "samples": load_audio(root / "audio.wav"),
    }


@pytest.fixture(scope="module")
def run(golden: dict[str, Any]) -> dict[str, Any]:
    """The whole pipeline once, with the recorded noise injected, keeping chunk 0 frame 0 after each step."""
    noise, settings = golden["noise"], golden["meta"]["settings"]
    steps: dict[int, torch.Tensor] = {}

    def keep(chunk: int, step: int, latents: torch.Tensor) -> None:
        if chunk == 0:
            steps[step] = latents[0, :, 0].clone()

    out = P.sync_frames(
        golden["inputs"]["frames"].numpy(), golden["inputs"]["points"].numpy(), golden["samples"],
        unet=golden["unet"], vae=golden["vae"], whisper=golden["whisper"], mask=golden["mask"],
        resolution=settings["height"], num_inference_steps=settings["num_inference_steps"],
        guidance_scale=settings["guidance_scale"], init_noise=noise["init_noise"],
        posterior_noise=[(noise[f"chunk{k}.masked_noise"], noise[f"chunk{k}.ref_noise"]) for k in (0, 1)],
        step_callback=keep,
    )  # fmt: skip
    return {"out": out, "steps": torch.stack([steps[i] for i in sorted(steps)])}


@pytest.fixture(scope="module")
def tier(golden: dict[str, Any]) -> str:
    """'A' when our 12 aligned faces are byte-identical to the official ones, else 'B' (README §7)."""
    aligner = FaceAligner(256)
    frames, points = golden["inputs"]["frames"].numpy(), golden["inputs"]["points"].numpy()
    hashes = [hashlib.sha256(aligner.align(f, p)[0].tobytes()).hexdigest() for f, p in zip(frames, points, strict=True)]
    return "A" if hashes == golden["meta"]["aligned_face_sha256_chw_uint8"] else "B"


TOL = {
    "A": {"frame0": 1e-4, "latents_max": 2e-3, "latents_mean": 2e-3, "synced_max": 5e-4, "synced_mean": 5e-4, "lsb": 1},
    "B": {"frame0": 2e-2, "latents_max": 0.1, "latents_mean": 5e-3, "synced_max": 5e-2, "synced_mean": 5e-4, "lsb": 2},
}


def test_output_length_loop_and_timesteps(golden: dict[str, Any], run: dict[str, Any]) -> None:
    out, meta = run["out"], golden["meta"]
    assert out.frames.shape == (meta["num_output_frames"], 128, 160, 3) and out.frames.dtype == np.uint8
    assert out.loop_index.tolist() == golden["expected"]["loop_index"].tolist()
    assert out.timesteps == golden["expected"]["timesteps"].tolist() == meta["timesteps"]
    assert [tuple(lat.shape) for lat in out.latents] == [(1, 4, 16, 32, 32), (1, 4, 12, 32, 32)]
    assert out.synced_faces.shape == (28, 3, 256, 256) and out.has_face.all()


def test_mask_latent_is_exact(golden: dict[str, Any]) -> None:
    sampler = P.ChunkSampler(unet=golden["unet"], vae=golden["vae"], mask=golden["mask"], num_inference_steps=3)
    assert torch.equal(sampler.mask_latent[0], golden["expected"]["mask_latent"])


def test_vae_encoder_in_isolation(golden: dict[str, Any]) -> None:
    # README "isolation tests": the official aligned face 0 with its noise gives the frame-0 latents.
    sampler = P.ChunkSampler(unet=golden["unet"], vae=golden["vae"], mask=golden["mask"], num_inference_steps=3)
    noise, expected = golden["noise"], golden["expected"]
    _, masked, ref = sampler.encode(expected["faces"], noise["chunk0.masked_noise"][:1], noise["chunk0.ref_noise"][:1])
    assert (masked[0] - expected["chunk0.masked_latents_frame0"]).abs().max() <= 1e-4
    assert (ref[0] - expected["chunk0.ref_latents_frame0"]).abs().max() <= 1e-4


def test_vae_decoder_and_paste_in_isolation(golden: dict[str, Any]) -> None:
    sampler = P.ChunkSampler(unet=golden["unet"], vae=golden["vae"], mask=golden["mask"], num_inference_steps=3)
    expected = golden["expected"]
    pixels = (expected["faces"].float() / 255.0 - 0.5) / 0.5
    synced = sampler.decode(expected["chunk0.latents"][:, :, :1], pixels)
    rows, cols = torch.arange(96, 255, 2), torch.arange(0, 255, 2)
    assert (synced[0][:, rows][:, :, cols] - expected["synced_faces"][0]).abs().max() <= 5e-4
    # Output frame 27 is chunk 1's frame 11: its regenerated (mask 0) region depends only on the decoder.
    last = sampler.decode(expected["chunk1.latents"][:, :, 11:12], torch.zeros(1, 3, 256, 256))[0][:, rows][:, :, cols]
    model_region = torch.from_numpy(golden["mask"][rows][:, cols] == 0)
    assert (last - expected["synced_faces"][1]).abs()[:, model_region].max() <= 5e-4


def test_whisper_features(golden: dict[str, Any]) -> None:
    feats = golden["whisper"].features(golden["samples"])
    assert (feats - golden["expected"]["whisper_feature"]).abs().max() <= 1e-4


def test_final_and_step_latents(golden: dict[str, Any], run: dict[str, Any], tier: str) -> None:
    tol = TOL[tier]
    for k, latents in enumerate(run["out"].latents):
        diff = (latents - golden["expected"][f"chunk{k}.latents"]).abs()
        assert diff.max() <= tol["latents_max"] and diff.mean() <= tol["latents_mean"], (k, tier, diff.max())
    step_diff = (run["steps"] - golden["expected"]["chunk0.step_latents_frame0"]).abs()
    assert step_diff.max() <= tol["latents_max"]


def test_synced_faces(golden: dict[str, Any], run: dict[str, Any], tier: str) -> None:
    rows, cols = torch.arange(96, 255, 2), torch.arange(0, 255, 2)
    got = run["out"].synced_faces[[0, 27]][:, :, rows][:, :, :, cols]
    diff = (got - golden["expected"]["synced_faces"]).abs()
    assert diff.max() <= TOL[tier]["synced_max"] and diff.mean() <= TOL[tier]["synced_mean"], (tier, diff.max())


def test_restored_frames(golden: dict[str, Any], run: dict[str, Any], tier: str) -> None:
    y0, y1, x0, x1 = 20, 113, 44, 118
    frames = run["out"].frames
    got = frames[[0, 11, 12, 23, 24, 27], y0:y1, x0:x1].astype(np.int16)
    diff = np.abs(got - golden["expected"]["restored"].numpy().astype(np.int16))
    assert diff.max() <= TOL[tier]["lsb"] and (diff > 0).mean() <= 0.05
    # Outside the restore box every output frame is its source frame, untouched.
    source = golden["inputs"]["frames"].numpy()[run["out"].loop_index]
    outside = np.ones(frames.shape[1:3], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(frames[:, outside], source[:, outside])


# --------------------------------------------------------------------------------------------- properties


def small_run(small: dict[str, Any], frames: np.ndarray, points: np.ndarray, samples: np.ndarray, **kw: Any) -> Any:
    options = {"num_inference_steps": 2, "guidance_scale": 1.5, **kw}
    return P.sync_frames(
        frames,
        points,
        samples,
        unet=small["unet"],
        vae=small["vae"],
        whisper=small["whisper"],
        mask=small["mask"],
        resolution=small["resolution"],
        **options,
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """10 video frames and 0.9 s of audio (24 output frames: ping-pong, two chunks of 16 and 8)."""
    folder = tmp_path_factory.mktemp("clip")
    frames = astronaut_frames(10)
    wav = write_speechy_wav(folder / "voice.wav", 0.9)
    return {"frames": frames, "points": anchors_for(10), "samples": load_audio(wav), "wav": wav,
            "video": write_lossless(folder / "video.mkv", frames)}  # fmt: skip


def test_a_seed_reproduces_the_run_and_draws_in_the_official_order(small: dict[str, Any], clip: dict[str, Any]) -> None:
    args = (clip["frames"], clip["points"], clip["samples"])
    first = small_run(small, *args, generator=torch.Generator().manual_seed(7))
    again = small_run(small, *args, generator=torch.Generator().manual_seed(7))
    other = small_run(small, *args, generator=torch.Generator().manual_seed(8))
    assert first.frames.shape[0] == 24
    assert np.array_equal(first.frames, again.frames)
    assert all(torch.equal(a, b) for a, b in zip(first.latents, again.latents, strict=True))
    assert not torch.equal(first.latents[0], other.latents[0])
    # The same numbers, drawn by hand in the official order and injected, give the same result.
    gen, h = torch.Generator().manual_seed(7), small["resolution"] // 8
    init = torch.randn((1, 4, 1, h, h), generator=gen)
    pairs = [tuple(torch.randn((f, 4, h, h), generator=gen) for _ in range(2)) for f in (16, 8)]
    injected = small_run(small, *args, init_noise=init, posterior_noise=pairs)
    assert np.array_equal(injected.frames, first.frames)


def test_deepcache_runs_seven_full_passes_per_chunk(small: dict[str, Any]) -> None:
    sampler = P.ChunkSampler(unet=small["unet"], vae=small["vae"], mask=small["mask"], resolution=64,
                             num_inference_steps=20, deepcache=True)  # fmt: skip
    f, h = 5, 8
    latents, audio = torch.randn(1, 4, f, h, h), torch.randn(f, 50, 64)
    masked, ref = torch.randn(f, 4, h, h), torch.randn(f, 4, h, h)
    calls: list[int] = []
    handle = small["unet"].mid_block.register_forward_hook(lambda *a: calls.append(1))
    try:
        for _ in range(2):  # every chunk restarts at a full step
            sampler.denoise(latents, masked, ref, audio)
    finally:
        handle.remove()
    assert len(calls) == sampler.full_passes == 2 * len(P.deepcache_full_steps(20)) == 14


def test_step_cache_shallow_path_reproduces_a_full_pass(small: dict[str, Any]) -> None:
    cache = S._StepCache(small["unet"], S.DEEPCACHE_INTERVAL)
    sample, audio = torch.randn(2, 13, 4, 8, 8), torch.randn(8, 50, 64)
    t = torch.tensor(501)
    with torch.inference_mode():
        full = cache(sample, t, audio, step=0)
        shallow = cache.shallow(sample, t, audio)
        later = cache(sample, torch.tensor(451), audio, step=1)  # a cached step differs from a full one only deep
        fresh = small["unet"](sample, torch.tensor(451), audio)
    torch.testing.assert_close(shallow, full, rtol=0, atol=1e-5)
    assert not torch.equal(later, fresh)


def test_deepcache_with_interval_one_is_the_plain_loop(small: dict[str, Any], clip: dict[str, Any]) -> None:
    args = (clip["frames"][:4], clip["points"][:4], clip["samples"][:4000])
    plain = small_run(small, *args, generator=torch.Generator().manual_seed(3))
    cached = small_run(small, *args, generator=torch.Generator().manual_seed(3), deepcache=True, deepcache_interval=1)
    assert np.array_equal(plain.frames, cached.frames)


class RecordingWriter:
    """Stands in for VideoWriter: keeps the frames the pipeline would encode."""

    frames: list[np.ndarray] = []

    def __init__(self, path: Any, **_: Any) -> None:
        RecordingWriter.frames = []
        self.frames_written = 0

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def write_chunk(self, frames: Any) -> None:
        for frame in frames:
            RecordingWriter.frames.append(np.array(frame))
            self.frames_written += 1


def lookup_detector(points: np.ndarray, missing: set[int]) -> Any:
    """Returns the known anchors of the k-th frame it is asked about (None for ``missing``)."""
    calls = {"n": 0}

    def detect(frame: np.ndarray) -> np.ndarray | None:
        k = calls["n"]
        calls["n"] += 1
        return None if k in missing else points[k]

    return detect


def test_streaming_runs_the_same_chunks_as_in_memory(
    small: dict[str, Any], clip: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from latentsync_routes.local import video

    monkeypatch.setattr(video, "VideoWriter", RecordingWriter)
    points = clip["points"].copy()
    points[3] = np.nan  # frame 3 has no face: it passes through in both paths
    expected = small_run(small, clip["frames"], points, clip["samples"], on_missing_face="passthrough",
                         generator=torch.Generator().manual_seed(5))  # fmt: skip
    reported: list[tuple[str, float | None]] = []
    stats = P.sync_video(
        clip["video"], clip["wav"], tmp_path / "out.mp4", unet=small["unet"], vae=small["vae"],
        whisper=small["whisper"], mask=small["mask"], detector=lookup_detector(clip["points"], {3}), resolution=64,
        num_inference_steps=2, generator=torch.Generator().manual_seed(5), on_missing_face="passthrough",
        progress=lambda message, fraction: reported.append((message, fraction)),
    )  # fmt: skip
    streamed = np.stack(RecordingWriter.frames)
    assert stats.frames_written == 24 and stats.video_frames == 10 and stats.missing_faces == [3]
    assert np.array_equal(streamed, expected.frames)
    for n in np.flatnonzero(expected.loop_index == 3):  # every output frame showing video frame 3 is untouched
        assert np.array_equal(streamed[n], clip["frames"][3])
    chunk_reports = [f for m, f in reported if m.startswith("chunk")]
    assert len(chunk_reports) == 2 and chunk_reports[-1] == pytest.approx(1.0)
    assert not list(tmp_path.iterdir())  # the writer was replaced; nothing else was left behind


def test_missing_face_error_names_the_frame_before_any_model_work(
    small: dict[str, Any], clip: dict[str, Any], tmp_path: Path
) -> None:
    calls: list[int] = []
    handle = small["unet"].register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(MissingFace, match=r"frame 6 \(t = 0\.24 s"):
            P.sync_video(
                clip["video"], clip["wav"], tmp_path / "out.mp4", unet=small["unet"], vae=small["vae"],
                whisper=small["whisper"], mask=small["mask"], detector=lookup_detector(clip["points"], {6}),
                resolution=64, num_inference_steps=2,
            )  # fmt: skip
        with pytest.raises(MissingFace, match="frame 2"):
            points = clip["points"].copy()
            points[2] = np.nan
            small_run(small, clip["frames"], points, clip["samples"])
    finally:
        handle.remove()
    assert not calls and not (tmp_path / "out.mp4").exists()
