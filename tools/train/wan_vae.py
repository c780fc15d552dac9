"""The trainer's Wan2.1 VAE (model.md §8): the decoder exactly as the engine serves it, under
the diffusers keys the engine loads, computed over a whole clip at once (a causal conv's
left padding of zeros is the streaming cache's zero history; tests/train/wan_vae_parity_test
proves the engine's frame-by-frame decoder computes the same video from the same weights),
and a small training-only encoder.

The encoder is ours, not Wan's (only the decoder is served; the checkpoint carries no encoder
keys, which the engine ignores anyway): latent frame 0 from video frame 0, each later latent
frame from the next 4 video frames, 8x down in space, so a clip of 1 + 4(T - 1) frames maps
to T latent frames and back.
"""

from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F
from torch import nn


class Config:
    """The fields of a diffusers AutoencoderKLWan config.json that the decoder reads."""

    def __init__(self, base_dim: int = 8, z_dim: int = 16, dim_mult=(1, 2, 4, 4),
                 num_res_blocks: int = 2, temperal_downsample=(False, True, True),
                 latents_mean=None, latents_std=None):
        self.base_dim = base_dim
        self.z_dim = z_dim
        self.dim_mult = list(dim_mult)
        self.num_res_blocks = num_res_blocks
        self.temperal_downsample = list(temperal_downsample)
        self.latents_mean = list(latents_mean) if latents_mean is not None else [0.0] * z_dim
        self.latents_std = list(latents_std) if latents_std is not None else [1.0] * z_dim

    @classmethod
    def from_file(cls, path: str) -> "Config":
        with open(path) as f:
            j = json.load(f)
        return cls(j["base_dim"], j["z_dim"], j["dim_mult"], j["num_res_blocks"],
                   j["temperal_downsample"], j.get("latents_mean"), j.get("latents_std"))

    def to_json(self) -> dict:
        return {"_class_name": "AutoencoderKLWan", "_diffusers_version": "0.33.0.dev0",
                "attn_scales": [], "base_dim": self.base_dim, "dim_mult": self.dim_mult,
                "dropout": 0.0, "latents_mean": self.latents_mean,
                "latents_std": self.latents_std, "num_res_blocks": self.num_res_blocks,
                "temperal_downsample": self.temperal_downsample, "z_dim": self.z_dim}

    def decoder_dims(self) -> list[int]:
        mult = self.dim_mult
        return [self.base_dim * m for m in [mult[-1]] + mult[::-1]]


class CausalConv3d(nn.Conv3d):
    """Zero padding: spatially on both sides, temporally kernel - 1 frames on the left only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kt, kh, kw = self.kernel_size
        x = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2, kt - 1, 0))
        return F.conv3d(x, self.weight, self.bias)


class RmsNorm(nn.Module):
    """F.normalize over channels x sqrt(C) x gamma (no bias)."""

    def __init__(self, channels: int, images: bool):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones((channels, 1, 1) if images else (channels, 1, 1, 1)))
        self.scale = channels ** 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


class Residual(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = RmsNorm(cin, images=False)
        self.conv1 = CausalConv3d(cin, cout, 3)
        self.norm2 = RmsNorm(cout, images=False)
        self.conv2 = CausalConv3d(cout, cout, 3)
        self.conv_shortcut = CausalConv3d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        x = self.conv1(F.silu(self.norm1(x)))
        x = self.conv2(F.silu(self.norm2(x)))
        return x + h


class Attention(nn.Module):
    """Single-head attention within each frame."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = RmsNorm(c, images=True)
        self.to_qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        qkv = self.to_qkv(self.norm(y)).reshape(b * t, 3 * c, h * w).transpose(1, 2)
        q, k, v = qkv.chunk(3, dim=-1)
        p = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1)
        y = (p @ v).transpose(1, 2).reshape(b * t, c, h, w)
        y = self.proj(y).reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        return y + x


class Upsample(nn.Module):
    """upsample3d (time_conv: frame 0 alone, every later frame doubled) or upsample2d, then
    nearest 2x and Conv2d 3x3 C -> C/2 per frame."""

    def __init__(self, c: int, temporal: bool):
        super().__init__()
        self.time_conv = CausalConv3d(c, 2 * c, (3, 1, 1)) if temporal else None
        self.resample = nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"),
                                      nn.Conv2d(c, c // 2, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_conv is not None and x.shape[2] > 1:
            first, rest = x[:, :, :1], x[:, :, 1:]
            y = self.time_conv(rest)  # [B, 2C, T-1, H, W]: channels [0:C] frame 2t, [C:2C] 2t+1
            b, c2, t, h, w = y.shape
            y = y.reshape(b, 2, c2 // 2, t, h, w)
            y = torch.stack((y[:, 0], y[:, 1]), 3).reshape(b, c2 // 2, 2 * t, h, w)
            x = torch.cat([first, y], 2)
        b, c, t, h, w = x.shape
        y = self.resample(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
        return y.reshape(b, t, c // 2, 2 * h, 2 * w).permute(0, 2, 1, 3, 4)


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, num_res: int, upsample: str | None):
        super().__init__()
        self.resnets = nn.ModuleList()
        for _ in range(num_res + 1):
            self.resnets.append(Residual(cin, cout))
            cin = cout
        self.upsamplers = nn.ModuleList(
            [Upsample(cout, upsample == "3d")] if upsample is not None else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for r in self.resnets:
            x = r(x)
        for u in self.upsamplers:
            x = u(x)
        return x


class MidBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.resnets = nn.ModuleList([Residual(c, c), Residual(c, c)])
        self.attentions = nn.ModuleList([Attention(c)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Decoder(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        dims = cfg.decoder_dims()
        up_t = cfg.temperal_downsample[::-1]
        self.conv_in = CausalConv3d(cfg.z_dim, dims[0], 3)
        self.mid_block = MidBlock(dims[0])
        self.up_blocks = nn.ModuleList()
        for i in range(len(dims) - 1):
            cin = dims[i] // 2 if i > 0 else dims[i]
            last = i == len(cfg.dim_mult) - 1
            self.up_blocks.append(UpBlock(cin, dims[i + 1], cfg.num_res_blocks,
                                          None if last else ("3d" if up_t[i] else "2d")))
        self.norm_out = RmsNorm(dims[-1], images=False)
        self.conv_out = CausalConv3d(dims[-1], 3, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class Encoder(nn.Module):
    """Training only (not Wan's): video [B, 3, 1 + 4(T-1), H, W] in [-1, 1] -> z_vae
    [B, z_dim, T, H/8, W/8]. Frame 0 alone, then groups of 4 frames stacked on channels."""

    def __init__(self, cfg: Config, width: int = 32):
        super().__init__()

        def tower(cin: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, width, 3, padding=1), nn.SiLU(),
                nn.Conv2d(width, width, 4, stride=2, padding=1), nn.SiLU(),
                nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.SiLU(),
                nn.Conv2d(2 * width, 2 * width, 4, stride=2, padding=1), nn.SiLU(),
                nn.Conv2d(2 * width, cfg.z_dim, 3, padding=1))

        self.first = tower(3)
        self.rest = tower(12)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = video.shape
        if (f - 1) % 4:
            raise ValueError(f"video frames: {f} is not 1 + 4k")
        z0 = self.first(video[:, :, 0])
        outs = [z0.unsqueeze(2)]
        if f > 1:
            groups = video[:, :, 1:].reshape(b, c, (f - 1) // 4, 4, h, w)
            groups = groups.permute(0, 2, 1, 3, 4, 5).reshape(b * (f - 1) // 4, 4 * c, h, w)
            zr = self.rest(groups)
            zr = zr.reshape(b, (f - 1) // 4, *zr.shape[1:]).permute(0, 2, 1, 3, 4)
            outs.append(zr)
        return torch.cat(outs, 2)


class WanVae(nn.Module):
    """post_quant_conv + decoder (served), encoder (training only)."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.post_quant_conv = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = Decoder(cfg)
        self.encoder = Encoder(cfg)

    def decode_vae_latent(self, z_vae: torch.Tensor) -> torch.Tensor:
        """z_vae [B, z, T, h, w] -> video [B, 3, 1 + 4(T-1), 8h, 8w], before clamping."""
        return self.decoder(self.post_quant_conv(z_vae))

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """The DiT's normalised latent to the VAE's, as the engine does it (binding decision 4:
        z / (1/std) + mean, std in fp32 and its reciprocal taken in fp32, as Wan's code does)."""
        inv = 1.0 / torch.tensor(self.cfg.latents_std, dtype=torch.float32)
        mean = torch.tensor(self.cfg.latents_mean, dtype=torch.float32)
        return z / inv.view(1, -1, 1, 1, 1) + mean.view(1, -1, 1, 1, 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_vae_latent(self.denormalize(z))

    def served_state_dict(self) -> dict[str, torch.Tensor]:
        """The decoder's parameters under the diffusers keys the engine loads."""
        keys = {}
        for name, p in self.state_dict().items():
            if name.startswith("encoder."):
                continue
            keys[name] = p.detach().clone().float()
        return keys


def to_uint8_frames(video: torch.Tensor) -> torch.Tensor:
    """[1, 3, F, H, W] in [-1, 1] -> [F, H, W, 3] uint8, the reference's truncating cast."""
    v = video.clamp(-1, 1)[0].permute(1, 2, 3, 0)
    return (127.5 * v + 127.5).clamp(0, 255).to(torch.uint8)
