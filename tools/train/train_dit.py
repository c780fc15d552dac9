"""Trains the tiny LongSANA DiT (issue 16) block by block for the served 4-step LongLive
sampler (model.md §7), on toy-world clips encoded by the trained VAE's encoder and captions
embedded by the engine's own text path (longsana-encode-captions).

Each training video is split into blocks as the sampler splits it ([0, 10 + r, 20 + r, ...]).
Block j is noised at one of the sampler's timesteps (1000, 960, 888, 728: the served default,
bf16-rounded) and the loss is the flow-matching velocity error; its context is the cache pass
(timestep 0) over the earlier blocks, computed by the model itself with gradients, from the
clean latents plus a little noise so the model learns to continue from imperfect context, as
it must from its own samples at inference. Clips start at the frame's centre, so a caption
and the context determine the video and regression gives sharp samples.

    /usr/bin/python3 tools/train/train_dit.py --vae runs/tiny --captions runs/tiny/captions \\
        --steps 3000 --out runs/tiny
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dit  # noqa: E402
import safetensors_io  # noqa: E402
from run_log import RunLog  # noqa: E402
import toyworld  # noqa: E402
import train_vae  # noqa: E402
import wan_vae  # noqa: E402

MODEL_TIMESTEPS = (1000.0, 960.0, 888.0, 728.0)  # what the served model sees per step
BLOCK_FRAMES = 10
CONTEXT_NOISE = 0.05


def sigma_of(t: torch.Tensor) -> torch.Tensor:
    """The sampler's sigma for a timestep: the nearest entry of the shifted table (§7.1)."""
    base = torch.linspace(1.0, 0.0, 1001, dtype=torch.float32)[:-1]
    sigmas = 7.0 * base / (1.0 + 6.0 * base)
    table = 1000.0 * sigmas
    index = (table.unsqueeze(0) - t.float().unsqueeze(1)).abs().argmin(dim=1)
    return sigmas[index]


def segments(latent_frames: int) -> list[tuple[int, int]]:
    """The sampler's blocks: the first absorbs the remainder (§7.2)."""
    if latent_frames < BLOCK_FRAMES:
        return [(0, latent_frames)]
    r, n = latent_frames % BLOCK_FRAMES, latent_frames // BLOCK_FRAMES
    bounds = [0] + [BLOCK_FRAMES * k + r for k in range(1, n + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


class Captions:
    """The engine's caption embeddings of a prompt list (longsana-encode-captions output)."""

    def __init__(self, prompts_file: Path, embeddings_file: Path):
        prompts = [p for p in prompts_file.read_text().split("\n") if p]
        t = safetensors_io.load(str(embeddings_file))
        self.index = {p: i for i, p in enumerate(prompts)}
        self.embeddings, self.masks = t["embeddings"], t["masks"]
        self.scenes = {}
        for p in prompts:
            self.scenes.setdefault(toyworld.parse_caption(p), []).append(p)

    def get(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.index[p] for p in prompts]
        return self.embeddings[rows], self.masks[rows]


def load_encoder(vae_dir: Path) -> tuple[wan_vae.WanVae, torch.Tensor, torch.Tensor]:
    cfg = wan_vae.Config.from_file(str(vae_dir / "vae" / "config.json"))
    vae = wan_vae.WanVae(cfg)
    vae.encoder.load_state_dict(torch.load(vae_dir / "vae_encoder.pt"))
    vae.eval()
    mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1)
    return vae, mean, std


def add_contribution(context, own):
    return [(s + s_own, z + z_own, conv_own)
            for (s, z, _), (s_own, z_own, conv_own) in zip(context, own)]


def train(model: dit.LongSanaDit, encoder: wan_vae.WanVae, mean: torch.Tensor,
          std: torch.Tensor, captions: Captions, steps: int, seed: int = 0, batch: int = 8,
          latent_frames: int = 21, lr: float = 1e-3, log=None) -> list[float]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr,
                                                   total_steps=max(steps, 2), pct_start=0.05)
    scenes = [s for s in captions.scenes if not s.held_out]
    video_frames = 1 + 4 * (latent_frames - 1)
    centre = (toyworld.WIDTH / 2, toyworld.HEIGHT / 2)
    losses = []
    start = time.monotonic()
    model.train()
    for step in range(steps):
        chosen = [scenes[int(rng.integers(len(scenes)))] for _ in range(batch)]
        prompts = [captions.scenes[s][int(rng.integers(len(captions.scenes[s])))] for s in chosen]
        clips = [toyworld.render(s, video_frames, start=centre) for s in chosen]
        with torch.no_grad():
            z = (encoder.encoder(train_vae.clips_to_tensor(clips)) - mean) / std
        caption, mask = captions.get(prompts)
        context = model.empty_context(batch, z.shape[3], z.shape[4])
        loss = torch.zeros(())
        blocks = segments(latent_frames)
        for a, b in blocks:
            x0 = z[:, :, a:b]
            t = torch.tensor([MODEL_TIMESTEPS[int(rng.integers(4))] for _ in range(batch)])
            sigma = sigma_of(t).view(-1, 1, 1, 1, 1)
            noise = torch.randn_like(x0)
            x_t = (1 - sigma) * x0 + sigma * noise
            v, _ = model(x_t, t, caption, mask, [a] * batch, context)
            loss = loss + F.mse_loss(v, noise - x0) / len(blocks)
            # The cache pass over this block, as the sampler runs it on its own x0.
            noisy_x0 = x0 + CONTEXT_NOISE * torch.randn_like(x0)
            _, own = model(noisy_x0, torch.zeros(batch), caption, mask, [a] * batch, context)
            context = add_contribution(context, own)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        losses.append(float(loss))
        if log is not None:
            log(step, losses[-1], time.monotonic() - start)
    model.eval()
    return losses


def save(model: dit.LongSanaDit, out: Path) -> None:
    (out / "transformer").mkdir(parents=True, exist_ok=True)
    with open(out / "transformer" / "config.json", "w") as f:
        json.dump(model.cfg.to_json(), f, indent=2)
    safetensors_io.save(model.served_state_dict(),
                        str(out / "transformer" / "diffusion_pytorch_model.safetensors"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vae", required=True, help="train_vae.py's output folder")
    parser.add_argument("--captions", required=True,
                        help="prefix of PREFIX.txt (prompts) and PREFIX.safetensors (embeddings)")
    parser.add_argument("--config", help="transformer config.json (default: tiny, 4 layers)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    encoder, mean, std = load_encoder(Path(args.vae))
    captions = Captions(Path(args.captions + ".txt"), Path(args.captions + ".safetensors"))
    cfg = (dit.Config.from_file(args.config) if args.config else
           dit.Config(num_layers=4, num_attention_heads=4, cross_attention_dim=128,
                      num_cross_attention_heads=4,
                      in_channels=encoder.cfg.z_dim, out_channels=encoder.cfg.z_dim,
                      caption_channels=captions.embeddings.shape[-1]))
    torch.manual_seed(args.seed)
    model = dit.LongSanaDit(cfg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with RunLog(out / "dit_log.csv", "dit") as log:
        losses = train(model, encoder, mean, std, captions, args.steps, args.seed, args.batch,
                       lr=args.lr, log=log)
    save(model, out)
    print(f"dit: {args.steps} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}; saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
