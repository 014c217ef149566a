"""SyncNet (Chung & Zisserman, 2016), the network behind LSE-C and LSE-D, in our own torch code.

The layer list is data (:data:`AUDIO_TRUNK`, :data:`LIP_TRUNK`) so that the ``nn.Sequential`` indices,
and so the state-dict keys, are exactly those of the official ``syncnet_v2.model`` (``netcnnaud.0.weight``
... ``netfclip.3.bias``): the file loads by its keys, strictly, with no renaming table to drift.

One speed fact shapes :meth:`SyncNet.lip_trunk`: the lip network's first convolution spans all 5 frames
of a window with temporal stride 1, and every later layer has temporal extent 1. Run on the whole clip
``[1, 3, T, 224, 224]`` it therefore yields every window's features at once (``T - 4`` of them) without
stacking the 5-frame windows (a 5x copy of the video). Evaluation-mode batch norm makes each window
independent of its neighbours, so this equals the per-window batch of the official code up to float
rounding (see the parity tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .errors import SyncNetWeightsError

__all__ = ["AUDIO_TRUNK", "EMBEDDING_SIZE", "LIP_TRUNK", "SyncNet", "WINDOW_FRAMES"]

#: Video frames per window (0.2 s at 25 fps) and MFCC columns per window (the same 0.2 s at 100 Hz).
WINDOW_FRAMES = 5
WINDOW_MFCC = 20
EMBEDDING_SIZE = 1024
TRUNK_SIZE = 512

# ("conv", in, out, kernel, stride, padding) adds conv + batch norm + ReLU (three Sequential slots);
# ("pool", kernel, stride, padding) adds a max pool (one slot).
Layer = tuple[Any, ...]
AUDIO_TRUNK: tuple[Layer, ...] = (
    ("conv", 1, 64, (3, 3), (1, 1), (1, 1)),
    ("pool", (1, 1), (1, 1), (0, 0)),
    ("conv", 64, 192, (3, 3), (1, 1), (1, 1)),
    ("pool", (3, 3), (1, 2), (0, 0)),
    ("conv", 192, 384, (3, 3), (1, 1), (1, 1)),
    ("conv", 384, 256, (3, 3), (1, 1), (1, 1)),
    ("conv", 256, 256, (3, 3), (1, 1), (1, 1)),
    ("pool", (3, 3), (2, 2), (0, 0)),
    ("conv", 256, 512, (5, 4), (1, 1), (0, 0)),
)
LIP_TRUNK: tuple[Layer, ...] = (
    ("conv", 3, 96, (5, 7, 7), (1, 2, 2), (0, 0, 0)),
    ("pool", (1, 3, 3), (1, 2, 2), (0, 0, 0)),
    ("conv", 96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)),
    ("pool", (1, 3, 3), (1, 2, 2), (0, 1, 1)),
    ("conv", 256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
    ("conv", 256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
    ("conv", 256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
    ("pool", (1, 3, 3), (1, 2, 2), (0, 0, 0)),
    ("conv", 256, 512, (1, 6, 6), (1, 1, 1), (0, 0, 0)),
)


def _trunk(spec: tuple[Layer, ...], dims: int) -> nn.Sequential:
    conv: Any = nn.Conv2d if dims == 2 else nn.Conv3d
    norm: Any = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
    pool: Any = nn.MaxPool2d if dims == 2 else nn.MaxPool3d
    layers: list[nn.Module] = []
    for kind, *args in spec:
        if kind == "conv":
            channels_in, channels_out, kernel, stride, padding = args
            layers += [conv(channels_in, channels_out, kernel, stride, padding), norm(channels_out), nn.ReLU()]
        else:
            kernel, stride, padding = args
            layers.append(pool(kernel, stride, padding))
    return nn.Sequential(*layers)


def _head() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(TRUNK_SIZE, TRUNK_SIZE), nn.BatchNorm1d(TRUNK_SIZE), nn.ReLU(), nn.Linear(TRUNK_SIZE, EMBEDDING_SIZE)
    )


class SyncNet(nn.Module):
    """The two-stream SyncNet: MFCC windows and 5-frame face windows to 1024-d embeddings (no L2 norm).

    Always in evaluation mode (batch norm on its running statistics): it is only ever used to score.
    """

    def __init__(self) -> None:
        super().__init__()
        self.netcnnaud = _trunk(AUDIO_TRUNK, 2)
        self.netfcaud = _head()
        self.netcnnlip = _trunk(LIP_TRUNK, 3)
        self.netfclip = _head()
        self.eval()

    def train(self, mode: bool = True) -> SyncNet:
        """Stays in evaluation mode: training statistics would make scores depend on the batch."""
        super().train(False)
        return self

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any], *, device: str | torch.device = "cpu") -> SyncNet:
        """A SyncNet holding the official ``syncnet_v2.model`` weights, checked key by key.

        Every key of the network must be in ``state_dict`` with its shape, and no other key may be, except
        that the batch-norm ``num_batches_tracked`` counters are optional (they never affect a score, and
        whether a given copy of the file has them varies). Anything else raises
        :class:`SyncNetWeightsError` naming the keys, instead of the official loader's silent keep-random.
        """
        model = cls()
        own = model.state_dict()
        given = {str(key): value for key, value in state_dict.items()}
        missing = sorted(k for k in own if k not in given and not k.endswith("num_batches_tracked"))
        unknown = sorted(k for k in given if k not in own)
        shapes = sorted(
            f"{k}: {tuple(torch.as_tensor(v).shape)} (want {tuple(own[k].shape)})"
            for k, v in given.items()
            if k in own and tuple(torch.as_tensor(v).shape) != tuple(own[k].shape)
        )
        if missing or unknown or shapes:
            parts = [
                f"{label} {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
                for label, keys in (("missing", missing), ("unknown", unknown), ("wrong shape", shapes))
                if keys
            ]
            raise SyncNetWeightsError(f"these weights are not SyncNet's (syncnet_v2.model): {'; '.join(parts)}")
        full = {key: torch.as_tensor(given[key]) if key in given else own[key] for key in own}
        model.load_state_dict(full, strict=True)
        return model.to(device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def audio_trunk(self, mfcc_windows: torch.Tensor) -> torch.Tensor:
        """``[N, 1, 13, 20]`` MFCC windows to ``[N, 512]`` trunk features (before the FC head)."""
        out: torch.Tensor = self.netcnnaud(mfcc_windows)
        return out.flatten(1)

    def lip_trunk(self, clip: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, 224, 224]`` frames (BGR, 0..255) to ``[B * (T - 4), 512]`` per-window trunk features.

        With ``T == 5`` this is the per-window network; with a longer clip, every window at once (module
        docstring). Windows come out in order, clip by clip.
        """
        out: torch.Tensor = self.netcnnlip(clip)  # [B, 512, T - 4, 1, 1]
        return out.flatten(2).permute(0, 2, 1).reshape(-1, TRUNK_SIZE)

    def forward_aud(self, mfcc_windows: torch.Tensor) -> torch.Tensor:
        """``[N, 1, 13, 20]`` to the ``[N, 1024]`` audio embeddings."""
        return self.audio_head(self.audio_trunk(mfcc_windows))

    def forward_lip(self, clip: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, 224, 224]`` to the ``[B * (T - 4), 1024]`` lip embeddings."""
        return self.lip_head(self.lip_trunk(clip))

    def audio_head(self, trunk: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.netfcaud(trunk)
        return out

    def lip_head(self, trunk: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.netfclip(trunk)
        return out
