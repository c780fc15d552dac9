"""The trainer's LongSANA DiT (model.md §3-§6), with autograd: the same computation as the
engine's DitModel (engine/models/longsana_dit/dit_model.cc) under the same diffusers keys, for
a batch of blocks that each read a context (the linear-attention sums S and z and the
temporal conv's previous frame) and return their own contributions, so that training can run
blocks in sequence the way the served sampler does. tests/train/dit_parity_test proves the
engine computes the same velocities and states from the weights this module saves.
"""

from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F
from torch import nn

TIMESTEP_CHANNELS = 256
SELF_ATTN_NORM_EPS = 1e-5
CROSS_ATTN_NORM_EPS = 1e-6
CAPTION_NORM_EPS = 1e-5
LINEAR_ATTN_EPS = 1e-8
ROPE_THETA = 10000.0


class Config:
    """The fields of a diffusers SanaVideoTransformer3DModel config.json the model reads."""

    def __init__(self, in_channels=16, out_channels=16, num_attention_heads=2,
                 attention_head_dim=32, num_layers=2, num_cross_attention_heads=2,
                 cross_attention_head_dim=32, cross_attention_dim=64, caption_channels=48,
                 mlp_ratio=3.0, patch_size=(1, 2, 2), norm_eps=1e-6, rope_max_seq_len=1024):
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_attention_heads = num_attention_heads
        self.attention_head_dim = attention_head_dim
        self.num_layers = num_layers
        self.num_cross_attention_heads = num_cross_attention_heads
        self.cross_attention_head_dim = cross_attention_head_dim
        self.cross_attention_dim = cross_attention_dim
        self.caption_channels = caption_channels
        self.mlp_ratio = mlp_ratio
        self.patch_size = list(patch_size)
        self.norm_eps = norm_eps
        self.rope_max_seq_len = rope_max_seq_len

    @property
    def hidden(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @classmethod
    def from_file(cls, path: str) -> "Config":
        with open(path) as f:
            j = json.load(f)
        keys = ("in_channels", "out_channels", "num_attention_heads", "attention_head_dim",
                "num_layers", "num_cross_attention_heads", "cross_attention_head_dim",
                "cross_attention_dim", "caption_channels", "mlp_ratio", "patch_size",
                "norm_eps", "rope_max_seq_len")
        return cls(**{k: j[k] for k in keys if k in j})

    def to_json(self) -> dict:
        return {"_class_name": "SanaVideoTransformer3DModel", "_diffusers_version": "0.36.0.dev0",
                "attention_bias": False, "attention_head_dim": self.attention_head_dim,
                "caption_channels": self.caption_channels,
                "cross_attention_dim": self.cross_attention_dim,
                "cross_attention_head_dim": self.cross_attention_head_dim, "dropout": 0.0,
                "guidance_embeds": False, "guidance_embeds_scale": 0.1,
                "in_channels": self.in_channels, "interpolation_scale": None,
                "mlp_ratio": self.mlp_ratio, "norm_elementwise_affine": False,
                "norm_eps": self.norm_eps, "num_attention_heads": self.num_attention_heads,
                "num_cross_attention_heads": self.num_cross_attention_heads,
                "num_layers": self.num_layers, "out_channels": self.out_channels,
                "patch_size": self.patch_size, "qk_norm": "rms_norm_across_heads",
                "rope_max_seq_len": self.rope_max_seq_len, "sample_size": 4}


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Normalise in fp32, cast back, then scale (the reference's order)."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * weight


def layer_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), eps=eps)


class Rope3d:
    """Wan-style 3-D RoPE angles per axis (model.md §6), in float64."""

    def __init__(self, head_dim: int, max_seq_len: int):
        h_dim = 2 * (head_dim // 6)
        t_dim = head_dim - 2 * h_dim
        self.axes = [self._angles(t_dim, max_seq_len), self._angles(h_dim, max_seq_len),
                     self._angles(h_dim, max_seq_len)]

    @staticmethod
    def _angles(dim: int, n: int) -> torch.Tensor:
        exponents = torch.arange(0, dim, 2, dtype=torch.float64)[: dim // 2] / dim
        inv_freq = 1.0 / torch.pow(torch.tensor(ROPE_THETA, dtype=torch.float64), exponents)
        return torch.outer(torch.arange(n, dtype=torch.float64), inv_freq)

    def table(self, offset: int, frames: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        t, r, c = self.axes
        angles = torch.cat([
            t[offset:offset + frames].view(frames, 1, 1, -1).expand(frames, h, w, -1),
            r[:h].view(1, h, 1, -1).expand(frames, h, w, -1),
            c[:w].view(1, 1, w, -1).expand(frames, h, w, -1)], dim=3).reshape(frames * h * w, -1)
        return torch.cos(angles), torch.sin(angles)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, N, H, d] (pairs of consecutive channels rotate), cos/sin [B, N, d/2]."""
    b, n, h, d = x.shape
    xp = x.to(cos.dtype).view(b, n, h, d // 2, 2)
    x0, x1 = xp[..., 0], xp[..., 1]
    c, s = cos.unsqueeze(2), sin.unsqueeze(2)
    return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=4).view(b, n, h, d).to(x.dtype)


class Block(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        d, cross, glu = cfg.hidden, cfg.cross_attention_dim, int(cfg.mlp_ratio * cfg.hidden)
        self.cfg = cfg
        self.scale_shift_table = nn.Parameter(torch.randn(6, d) / d ** 0.5)
        self.attn1 = nn.Module()
        self.attn1.to_q = nn.Linear(d, d, bias=False)
        self.attn1.to_k = nn.Linear(d, d, bias=False)
        self.attn1.to_v = nn.Linear(d, d, bias=False)
        self.attn1.norm_q = _Weight(d)
        self.attn1.norm_k = _Weight(d)
        self.attn1.to_out = nn.ModuleList([nn.Linear(d, d)])
        self.attn2 = nn.Module()
        self.attn2.to_q = nn.Linear(d, cross)
        self.attn2.to_k = nn.Linear(d, cross)
        self.attn2.to_v = nn.Linear(d, cross)
        self.attn2.norm_q = _Weight(cross)
        self.attn2.norm_k = _Weight(cross)
        self.attn2.to_out = nn.ModuleList([nn.Linear(cross, d)])
        self.ff = nn.Module()
        self.ff.conv_inverted = nn.Conv2d(d, 2 * glu, 1)
        self.ff.conv_depth = nn.Conv2d(2 * glu, 2 * glu, 3, padding=1, groups=2 * glu)
        self.ff.conv_point = nn.Conv2d(glu, d, 1, bias=False)
        self.ff.conv_temp = nn.Conv2d(d, d, (3, 1), bias=False)

    def self_attention(self, h, cos, sin, s_prev, z_prev):
        cfg = self.cfg
        b, n, d = h.shape
        heads, hd = cfg.num_attention_heads, cfg.attention_head_dim
        a = self.attn1
        q = F.relu(rms_norm(a.to_q(h), a.norm_q.weight, SELF_ATTN_NORM_EPS)).view(b, n, heads, hd)
        k = F.relu(rms_norm(a.to_k(h), a.norm_k.weight, SELF_ATTN_NORM_EPS)).view(b, n, heads, hd)
        v = a.to_v(h).view(b, n, heads, hd)
        q_rot = apply_rope(q, cos, sin).float().transpose(1, 2)
        k_rot = apply_rope(k, cos, sin).float().transpose(1, 2)
        qf, kf, vf = (t.float().transpose(1, 2) for t in (q, k, v))
        s_own = vf.transpose(-1, -2) @ k_rot  # [B, H, d_v, d_k]
        z_own = kf.sum(2)                     # [B, H, d]
        s = s_own + s_prev
        z = z_own + z_prev
        num = q_rot @ s.transpose(-1, -2)
        den = qf @ z.unsqueeze(-1)
        o = num * torch.reciprocal(den + LINEAR_ATTN_EPS)
        o = o.transpose(1, 2).reshape(b, n, d).to(h.dtype)
        return a.to_out[0](o), s_own, z_own

    def cross_attention(self, x, y, mask_bias):
        cfg = self.cfg
        b, n, _ = x.shape
        length = y.shape[1]
        heads, hd = cfg.num_cross_attention_heads, cfg.cross_attention_head_dim
        a = self.attn2
        q = rms_norm(a.to_q(x), a.norm_q.weight, CROSS_ATTN_NORM_EPS).view(b, n, heads, hd)
        k = rms_norm(a.to_k(y), a.norm_k.weight, CROSS_ATTN_NORM_EPS).view(b, length, heads, hd)
        v = a.to_v(y).view(b, length, heads, hd)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(hd) + mask_bias.float()
        o = torch.softmax(scores, -1).to(v.dtype) @ v
        return a.to_out[0](o.transpose(1, 2).reshape(b, n, heads * hd))

    def feed_forward(self, h, frames, gh, gw, conv_prev):
        b, n, d = h.shape
        ff = self.ff
        glu = ff.conv_point.weight.shape[1]
        u = F.silu(F.linear(h, ff.conv_inverted.weight.flatten(1), ff.conv_inverted.bias))
        u4 = u.view(b * frames, gh, gw, 2 * glu).permute(0, 3, 1, 2)
        u4 = F.conv2d(u4, ff.conv_depth.weight, ff.conv_depth.bias, padding=1, groups=2 * glu)
        u = u4.permute(0, 2, 3, 1).reshape(b, n, 2 * glu)
        p = u[..., :glu] * F.silu(u[..., glu:])
        big_p = F.linear(p, ff.conv_point.weight.flatten(1)).view(b, frames, gh * gw, d)
        left = conv_prev.to(big_p.dtype).unsqueeze(1)                  # [B, 1, hw, D]
        padded = torch.cat([left, big_p, torch.zeros_like(left)], 1)  # [B, F+2, hw, D]
        taps = torch.cat([padded[:, :frames], big_p, padded[:, 2:frames + 2]], -1)
        temp_w = ff.conv_temp.weight.squeeze(-1).permute(0, 2, 1).reshape(d, 3 * d)
        out = big_p + F.linear(taps, temp_w)
        return out.view(b, n, d), big_p[:, frames - 1]

    def forward(self, x, y, mask_bias, t0, cos, sin, frames, gh, gw, context):
        s_prev, z_prev, conv_prev = context
        b, _, d = x.shape
        m = (self.scale_shift_table.unsqueeze(0) + t0.view(b, 6, d)).chunk(6, 1)
        h = layer_norm(x, self.cfg.norm_eps) * (1 + m[1]) + m[0]
        attn, s_own, z_own = self.self_attention(h, cos, sin, s_prev, z_prev)
        out = x + m[2] * attn
        out = out + self.cross_attention(out, y, mask_bias)
        h = layer_norm(out, self.cfg.norm_eps) * (1 + m[4]) + m[3]
        ffn, conv_own = self.feed_forward(h, frames, gh, gw, conv_prev)
        return out + m[5] * ffn, (s_own, z_own, conv_own)


class _Weight(nn.Module):
    """A norm's weight, under `<name>.weight`."""

    def __init__(self, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))


class LongSanaDit(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        d, p = cfg.hidden, cfg.patch_size
        self.patch_embedding = nn.Conv3d(cfg.in_channels, d, tuple(p), stride=tuple(p))
        self.time_embed = nn.Module()
        self.time_embed.emb = nn.Module()
        self.time_embed.emb.timestep_embedder = nn.Module()
        self.time_embed.emb.timestep_embedder.linear_1 = nn.Linear(TIMESTEP_CHANNELS, d)
        self.time_embed.emb.timestep_embedder.linear_2 = nn.Linear(d, d)
        self.time_embed.linear = nn.Linear(d, 6 * d)
        self.caption_projection = nn.Module()
        self.caption_projection.linear_1 = nn.Linear(cfg.caption_channels, d)
        self.caption_projection.linear_2 = nn.Linear(d, d)
        self.caption_norm = _Weight(d)
        self.transformer_blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.num_layers)])
        self.scale_shift_table = nn.Parameter(torch.randn(2, d) / d ** 0.5)
        self.proj_out = nn.Linear(d, cfg.out_channels * p[0] * p[1] * p[2])
        self.rope = Rope3d(cfg.attention_head_dim, cfg.rope_max_seq_len)

    def empty_context(self, batch: int, h: int, w: int) -> list:
        """Per layer (S, z, conv) of a fresh session: zeros."""
        cfg = self.cfg
        heads, hd = cfg.num_attention_heads, cfg.attention_head_dim
        hw = (h // cfg.patch_size[1]) * (w // cfg.patch_size[2])
        return [(torch.zeros(batch, heads, hd, hd), torch.zeros(batch, heads, hd),
                 torch.zeros(batch, hw, cfg.hidden)) for _ in range(cfg.num_layers)]

    def timestep_embedding(self, t: torch.Tensor) -> torch.Tensor:
        half = TIMESTEP_CHANNELS // 2
        freqs = torch.exp(torch.arange(0, half, dtype=torch.float32) * (-math.log(10000.0)) / half)
        args = t.float().unsqueeze(1) * freqs.unsqueeze(0)
        emb = torch.cat([torch.cos(args), torch.sin(args)], -1)
        te = self.time_embed.emb.timestep_embedder
        return te.linear_2(F.silu(te.linear_1(emb)))

    def forward(self, latent, timestep, caption, mask, frame_offsets, context):
        """latent [B, C, F, H, W]; timestep [B] (truncated to integers, as served); caption
        [B, L, Cc]; mask [B, L] 0/1; frame_offsets: B ints (absolute latent frame of the
        block's start); context: per layer (S [B, H, d, d], z [B, H, d], conv [B, hw, D]).
        Returns v [B, C_out, F, H, W] and the block's own per-layer (S, z, conv)."""
        cfg = self.cfg
        b, c, frames, height, width = latent.shape
        _, ph, pw = cfg.patch_size
        gh, gw = height // ph, width // pw
        n = frames * gh * gw
        cos_rows, sin_rows = zip(*(self.rope.table(int(o), frames, gh, gw) for o in frame_offsets))
        rope_dtype = torch.float64 if latent.dtype == torch.float32 else torch.float32
        cos = torch.stack(cos_rows).to(rope_dtype)
        sin = torch.stack(sin_rows).to(rope_dtype)

        x = latent.view(b, c, frames, gh, ph, gw, pw).permute(0, 2, 3, 5, 1, 4, 6)
        x = x.reshape(b, n, c * ph * pw)
        x = F.linear(x, self.patch_embedding.weight.reshape(cfg.hidden, -1),
                     self.patch_embedding.bias)
        temb = self.timestep_embedding(torch.trunc(timestep))
        t0 = self.time_embed.linear(F.silu(temb))
        cp = self.caption_projection
        y = cp.linear_2(F.gelu(cp.linear_1(caption), approximate="tanh"))
        y = rms_norm(y, self.caption_norm.weight, CAPTION_NORM_EPS)
        mask_bias = ((1.0 - mask.float()) * -10000.0).view(b, 1, 1, -1)
        own = []
        for block, ctx in zip(self.transformer_blocks, context):
            x, contribution = block(x, y, mask_bias, t0, cos, sin, frames, gh, gw, ctx)
            own.append(contribution)
        mod = self.scale_shift_table.unsqueeze(0) + temb.unsqueeze(1)
        x = layer_norm(x, cfg.norm_eps) * (1 + mod[:, 1:2]) + mod[:, 0:1]
        x = self.proj_out(x)
        co = cfg.out_channels
        v = x.view(b, frames, gh, gw, ph, pw, co).permute(0, 6, 1, 2, 4, 3, 5)
        return v.reshape(b, co, frames, height, width).float(), own

    def served_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone().float() for k, v in self.state_dict().items()}
