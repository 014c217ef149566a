"""One measurement of the official LatentSync code, for ``bench_local_vs_official.py`` (run it, not this).

Runs in the official code's own venv (``--official-python``) and imports the official modules from the
checkout given on the command line; nothing of the official code is copied here. How the official code is
made to run on a CPU, and which imports are stubbed, is described in ``bench_local_vs_official.py``'s
docstring. The random weights, VAE architecture, inputs and part composition come from that script too, so
both sides are built the same way.

    .official/venv/bin/python benchmarks/_official_worker.py --checkout .official/LatentSync '{"what": ...}'
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import bench_local_vs_official as bench  # this file's folder is on sys.path when it runs as a script

#: Third-party modules that the official modules import at module level but a chunk never uses:
#: module -> (the official file that imports it, the names it takes from it).
UNUSED_IMPORTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "decord": ("latentsync/utils/util.py:31", ("AudioReader", "VideoReader")),
    "insightface": ("latentsync/utils/face_detector.py:1", ()),
    "insightface.app": ("latentsync/utils/face_detector.py:1", ("FaceAnalysis",)),
    "transformers": ("latentsync/whisper/whisper/tokenizer.py:8", ("GPT2TokenizerFast",)),
}


def _stub_unused_imports() -> list[str]:
    """Put a stand-in for each of ``UNUSED_IMPORTS`` that is not installed; a stand-in raises when used."""
    stubbed = []
    for name, (where, names) in UNUSED_IMPORTS.items():
        if name in sys.modules:
            continue
        try:
            if importlib.util.find_spec(name) is not None:
                continue  # installed: the real one is used
        except ModuleNotFoundError:  # its parent is missing (or is a stand-in itself)
            pass
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
        for attr in names:
            setattr(module, attr, _unavailable(f"{name}.{attr}", where))
        if "." in name:
            setattr(sys.modules[name.rsplit(".", 1)[0]], name.rsplit(".", 1)[1], module)
        sys.modules[name] = module
        stubbed.append(name)
    return stubbed


def _import_torchvision() -> list[str]:
    """Import torchvision, skipping the fake-kernel registrations of its C++ operators when they are missing.

    PyPI's torchvision is built against torch's CUDA build, so with the CPU torch its C++ extension (``nms``,
    ``roi_align``, ... and image decoding) does not load, and ``import torchvision`` then fails where
    ``torchvision/_meta_registrations.py`` registers fake kernels for those operators ("operator
    torchvision::nms does not exist"). A chunk uses none of them, only ``transforms.Resize`` and
    ``transforms.Normalize`` (plain torch operations), so their registrations are skipped. Returns the
    operators skipped (none when torchvision's extension matches the installed torch)."""
    import torch

    skipped: list[str] = []
    register_fake = torch.library.register_fake

    def defined(op: str) -> bool:
        namespace, name = op.split("::", 1)
        try:
            getattr(getattr(torch.ops, namespace), name.split(".")[0])
        except (AttributeError, RuntimeError):
            return False
        return True

    def register_fake_if_defined(op: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(op, str) and op.startswith("torchvision::") and not defined(op):
            skipped.append(op)
            return args[0] if args and callable(args[0]) else (lambda fn: fn)
        return register_fake(op, *args, **kwargs)

    torch.library.register_fake = register_fake_if_defined  # type: ignore[assignment]
    try:
        import torchvision  # noqa: F401
    finally:
        torch.library.register_fake = register_fake
    return skipped


def _unavailable(what: str, where: str) -> type:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError(f"{what} (imported by {where}) is stubbed in this benchmark and cannot be used")

    return type(what.rsplit(".", 1)[1], (), {"__init__": refuse})


class Official:
    """The official modules, imported from a checkout after the libraries they need."""

    def __init__(self, checkout: Path) -> None:
        import torch

        skipped_ops = _import_torchvision()
        import diffusers
        from diffusers import AutoencoderKL, DDIMScheduler  # noqa: F401  (diffusers decides its extras now)
        from diffusers.pipelines import DiffusionPipeline  # noqa: F401

        self.stubbed = _stub_unused_imports()
        sys.path.insert(0, str(checkout))
        from DeepCache import DeepCacheSDHelper
        from latentsync.models.unet import UNet3DConditionModel
        from latentsync.pipelines.lipsync_pipeline import LipsyncPipeline
        from latentsync.utils.image_processor import ImageProcessor, load_fixed_mask
        from omegaconf import OmegaConf

        self.checkout = checkout
        self.UNet3DConditionModel, self.LipsyncPipeline = UNet3DConditionModel, LipsyncPipeline
        self.ImageProcessor, self.load_fixed_mask = ImageProcessor, load_fixed_mask
        self.DeepCacheSDHelper, self.DDIMScheduler = DeepCacheSDHelper, DDIMScheduler
        self.config = OmegaConf.load(checkout / "configs" / "unet" / "stage2.yaml")
        self.model_config = OmegaConf.to_container(self.config.model)
        self.versions = {
            "torch": torch.__version__, "torchvision": importlib.metadata.version("torchvision"),
            "diffusers": diffusers.__version__, "deepcache": importlib.metadata.version("DeepCache"),
            "stubbed": self.stubbed, "torchvision_ops_skipped": len(skipped_ops),
        }  # fmt: skip

    def scheduler(self) -> Any:
        return self.DDIMScheduler.from_pretrained(str(self.checkout / "configs"))

    def unet(self, channels: list[int] | None = None) -> Any:
        import torch

        config = {**self.model_config, **({"block_out_channels": channels} if channels else {})}
        torch.manual_seed(0)  # as bench._unet (the values do not change the cost)
        return self.UNet3DConditionModel.from_config(config)

    def vae(self, dtype: Any) -> Any:
        vae = bench._sd_vae(dtype)
        vae.config.scaling_factor, vae.config.shift_factor = 0.18215, 0  # what scripts/inference.py sets
        return vae

    def deepcache(self, pipe: Any) -> Any:
        helper = self.DeepCacheSDHelper(pipe=pipe)
        helper.set_params(cache_interval=bench.CACHE_INTERVAL, cache_branch_id=0)
        helper.enable()
        return helper


def worker(spec: dict[str, Any], checkout: Path) -> dict[str, Any]:
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    official = Official(checkout)
    if spec["what"] == "check":
        return {**_check(spec, official), **official.versions}
    if spec["dtype"] != "float32":
        raise SystemExit("the official code runs float32 on a CPU (scripts/inference.py:34-35)")
    dtype, res = torch.float32, int(spec["resolution"])
    unet = bench._randomise(official.unet()).to(dtype).eval().requires_grad_(False)
    audio, sample, both = bench._inputs(res, dtype)
    extra = {"dtype": "float32", **official.versions}
    if spec["what"] == "forward":
        with torch.no_grad():  # LipsyncPipeline.__call__ runs under no_grad
            start = bench._timed()
            out = unet(sample, 951, encoder_hidden_states=both).sample
            measured = bench._since(start)
        assert bool(torch.isfinite(out).all())
        return {**bench._figures(measured), **extra}
    pipe = official.LipsyncPipeline(vae=official.vae(dtype), audio_encoder=None, unet=unet,
                                    scheduler=official.scheduler())  # fmt: skip
    mask = official.load_fixed_mask(res, str(checkout / official.config.data.mask_image_path))
    processor = official.ImageProcessor(res, device="cpu", mask_image=mask)
    if spec["what"] == "parts":
        return {**_parts(spec, official, pipe, processor, sample, both), **extra}
    return {**_chunk(spec, official, pipe, processor, audio), **extra}


class _FullPasses:
    """Counts whole-UNet passes: DeepCache skips the mid block's inner layers on its cached steps."""

    def __init__(self, unet: Any) -> None:
        self.count = 0
        unet.mid_block.resnets[0].register_forward_pre_hook(self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1


def _chunk(spec: dict[str, Any], official: Official, pipe: Any, processor: Any, audio: Any) -> dict[str, Any]:
    """One whole chunk, timed from the mask preparation to the paste, the way ``LipsyncPipeline.__call__``
    runs each chunk, with the pipeline's own methods."""
    import torch

    res, steps, guidance = int(spec["resolution"]), int(spec["steps"]), float(spec["guidance"])
    dtype, device, cfg = torch.float32, torch.device("cpu"), float(spec["guidance"]) > 1.0
    faces = torch.randint(0, 256, (bench.FRAMES, 3, res, res), generator=torch.Generator().manual_seed(2),
                          dtype=torch.uint8)  # fmt: skip
    torch.manual_seed(5)  # the pipeline draws its noise from the global generator
    scheduler = pipe.scheduler
    scheduler.set_timesteps(steps, device=device)
    if spec["deepcache"]:
        official.deepcache(pipe)
    passes = _FullPasses(pipe.unet)
    latents = pipe.prepare_latents(bench.FRAMES, pipe.vae.config.latent_channels, res, res, dtype, device, None)
    step_kwargs = pipe.prepare_extra_step_kwargs(None, 0.0)
    embeds = torch.cat([torch.zeros_like(audio), audio]) if cfg else audio
    with torch.no_grad():
        start = bench._timed()
        pixels, masked_pixels, masks = processor.prepare_masks_and_masked_images(faces, affine_transform=False)
        mask_latents, masked_latents = pipe.prepare_mask_latents(
            masks, masked_pixels, res, res, dtype, device, None, cfg
        )
        ref_latents = pipe.prepare_image_latents(pixels, device, dtype, None, cfg)
        for t in scheduler.timesteps:
            model_in = scheduler.scale_model_input(torch.cat([latents, latents]) if cfg else latents, t)
            model_in = torch.cat([model_in, mask_latents, masked_latents, ref_latents], dim=1)
            eps = pipe.unet(model_in, t, encoder_hidden_states=embeds).sample
            if cfg:
                without, with_audio = eps.chunk(2)
                eps = without + guidance * (with_audio - without)
            latents = scheduler.step(eps, t, latents, **step_kwargs).prev_sample
        decoded = pipe.decode_latents(latents)
        synced = pipe.paste_surrounding_pixels_back(decoded, pixels, 1 - masks, device, dtype)
        measured = bench._since(start)
    assert bool(torch.isfinite(synced).all())
    return {**bench._figures(measured), "full_passes": passes.count}


def _parts(
    spec: dict[str, Any], official: Official, pipe: Any, processor: Any, sample: Any, both: Any
) -> dict[str, Any]:
    """The parts of a chunk, measured as ``bench._parts`` measures ours: the VAE work of ``VAE_FRAMES`` frames
    (mask preparation, both encodes, decode, paste) scaled to 16, one full pass and one shallow DeepCache pass."""
    import torch

    res, steps, deepcache = int(spec["resolution"]), int(spec["steps"]), bool(spec["deepcache"])
    dtype, device, lat, n = torch.float32, torch.device("cpu"), res // 8, bench.VAE_FRAMES
    faces = torch.randint(0, 256, (n, 3, res, res), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    torch.manual_seed(5)
    with torch.no_grad():  # warm-up at a quarter of the pixels, before DeepCache wraps the UNet
        warm = torch.zeros(1, 3, res // 2, res // 2, dtype=dtype)
        pipe.vae.decode(pipe.vae.encode(warm).latent_dist.mean)
        pipe.unet(sample[..., : lat // 2, : lat // 2], 951, encoder_hidden_states=both)
        start = bench._timed()
        pixels, masked_pixels, masks = processor.prepare_masks_and_masked_images(faces, affine_transform=False)
        _, masked_latents = pipe.prepare_mask_latents(masks, masked_pixels, res, res, dtype, device, None, True)
        pipe.prepare_image_latents(pixels, device, dtype, None, True)
        decoded = pipe.decode_latents(masked_latents[:1])
        pipe.paste_surrounding_pixels_back(decoded, pixels, 1 - masks, device, dtype)
        vae_cpu, vae_wall, vae_sys = (x * bench.FRAMES / n for x in bench._since(start))

        pipe.scheduler.set_timesteps(steps, device=device)
        t0, t1 = pipe.scheduler.timesteps[:2]
        if deepcache:
            official.deepcache(pipe)
        start = bench._timed()
        pipe.unet(sample, t0, encoder_hidden_states=both)  # a full pass (DeepCache keeps its block outputs)
        full = bench._since(start)
        shallow = (0.0, 0.0, 0.0)  # no shallow passes without DeepCache
        if deepcache:
            start = bench._timed()
            out = pipe.unet(sample, t1, encoder_hidden_states=both).sample  # DeepCache's cached step
            shallow = bench._since(start)
            assert bool(torch.isfinite(out).all())
    n_full = len(range(0, steps, bench.CACHE_INTERVAL)) if deepcache else steps
    return bench._composed(steps, n_full, (vae_cpu, vae_wall, vae_sys), full, shallow)


def _check(spec: dict[str, Any], official: Official) -> dict[str, Any]:
    """--check, official side: our saved weights loaded strictly, the same inputs, the largest differences."""
    import torch

    saved = torch.load(spec["path"], map_location="cpu", mmap=True, weights_only=True)
    channels = saved["channels"]
    unet = official.unet(None if channels == [320, 640, 1280, 1280] else channels)
    unet.load_state_dict(saved["state_dict"], strict=True)
    unet.eval().requires_grad_(False)
    scheduler = official.scheduler()
    scheduler.set_timesteps(20)
    t0, t1 = scheduler.timesteps[:2]
    assert [int(t0), int(t1)] == saved["timesteps"]
    pipe = types.SimpleNamespace(unet=unet, scheduler=scheduler)  # all DeepCacheSDHelper reads of a pipeline
    sample, sample2, both = saved["sample"], saved["sample2"], saved["audio"]
    with torch.no_grad():
        plain = unet(sample, t0, encoder_hidden_states=both).sample
        official.deepcache(pipe)
        cached = unet(sample, t0, encoder_hidden_states=both).sample
        shallow = unet(sample2, t1, encoder_hidden_states=both).sample

    def diff(theirs: Any, ours: Any) -> dict[str, float]:
        return {"max_abs_diff": float((theirs - ours).abs().max()), "max_abs": float(theirs.abs().max())}

    return {
        "plain": diff(plain, saved["plain"]), "cached": diff(cached, saved["cached"]),
        "shallow": diff(shallow, saved["shallow"]),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", required=True, help="the official LatentSync checkout")
    parser.add_argument("spec", help="the measurement, as JSON (bench_local_vs_official.py writes it)")
    args = parser.parse_args()
    print(json.dumps(worker(json.loads(args.spec), Path(args.checkout).resolve())))


if __name__ == "__main__":
    main()
