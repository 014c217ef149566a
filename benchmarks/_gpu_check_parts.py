"""The three measured parts of ``gpu_check.py``: parity, speed, memory (run ``gpu_check.py``, not this)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _gpu_check_setup import CHUNK, FPS, VERSIONS, Budget, PeakMemory, Setup, cast, errors, exact_fp32, pick_dtypes

from latentsync_routes.local import runtime
from latentsync_routes.local.align import FaceAligner
from latentsync_routes.local.audio import chunk_count
from latentsync_routes.local.pipeline import audio_windows, loop_indices, sync_frames
from latentsync_routes.local.sampler import LATENT_CHANNELS, ChunkSampler, Noise, sync_chunk

#: Input frames of the memory runs: small, since only the CPU's align and restore work grows with them.
MEMORY_FRAME_HW = (96, 128)
GUIDANCE = 1.5  # the official default (inference.sh, the Gradio app), with DeepCache on and 20 steps

# --------------------------------------------------------------------------------------------- parity


def _golden_unet(goldens: Path, setup: Setup, dtypes: list[str]) -> dict[str, Any]:
    from safetensors.torch import load_file

    from latentsync_routes.local.unet import LatentSyncUNet

    root = goldens / "unet_tiny"
    model = LatentSyncUNet.from_config(json.loads((root / "config.json").read_text()))
    model.load_state_dict(load_file(str(root / "weights.safetensors")), strict=True)
    model = model.eval().to(setup.device)
    cases = load_file(str(root / "cases.safetensors"))
    out: dict[str, Any] = {}
    for dtype in dtypes:
        net, worst = cast(model, dtype), {"max_abs": 0.0, "mean_abs": 0.0, "max_rel": 0.0, "finite": True}
        for case in ("case1", "case2", "case3"):
            kind = getattr(torch, dtype)
            sample = cases[f"{case}.sample"].to(setup.device, kind)
            ehs = cases[f"{case}.encoder_hidden_states"].float().to(setup.device, kind)
            with torch.inference_mode(), exact_fp32(setup):
                got = net(sample, cases[f"{case}.timestep"], ehs)
            found = errors(got, cases[f"{case}.output"])
            worst = {k: max(worst[k], v) if k != "finite" else worst[k] and v for k, v in found.items()}
        out[dtype] = worst
    return out


def _wav(path: Path) -> np.ndarray:
    """16-bit mono PCM as float32 ``int16 / 32768`` (the official loader's exact result for the goldens' files),
    read with the standard library: PyAV is not on the GPU machine."""
    import wave

    with wave.open(str(path)) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def _golden_chunk(goldens: Path, setup: Setup, dtypes: list[str]) -> dict[str, Any]:
    """The goldens' whole pipeline_tiny run (3 DDIM steps, no cache) on the device; chunk 0's final latents."""
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from safetensors.torch import load_file

    from latentsync_routes.local.audio import WhisperFeatures
    from latentsync_routes.local.unet import LatentSyncUNet

    root = goldens / "pipeline_tiny"
    unet = LatentSyncUNet.from_config(json.loads((root / "unet_config.json").read_text()))
    unet.load_state_dict(load_file(str(root / "unet.safetensors")), strict=True)
    vae = AutoencoderKL.from_config(json.loads((root / "vae_config.json").read_text()))
    vae.load_state_dict(load_file(str(root / "vae.safetensors")), strict=True)
    whisper = WhisperFeatures.from_state_dict(
        load_file(str(root / "whisper_encoder.safetensors")), json.loads((root / "whisper_dims.json").read_text())
    ).to(setup.device)
    inputs, meta = load_file(str(root / "inputs.safetensors")), json.loads((root / "meta.json").read_text())
    noise = {k: v.float() for k, v in load_file(str(root / "noise.safetensors")).items()}
    expected = load_file(str(root / "expected.safetensors"))["chunk0.latents"]
    mask = load_file(str(goldens / "align" / "mask_256.safetensors"))["mask_u8"].numpy()
    out: dict[str, Any] = {}
    for dtype in dtypes:
        net = cast(unet.eval().to(setup.device), dtype)
        decoder = cast(vae.eval().to(setup.device), "float32" if dtype == "bfloat16" and not setup.is_cuda else dtype)
        with exact_fp32(setup):
            result = sync_frames(
                inputs["frames"].numpy(), inputs["points"].numpy(), _wav(root / "audio.wav"), unet=net,
                vae=decoder, whisper=whisper, mask=mask, resolution=meta["settings"]["height"],
                num_inference_steps=meta["settings"]["num_inference_steps"],
                guidance_scale=meta["settings"]["guidance_scale"], init_noise=noise["init_noise"],
                posterior_noise=[(noise[f"chunk{k}.masked_noise"], noise[f"chunk{k}.ref_noise"]) for k in (0, 1)],
            )  # fmt: skip
        assert result.latents[0] is not None
        out[dtype] = errors(result.latents[0], expected)
    return out


def _random_inputs(setup: Setup, version: str) -> dict[str, torch.Tensor]:
    lat = setup.resolution[version] // 8
    gen = torch.Generator().manual_seed(7)
    audio = torch.randn(CHUNK, 50, setup.audio_dim(), generator=gen)
    return {
        "sample": torch.randn(2, 13, CHUNK, lat, lat, generator=gen),
        "audio_cfg": torch.cat([torch.zeros_like(audio), audio]),
        "audio": audio,
        "latents": torch.randn(1, LATENT_CHANNELS, CHUNK, lat, lat, generator=gen),
        "masked": torch.randn(CHUNK, LATENT_CHANNELS, lat, lat, generator=gen),
        "ref": torch.randn(CHUNK, LATENT_CHANNELS, lat, lat, generator=gen),
    }


def _random_version(setup: Setup, unet: Any, vae: Any, version: str, dtypes: list[str]) -> dict[str, Any]:
    """One CFG forward and one whole denoising chunk (20 steps, guidance 1.5, step cache) per dtype, each
    against float32 on the same device."""
    x = _random_inputs(setup, version)
    outputs: dict[str, dict[str, torch.Tensor]] = {}
    for dtype in dtypes:
        net, kind = cast(unet, dtype), getattr(torch, dtype)
        sampler = ChunkSampler(
            unet=net, vae=vae, mask=setup.mask(version), resolution=setup.resolution[version],
            num_inference_steps=setup.steps, guidance_scale=GUIDANCE, deepcache=True,
        )  # fmt: skip
        with torch.inference_mode(), exact_fp32(setup):
            forward = net(x["sample"].to(setup.device, kind), 951, x["audio_cfg"].to(setup.device, kind))
            chunk = sampler.denoise(x["latents"], x["masked"], x["ref"], x["audio"])
        outputs[dtype] = {"unet": forward.float().cpu(), "chunk": chunk.float().cpu()}
        del net, sampler
    ref = outputs["float32"]
    return {
        part: {dtype: errors(outputs[dtype][part], ref[part]) for dtype in dtypes if dtype != "float32"}
        for part in ("unet", "chunk")
    }


def parity(
    setup: Setup, unet: Any, vae: Any, goldens: Path | None, budget: Budget, golden_chunk: bool = False
) -> dict[str, Any]:
    dtypes = pick_dtypes(setup)
    report: dict[str, Any] = {
        "dtypes": dtypes,
        "error": "max_abs and mean_abs absolute; max_rel = max_abs / max |reference|",
        "golden": {"reason": "goldens not found"} if goldens is None else {},
        "random": {},
    }
    if goldens is not None:
        report["golden"] = {
            "reference": "official LatentSync fp32 on a CPU (goldens unet_tiny cases 1-3; pipeline_tiny chunk 0)",
            "unet": _golden_unet(goldens, setup, dtypes),
        }
        if setup.tiny and not golden_chunk:
            report["golden"]["chunk_skipped"] = (
                "--tiny: the goldens' chunk is a 256 px pipeline run (tens of CPU seconds; tests/test_pipeline.py "
                "holds it to the goldens on the CPU); --golden-chunk runs it"
            )
        else:
            report["golden"]["chunk"] = _golden_chunk(goldens, setup, dtypes)
    for version in VERSIONS:
        if not budget.fits(5.0):
            report["random"][version] = {"skipped": f"parity budget ({budget.seconds:.0f} s) spent"}
            continue
        report["random"][version] = {
            "reference": "float32 on the same device (TF32 off), same random weights and inputs",
            **_random_version(setup, unet, vae, version, dtypes),
        }
    return report


# --------------------------------------------------------------------------------------------- speed


def _timed(setup: Setup, step: Any) -> tuple[Any, float]:
    setup.sync()
    start = time.perf_counter()
    value = step()
    setup.sync()
    return value, time.perf_counter() - start


def _chunk_stages(setup: Setup, unet: Any, vae: Any, whisper: Any, version: str) -> dict[str, float]:
    """Wall seconds of each stage of one 16-frame chunk at the official defaults (whisper: a 10 s clip)."""
    res = setup.resolution[version]
    frames, points = setup.clip(CHUNK)
    aligner = FaceAligner(res)
    aligned, t_faces = _timed(setup, lambda: [aligner.align(f, p) for f, p in zip(frames, points, strict=True)])
    _, t_whisper = _timed(setup, lambda: whisper.features(setup.voice(10.0)))
    sampler = ChunkSampler(
        unet=unet, vae=vae, mask=setup.mask(version), resolution=res, num_inference_steps=setup.steps,
        guidance_scale=GUIDANCE, deepcache=True,
    )  # fmt: skip
    x = _random_inputs(setup, version)
    faces = torch.from_numpy(np.stack([face for face, _ in aligned]))
    (pixels, masked, ref), t_encode = _timed(setup, lambda: sampler.encode(faces, x["masked"], x["ref"]))
    final, t_unet = _timed(setup, lambda: sampler.denoise(x["latents"], masked, ref, x["audio"]))
    synced, t_decode = _timed(setup, lambda: sampler.decode(final, pixels))
    _, t_restore = _timed(setup, lambda: [aligner.restore(frames[i], synced[i], aligned[i][1]) for i in range(CHUNK)])
    return {
        "faces": t_faces, "whisper": t_whisper / 10.0 * CHUNK / FPS, "unet": t_unet,
        "vae": t_encode + t_decode, "restore": t_restore,
    }  # fmt: skip


def _speed_run(setup: Setup, models: dict[str, Any], version: str, compiled: bool) -> dict[str, Any]:
    warm_start = time.perf_counter()
    _chunk_stages(setup, models["unet"], models["vae"], models["whisper"], version)  # warm-up (and compile)
    warm_s = time.perf_counter() - warm_start
    stages = _chunk_stages(setup, models["unet"], models["vae"], models["whisper"], version)
    per_second = {k: v / (CHUNK / FPS) for k, v in stages.items()}
    per_second["total"] = sum(per_second.values())
    return {
        "version": version, "compiled": compiled, "dtype": models["dtype"], "resolution": setup.resolution[version],
        "first_chunk_s": round(warm_s, 3), "chunk_stage_s": stages, "seconds_per_output_second": per_second,
    }  # fmt: skip


def speed(setup: Setup, unet: Any, vae: Any, budget: Budget, compile_backend: str | None) -> dict[str, Any]:
    dtype = runtime.dtype_name_for(setup.device.type, None)
    models = {"unet": cast(unet, dtype), "vae": cast(vae, dtype if setup.is_cuda else "float32"),
              "whisper": setup.whisper(), "dtype": dtype}  # fmt: skip
    report: dict[str, Any] = {
        "settings": {"steps": setup.steps, "guidance": GUIDANCE, "step_cache": True, "frames_per_chunk": CHUNK,
                     "frame_size": list(setup.frame_hw), "dtype": dtype,
                     "whisper": "one 10 s clip's features (the encoder pads to a 30 s window), per output second",
                     "faces": "alignment only: detection (MediaPipe/InsightFace) is not installed on the GPU machine"},
        "unit": "wall seconds per second of output video (CUDA synchronised around each stage)",
        "runs": [], "skipped": [],
    }  # fmt: skip
    for version in VERSIONS:
        report["runs"].append(_speed_run(setup, models, version, compiled=False))
    if compile_backend is None:
        report["skipped"].append("torch.compile: not asked for (--no-compile)")
        return report
    from latentsync_routes.local.compiling import compile_unet_regions

    compile_unet_regions(models["unet"], backend=compile_backend)
    report["settings"]["compile"] = f"regional torch.compile, backend {compile_backend}"
    for version in VERSIONS:
        if setup.tiny and version != VERSIONS[0]:  # tracing every region again at new shapes: minutes on a CPU
            report["skipped"].append(f"compiled {version}: --tiny compiles one version only")
        elif not budget.fits(30.0 if setup.is_cuda else 1.0):
            report["skipped"].append(f"compiled {version}: speed budget ({budget.seconds:.0f} s) spent")
        else:
            report["runs"].append(_speed_run(setup, models, version, compiled=True))
    return report


# --------------------------------------------------------------------------------------------- memory


def _stream(setup: Setup, models: dict[str, Any], version: str, seconds: float, steps: int) -> dict[str, Any]:
    """The per-chunk core over a whole clip, as a job streams it; nothing of a chunk is kept after it."""
    res = setup.resolution[version]
    features = models["whisper"].features(setup.voice(seconds)).to("cpu", torch.float32)
    total = chunk_count(features.shape[0], FPS)
    frames, points = setup.clip(min(total, 50), MEMORY_FRAME_HW)  # VRAM does not depend on the frame size
    index = loop_indices(len(frames), total)
    aligner = FaceAligner(res)
    aligned = [aligner.align(f, p) for f, p in zip(frames, points, strict=True)]
    sampler = ChunkSampler(
        unet=models["unet"], vae=models["vae"], mask=setup.mask(version), resolution=res,
        num_inference_steps=steps, guidance_scale=GUIDANCE, deepcache=True,
    )  # fmt: skip
    noise = Noise(None, None, torch.Generator().manual_seed(0))
    lat = res // 8
    init = noise.initial((1, LATENT_CHANNELS, 1, lat, lat))
    for chunk, start in enumerate(range(0, total, CHUNK)):
        src = index[start : start + CHUNK]
        sync_chunk(
            sampler, aligner, [frames[j] for j in src], [aligned[j][0] for j in src], [aligned[j][1] for j in src],
            audio_windows(features, start, len(src)), init.expand(-1, -1, len(src), -1, -1),
            noise.posterior(chunk, (len(src), LATENT_CHANNELS, lat, lat)),
        )  # fmt: skip
    return {"frames": total, "chunks": -(-total // CHUNK)}


def memory(setup: Setup, unet: Any, vae: Any, budget: Budget, lengths: tuple[float, ...]) -> dict[str, Any]:
    dtype = runtime.dtype_name_for(setup.device.type, None)
    models = {"unet": cast(unet, dtype), "vae": cast(vae, dtype if setup.is_cuda else "float32"),
              "whisper": setup.whisper()}  # fmt: skip
    steps = 1
    report: dict[str, Any] = {
        "settings": {"dtype": dtype, "steps": steps, "step_cache": True, "guidance": GUIDANCE,
                     "why_one_step": "the peak is one chunk's (VAE encode, a full UNet pass with the cache's "
                                     "kept features, VAE decode); 20 steps repeat the same passes"},
        "runs": [], "skipped": [],
    }  # fmt: skip
    # shortest and longest first for both versions, so a spent budget drops a middle length, not the flatness
    for seconds in (lengths[0], lengths[-1], *lengths[1:-1]):
        for version in VERSIONS:
            if not budget.fits(seconds * (0.5 if version == "1.6" else 0.2) if setup.is_cuda else 0.5):
                report["skipped"].append(f"{version} {seconds:g} s: memory budget ({budget.seconds:.0f} s) spent")
                continue
            start = time.perf_counter()
            holder: dict[str, Any] = {}
            peak, how = PeakMemory(setup).measure(
                lambda v=version, s=seconds, h=holder: h.update(_stream(setup, models, v, s, steps))
            )
            report["measure"] = how
            report["runs"].append({"version": version, "seconds": seconds, "peak_gb": round(peak / 1e9, 3),
                                   "wall_s": round(time.perf_counter() - start, 2), **holder})  # fmt: skip
    report["runs"].sort(key=lambda run: (run["version"], run["seconds"]))
    report["auto_choice"] = _auto_choice(report["runs"])
    return report


def _auto_choice(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The version ``local_version="auto"`` picks at each free-VRAM budget, and whether its measured peak fits."""
    peaks: dict[str, float] = {}
    for run in runs:
        peaks[run["version"]] = max(peaks.get(run["version"], 0.0), run["peak_gb"])
    rows = []
    for budget_gb in (8.0, 12.0, 18.0, 24.0):
        version, why, warnings = runtime.choose_version("auto", "cuda", budget_gb)
        peak = peaks.get(version)
        rows.append({"budget_gb": budget_gb, "version": version, "reason": why, "warnings": warnings,
                     "measured_peak_gb": peak, "fits": None if peak is None else peak <= budget_gb})  # fmt: skip
    return rows
