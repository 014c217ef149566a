"""The LatentSync UNet: structure against the official key list, numerical parity against the official
goldens, and strict checkpoint loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("safetensors")

import safetensors.torch as safetensors_torch  # noqa: E402
import torch  # noqa: E402

from latentsync_routes.local.motion import sinusoidal_frame_table  # noqa: E402
from latentsync_routes.local.unet import (  # noqa: E402
    LatentSyncUNet,
    UNetCheckpointError,
    UNetConfig,
    UNetConfigError,
    load_unet_checkpoint,
    unet_dtype_for,
)
from tests.conftest import goldens_path  # noqa: E402

FULL_PARAMS = 1_267_099_844
FULL_ENTRIES = 1_246
PE_ENTRIES, PE_FLOATS = 40, 844_800
PARITY_TOL = 1e-4
CASES = ("case1", "case2", "case3")


def _official_key_list() -> list[tuple[str, tuple[int, ...], str]]:
    lines = goldens_path("unet_keys.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#") and f"total parameters {FULL_PARAMS}" in lines[0]
    rows = []
    for line in lines[1:]:
        key, shape, dtype = line.split("\t")
        rows.append((key, tuple(int(n) for n in shape.split(",")), dtype))
    return rows


def _key_list(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...], str]]:
    return [(k, tuple(t.shape), str(t.dtype).removeprefix("torch.")) for k, t in model.state_dict().items()]


def _model_section(version: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(goldens_path(f"unet_config_v{version}.json").read_text(encoding="utf-8"))
    return data["model"]


def _model_section_tiny() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(goldens_path("unet_tiny", "config.json").read_text(encoding="utf-8"))
    return data


def _rss_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------------------------------
# Structure at full size, on the meta device


@pytest.mark.parametrize("version", ["1.5", "1.6"])
def test_full_size_state_dict_matches_official_key_list(version: str) -> None:
    expected = _official_key_list()
    rss_before = _rss_bytes()
    with torch.device("meta"):
        model = LatentSyncUNet.from_config(_model_section(version))
    rss_after = _rss_bytes()

    assert _key_list(model) == expected  # names, shapes, dtypes and state_dict order
    assert len(expected) == FULL_ENTRIES
    assert sum(p.numel() for p in model.parameters()) == FULL_PARAMS
    pe = [t for k, t in model.state_dict().items() if k.endswith(".pos_encoder.pe")]
    assert len(pe) == PE_ENTRIES and sum(t.numel() for t in pe) == PE_FLOATS

    # Nothing real was allocated: every tensor lives on the meta device, and RSS did not grow by
    # anything near the 5 GB an fp32 build would take.
    assert all(t.is_meta for t in [*model.parameters(), *model.buffers()])
    if rss_before is not None and rss_after is not None:
        assert rss_after - rss_before < 512 * 2**20


def test_both_released_configs_are_the_same_network() -> None:
    v15, v16 = UNetConfig.from_dict(_model_section("1.5")), UNetConfig.from_dict(_model_section("1.6"))
    assert v15 == v16 == UNetConfig()
    whole_file = json.loads(goldens_path("unet_config_v1.6.json").read_text(encoding="utf-8"))
    assert UNetConfig.from_dict(whole_file) == v16
    assert UNetConfig.from_dict(v16.to_dict()) == v16


def test_motion_modules_only_in_encoder_and_decoder() -> None:
    with torch.device("meta"):
        model = LatentSyncUNet()
    modules_per_block = Counter(
        key.split(".motion_modules.")[0]
        for key in model.state_dict()
        if ".motion_modules." in key and key.endswith("temporal_transformer.proj_in.weight")
    )
    assert modules_per_block == {
        **{f"down_blocks.{i}": 2 for i in range(4)},
        **{f"up_blocks.{i}": 3 for i in range(4)},
    }


def test_config_refuses_what_it_cannot_build() -> None:
    section = _model_section("1.5")
    with pytest.raises(UNetConfigError, match="unknown UNet config keys"):
        UNetConfig.from_dict({**section, "use_lora": True})
    with pytest.raises(UNetConfigError, match="use_linear_projection"):
        UNetConfig.from_dict({**section, "use_linear_projection": True})
    with pytest.raises(UNetConfigError, match="motion_module_type"):
        UNetConfig.from_dict({**section, "motion_module_type": "Conv"})
    with pytest.raises(UNetConfigError, match="one entry per level"):
        UNetConfig.from_dict({**section, "block_out_channels": [320, 640, 1280]})


# --------------------------------------------------------------------------------------------------
# Numerical parity with the official model at tiny width


@pytest.fixture(scope="module")
def tiny_unet() -> LatentSyncUNet:
    return load_unet_checkpoint(
        goldens_path("unet_tiny", "weights.safetensors"), goldens_path("unet_tiny", "config.json"), device="cpu"
    )


@pytest.fixture(scope="module")
def tiny_cases() -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = safetensors_torch.load_file(goldens_path("unet_tiny", "cases.safetensors"))
    return tensors


def _case(cases: dict[str, torch.Tensor], name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        cases[f"{name}.sample"],
        cases[f"{name}.timestep"],
        cases[f"{name}.encoder_hidden_states"].float(),
        cases[f"{name}.output"],
    )


def test_tiny_model_loads_as_fp32_inference_model(tiny_unet: LatentSyncUNet) -> None:
    assert tiny_unet.dtype == torch.float32 and tiny_unet.device.type == "cpu"
    assert not tiny_unet.training
    assert not any(p.requires_grad for p in tiny_unet.parameters())
    assert not any(t.is_meta for t in [*tiny_unet.parameters(), *tiny_unet.buffers()])
    assert sum(p.numel() for p in tiny_unet.parameters()) == 5_321_380
    assert len(tiny_unet.state_dict()) == 1_244


@pytest.mark.parametrize("name", CASES)
def test_forward_matches_official_goldens(
    tiny_unet: LatentSyncUNet, tiny_cases: dict[str, torch.Tensor], name: str
) -> None:
    sample, timestep, audio, expected = _case(tiny_cases, name)
    with torch.inference_mode():
        out = tiny_unet(sample, timestep, audio)
    assert out.shape == expected.shape and out.dtype == torch.float32
    assert (out - expected).abs().max().item() <= PARITY_TOL


def test_audio_layouts_and_timestep_forms_are_equivalent(
    tiny_unet: LatentSyncUNet, tiny_cases: dict[str, torch.Tensor]
) -> None:
    sample, timestep, audio, _ = _case(tiny_cases, "case3")
    assert audio.ndim == 4
    with torch.inference_mode():
        reference = tiny_unet(sample, timestep, audio)
        flat = tiny_unet(sample, int(timestep), audio.reshape(-1, *audio.shape[2:]))
        per_item = tiny_unet(sample, timestep.repeat(sample.shape[0]), audio)
    assert torch.equal(reference, flat) and torch.equal(reference, per_item)


def test_frames_of_a_chunk_interact_and_audio_matters(
    tiny_unet: LatentSyncUNet, tiny_cases: dict[str, torch.Tensor]
) -> None:
    """Guards the two easiest mistakes: per-frame ResNet norms and an ignored audio branch."""
    sample, timestep, audio, _ = _case(tiny_cases, "case2")
    with torch.inference_mode():
        base = tiny_unet(sample, timestep, audio)
        nudged = sample.clone()
        nudged[:, :, 4] += 1.0
        other_frames = tiny_unet(nudged, timestep, audio)[:, :, :4]
        no_audio = tiny_unet(sample, timestep, None)
    assert (other_frames - base[:, :, :4]).abs().max().item() > 1e-3
    assert (no_audio - base).abs().max().item() > 1e-3


def test_forward_rejects_mismatched_inputs(tiny_unet: LatentSyncUNet, tiny_cases: dict[str, torch.Tensor]) -> None:
    sample, timestep, audio, _ = _case(tiny_cases, "case2")
    with pytest.raises(ValueError, match="B\\*F=5"):
        tiny_unet(sample, timestep, audio[:4])
    with pytest.raises(ValueError, match="sample must be"):
        tiny_unet(sample[:, :12], timestep, audio)
    with pytest.raises(ValueError, match="position table"):
        tiny_unet(sample.repeat(1, 1, 5, 1, 1), timestep, audio.repeat(5, 1, 1))


def test_positional_tables_equal_the_checkpoint_buffers() -> None:
    # Not bit-exact: float32 sin/exp of the same inputs differ by a few ulps between CPUs.
    weights = safetensors_torch.load_file(goldens_path("unet_tiny", "weights.safetensors"))
    tables = {k: v for k, v in weights.items() if k.endswith(".pos_encoder.pe")}
    assert len(tables) == PE_ENTRIES
    for table in tables.values():
        assert table.dtype == torch.float32
        rebuilt = sinusoidal_frame_table(table.shape[2], table.shape[1])
        torch.testing.assert_close(rebuilt, table, rtol=0, atol=5e-6)


# --------------------------------------------------------------------------------------------------
# Strict loading


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = safetensors_torch.load_file(goldens_path("unet_tiny", "weights.safetensors"))
    return state


def _fresh_tiny() -> LatentSyncUNet:
    return LatentSyncUNet.from_config(goldens_path("unet_tiny", "config.json"))


def test_strict_load_refuses_missing_key(tiny_state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    dropped = "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    partial = {k: v for k, v in tiny_state.items() if k != dropped}

    with pytest.raises(RuntimeError, match="Missing key"):
        _fresh_tiny().load_state_dict(partial, strict=True)

    path = tmp_path / "partial.safetensors"
    safetensors_torch.save_file(partial, str(path))
    with pytest.raises(UNetCheckpointError, match="1 missing") as info:
        load_unet_checkpoint(path, goldens_path("unet_tiny", "config.json"), device="cpu")
    assert dropped in str(info.value)


def test_strict_load_refuses_extra_key(tiny_state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    extra = {**tiny_state, "mid_block.motion_modules.0.temporal_transformer.proj_out.weight": torch.zeros(64, 64)}

    with pytest.raises(RuntimeError, match="Unexpected key"):
        _fresh_tiny().load_state_dict(extra, strict=True)

    path = tmp_path / "extra.pt"
    torch.save({"state_dict": extra}, path)
    with pytest.raises(UNetCheckpointError, match="1 unexpected.*mid_block.motion_modules.0"):
        load_unet_checkpoint(path, goldens_path("unet_tiny", "config.json"), device="cpu")


def test_strict_load_refuses_misshaped_tensor(tiny_state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    key = "conv_in.weight"
    bad = {**tiny_state, key: torch.zeros(32, 9, 3, 3, dtype=torch.float16)}
    path = tmp_path / "bad.safetensors"
    safetensors_torch.save_file(bad, str(path))
    with pytest.raises(UNetCheckpointError, match="1 mis-shaped.*conv_in.weight: checkpoint \\(32, 9, 3, 3\\)"):
        load_unet_checkpoint(path, goldens_path("unet_tiny", "config.json"), device="cpu")


@pytest.mark.parametrize("wrapped", [True, False], ids=["official-layout", "bare-state-dict"])
def test_pt_checkpoint_loads_memory_mapped(
    tiny_state: dict[str, torch.Tensor], tiny_cases: dict[str, torch.Tensor], tmp_path: Path, wrapped: bool
) -> None:
    """The released ``latentsync_unet.pt`` layout: fp32 ``{"state_dict", "global_step"}``."""
    fp32 = {k: v.float() for k, v in tiny_state.items()}
    path = tmp_path / "latentsync_unet.pt"
    torch.save({"global_step": 7, "state_dict": fp32} if wrapped else fp32, path)

    model = load_unet_checkpoint(path, _model_section_tiny(), device="cpu")
    sample, timestep, audio, expected = _case(tiny_cases, "case2")
    with torch.inference_mode():
        out = model(sample, timestep, audio)
    assert (out - expected).abs().max().item() <= PARITY_TOL


def test_dtype_follows_device_unless_given(tiny_state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    assert unet_dtype_for("cuda") == torch.float16
    assert unet_dtype_for("cuda:1") == torch.float16
    assert unet_dtype_for("cpu") == torch.float32
    model = load_unet_checkpoint(
        goldens_path("unet_tiny", "weights.safetensors"),
        goldens_path("unet_tiny", "config.json"),
        device="cpu",
        dtype=torch.bfloat16,
    )
    assert {t.dtype for t in model.state_dict().values()} == {torch.bfloat16}


def test_importing_the_package_or_the_config_does_not_import_torch() -> None:
    code = (
        "import sys, latentsync_routes, latentsync_routes.local, latentsync_routes.local.unet_config; "
        "sys.exit(1 if 'torch' in sys.modules or 'diffusers' in sys.modules else 0)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0
