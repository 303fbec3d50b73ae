"""RawNet3 speaker embedding as the official VSSFlow computes ``ref_audio_ebd`` (256-d).

Official recipe (``feature/extract_rawnet.py``): 16 kHz mono; clips shorter than 3 s are wrap-padded
to 48001 samples; 10 windows of 48000 samples starting at ``int(linspace(0, len - 48000, 10))``; the
model runs on the batch of 10 windows (eval mode); ``ref_audio_ebd`` is the mean over windows (no L2
normalisation).

Network (RawNet3 with Bottle2neck, model_scale 8, context + summed, ECA encoder, log-sinc with mean
normalisation, sinc stride 10): pre-emphasis (0.97) -> InstanceNorm -> learnable band-pass sinc
filterbank (cos + sin filters, 251 taps) -> |.| -> log(x + 1e-6) -> minus time mean -> 3
Res2Net-style blocks with feature-map scaling (AFMS) -> 1x1 conv to 1536 -> ReLU ->
context-aware attentive statistics pooling -> BN -> Linear(3072, 256).

Keys are the official module's own (``preprocess.*``, ``conv1.filterbank.*``, ``bn1``, ``layer1-3``,
``layer4``, ``attention.*``, ``bn5``, ``fc6``, ``bn6``); the released ``model.pt`` stores them under
``"model"``. The channel width ``C`` (1024 official) and the embedding size are read from the weights.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vssflow_core.errors import VSSFlowError
from vssflow_core.features.official._weights import load_strict, require

SAMPLE_RATE = 16000
WINDOW = 48000
N_WINDOWS = 10


class _PreEmphasis(nn.Module):
    def __init__(self, coef: float = 0.97):
        super().__init__()
        self.register_buffer("flipped_filter", torch.tensor([[[-coef, 1.0]]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T] -> [B, 1, T]
        return F.conv1d(F.pad(x[:, None], (1, 0), mode="reflect"), self.flipped_filter)


class _SincBank(nn.Module):
    """Parametrised band-pass filterbank (cos/"even" and sin/"odd" filters per band), 16 kHz."""

    def __init__(self, n_filters: int, kernel_size: int, sample_rate: float = 16000.0, min_low_hz: float = 50.0, min_band_hz: float = 50.0):
        super().__init__()
        half = kernel_size // 2
        self.sample_rate, self.min_low_hz, self.min_band_hz = float(sample_rate), float(min_low_hz), float(min_band_hz)
        self.low_hz_ = nn.Parameter(torch.zeros(n_filters // 2, 1))
        self.band_hz_ = nn.Parameter(torch.zeros(n_filters // 2, 1))
        self.register_buffer("window_", torch.from_numpy(np.hamming(2 * half + 1)[:half]).float())
        self.register_buffer("n_", 2 * math.pi * (torch.arange(-half, 0.0).view(1, -1) / self.sample_rate))

    def filters(self) -> torch.Tensor:
        low = self.min_low_hz + self.low_hz_.abs()
        high = torch.clamp(low + self.min_band_hz + self.band_hz_.abs(), self.min_low_hz, self.sample_rate / 2)
        band = (high - low)[:, 0]
        ft_low, ft_high = low @ self.n_, high @ self.n_
        cos_left = ((torch.sin(ft_high) - torch.sin(ft_low)) / (self.n_ / 2)) * self.window_
        cos = torch.cat([cos_left, 2 * band.view(-1, 1), torch.flip(cos_left, dims=[1])], dim=1)
        sin_left = ((torch.cos(ft_low) - torch.cos(ft_high)) / (self.n_ / 2)) * self.window_
        sin = torch.cat([sin_left, torch.zeros_like(band.view(-1, 1)), -torch.flip(sin_left, dims=[1])], dim=1)
        bank = torch.cat([cos / (2 * band[:, None]), sin / (2 * band[:, None])], dim=0)
        return bank[:, None]  # [n_filters, 1, K]


class _SincEncoder(nn.Module):
    def __init__(self, n_filters: int, kernel_size: int, stride: int):
        super().__init__()
        self.filterbank = _SincBank(n_filters, kernel_size)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1, T] -> [B, F, T']
        return F.conv1d(x, self.filterbank.filters(), stride=self.stride)


class _AFMS(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(dim, 1))
        self.fc = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.sigmoid(self.fc(x.mean(dim=-1)))[..., None]
        return (x + self.alpha) * y


class _Bottle2neck(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int, dilation: int, scale: int, pool: int | None):
        super().__init__()
        width = cout // scale
        self.width, self.nums = width, scale - 1
        self.conv1 = nn.Conv1d(cin, width * scale, 1)
        self.bn1 = nn.BatchNorm1d(width * scale)
        pad = (kernel_size // 2) * dilation
        self.convs = nn.ModuleList(nn.Conv1d(width, width, kernel_size, dilation=dilation, padding=pad) for _ in range(self.nums))
        self.bns = nn.ModuleList(nn.BatchNorm1d(width) for _ in range(self.nums))
        self.conv3 = nn.Conv1d(width * scale, cout, 1)
        self.bn3 = nn.BatchNorm1d(cout)
        self.pool = pool
        self.afms = _AFMS(cout)
        self.residual = nn.Sequential(nn.Conv1d(cin, cout, 1, bias=False)) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.residual(x)
        out = self.bn1(F.relu(self.conv1(x)))
        parts = torch.split(out, self.width, dim=1)
        outs = []
        sp = None
        for i in range(self.nums):
            sp = parts[i] if i == 0 else sp + parts[i]
            sp = self.bns[i](F.relu(self.convs[i](sp)))
            outs.append(sp)
        outs.append(parts[self.nums])
        out = self.bn3(F.relu(self.conv3(torch.cat(outs, dim=1))))
        out = out + res
        if self.pool:
            out = F.max_pool1d(out, self.pool)
        return self.afms(out)


class RawNet3(nn.Module):
    """RawNet3 speaker encoder (official configuration); ``forward(wave [B, T] 16 kHz) -> [B, n_out]``."""

    def __init__(self, C: int = 1024, n_out: int = 256, scale: int = 8, sinc_kernel: int = 251, sinc_stride: int = 10,
                 out_bn: bool = False):
        super().__init__()
        self.out_bn = out_bn
        self.preprocess = nn.Sequential(_PreEmphasis(), nn.InstanceNorm1d(1, eps=1e-4, affine=True))
        self.conv1 = _SincEncoder(C // 4, sinc_kernel, sinc_stride)
        self.bn1 = nn.BatchNorm1d(C // 4)
        self.layer1 = _Bottle2neck(C // 4, C, 3, 2, scale, 5)
        self.layer2 = _Bottle2neck(C, C, 3, 3, scale, 3)
        self.layer3 = _Bottle2neck(C, C, 3, 4, scale, None)
        self.layer4 = nn.Conv1d(3 * C, 1536, 1)
        self.attention = nn.Sequential(
            nn.Conv1d(1536 * 3, 128, 1), nn.ReLU(), nn.BatchNorm1d(128), nn.Conv1d(128, 1536, 1), nn.Softmax(dim=2)
        )
        self.bn5 = nn.BatchNorm1d(3072)
        self.fc6 = nn.Linear(3072, n_out)
        self.bn6 = nn.BatchNorm1d(n_out)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave [B, T]`` float32 at 16 kHz -> embedding ``[B, n_out]`` (not L2-normalised)."""
        x = self.preprocess(wave)
        x = torch.log(torch.abs(self.conv1(x)) + 1e-6)
        x = x - x.mean(dim=-1, keepdim=True)
        # note: the official RawNet3 defines bn1 but its forward never applies it
        x1 = self.layer1(x)
        x2 = self.layer2(x1)
        x3 = self.layer3(F.max_pool1d(x1, 3) + x2)
        x = F.relu(self.layer4(torch.cat([F.max_pool1d(x1, 3), x2, x3], dim=1)))
        t = x.shape[-1]
        ctx = torch.cat([
            x,
            x.mean(dim=2, keepdim=True).repeat(1, 1, t),
            torch.sqrt(x.var(dim=2, keepdim=True).clamp(min=1e-4, max=1e4)).repeat(1, 1, t),
        ], dim=1)
        w = self.attention(ctx)
        mu = torch.sum(x * w, dim=2)
        sg = torch.sqrt((torch.sum(x * x * w, dim=2) - mu * mu).clamp(min=1e-4, max=1e4))
        x = self.fc6(self.bn5(torch.cat([mu, sg], dim=1)))
        return self.bn6(x) if self.out_bn else x

    @staticmethod
    def sizes_from_state_dict(sd: Mapping[str, torch.Tensor]) -> dict:
        """Constructor arguments read from the shapes (C, n_out, scale, sinc kernel; not the sinc stride)."""
        need = ["layer1.conv3.weight", "fc6.weight", "conv1.filterbank.n_", "layer1.convs.0.weight"]
        require(sd, need, "RawNet3")
        return dict(
            C=int(sd["layer1.conv3.weight"].shape[0]),
            n_out=int(sd["fc6.weight"].shape[0]),
            scale=1 + len({k.split(".")[2] for k in sd if k.startswith("layer1.convs.")}),
            sinc_kernel=2 * int(sd["conv1.filterbank.n_"].shape[-1]) + 1,
        )

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor], sinc_stride: int = 10) -> "RawNet3":
        """Build from RawNet3 weights (a ``{"model": ...}`` wrapper's inner dict, optional ``model.`` /
        ``weights.`` prefixes), sizes inferred; eval mode."""
        if isinstance(sd.get("model"), Mapping):  # the released model.pt: {"model": state_dict}
            sd = sd["model"]
        sd = {k: v for k, v in sd.items()}
        for p in ("weights.", "module."):  # fixture layout / DataParallel wrapper: keep only the prefixed keys
            if any(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}
        model = cls(sinc_stride=sinc_stride, **cls.sizes_from_state_dict(sd))
        load_strict(model, sd)
        return model.eval()


def official_windows(wave, n_samples: int = WINDOW, n_windows: int = N_WINDOWS) -> torch.Tensor:
    """Official windowing: wrap-pad clips shorter than ``n_samples`` to ``n_samples + 1``, then
    ``n_windows`` windows starting at ``int(linspace(0, len - n_samples, n_windows))`` -> ``[n_windows, n_samples]``."""
    audio = wave.detach().cpu().double().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave, dtype=np.float64)
    if audio.ndim != 1:
        raise VSSFlowError(f"RawNet3: audio must be mono [T], got shape {list(audio.shape)}; mix channels down first")
    if audio.shape[0] == 0:
        raise VSSFlowError("RawNet3: audio has no samples")
    if not np.isfinite(audio).all():
        raise VSSFlowError("RawNet3: audio contains NaN or Inf samples")
    if audio.shape[0] < n_samples:
        audio = np.pad(audio, (0, n_samples - audio.shape[0] + 1), "wrap")
    starts = np.linspace(0, audio.shape[0] - n_samples, num=n_windows)
    wins = np.stack([audio[int(s) : int(s) + n_samples] for s in starts], axis=0)
    return torch.from_numpy(wins.astype(np.float32))


@torch.no_grad()
def speaker_embedding(model: RawNet3, wave, sample_rate: int = SAMPLE_RATE, per_window: bool = False,
                      n_windows: int = N_WINDOWS, n_samples: int = WINDOW) -> torch.Tensor:
    """Official ``ref_audio_ebd``.

    Args:
        model: a loaded :class:`RawNet3` (eval mode).
        wave: mono audio ``[T]`` (or ``[1, T]``) float at ``sample_rate``.
        sample_rate: must be 16000 Hz (resample first with ``vssflow_core.audio.resample``).
        per_window: return the ``[10, 256]`` window embeddings instead of their mean.
        n_windows, n_samples: windowing (official: 10 windows of 48000 samples = 3 s).
    Returns:
        ``[256]`` float32 mean over the 10 windows (or ``[10, 256]``).
    """
    if int(sample_rate) != SAMPLE_RATE:
        raise VSSFlowError(
            f"RawNet3: audio must be {SAMPLE_RATE} Hz, got {sample_rate} Hz; resample with "
            f"vssflow_core.audio.resample.resample(wave, {sample_rate}, {SAMPLE_RATE})"
        )
    if isinstance(wave, torch.Tensor) and wave.dim() == 2 and wave.shape[0] == 1:
        wave = wave[0]
    wins = official_windows(wave, n_samples, n_windows)
    p = next(model.parameters())
    emb = model(wins.to(device=p.device, dtype=p.dtype)).float().cpu()
    return emb if per_window else emb.mean(0)
