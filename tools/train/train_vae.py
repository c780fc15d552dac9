"""Trains the tiny Wan VAE on toy-world clips (issue 16), reproducibly from a seed.

The decoder is the one the engine serves (wan_vae.Decoder, under the diffusers keys); the
encoder is training-only. Loss: mean absolute pixel error in [-1, 1] plus a small penalty on
the latents' size (a plain autoencoder: the DiT learns the latent distribution itself; the
per-channel mean and std of the latents go into the served config, which the engine uses to
normalise, model.md §8.1).

    /usr/bin/python3 tools/train/train_vae.py --steps 2000 --out runs/vae    # the real run
    /usr/bin/python3 tools/train/train_vae.py --steps 20 --out /tmp/vae      # a smoke run

writes OUT/vae/{config.json, diffusion_pytorch_model.safetensors}, OUT/vae_encoder.pt (for
the DiT's training data) and OUT/vae_log.csv (step, loss, seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import safetensors_io  # noqa: E402
from run_log import RunLog  # noqa: E402
import toyworld  # noqa: E402
import wan_vae  # noqa: E402

CLIP_FRAMES = 1 + 4 * 4  # 17 video frames -> 5 latent frames: the first-frame path and four more


def clips_to_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """uint8 [T, H, W, 3] clips -> [B, 3, T, H, W] in [-1, 1]."""
    x = torch.from_numpy(np.stack(frames)).float().div(127.5).sub(1.0)
    return x.permute(0, 4, 1, 2, 3).contiguous()


def train(steps: int, seed: int = 0, batch: int = 4, lr: float = 2e-3,
          config: wan_vae.Config | None = None, log=None) -> tuple[wan_vae.WanVae, list[float]]:
    torch.manual_seed(seed)
    vae = wan_vae.WanVae(config or wan_vae.Config())
    optimiser = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=max(steps, 2),
                                                   pct_start=0.1)
    stream = toyworld.training_clips(seed, CLIP_FRAMES)
    losses = []
    start = time.monotonic()
    for step in range(steps):
        video = clips_to_tensor([next(stream)[2] for _ in range(batch)])
        z = vae.encoder(video)
        recon = vae.decode_vae_latent(z)
        loss = (recon - video).abs().mean() + 1e-4 * z.pow(2).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        losses.append(float(loss))
        if log is not None:
            log(step, losses[-1], time.monotonic() - start)
    return vae.eval(), losses


@torch.no_grad()
def latent_statistics(vae: wan_vae.WanVae, seed: int, clips: int = 32) -> tuple[list, list]:
    """Per-channel mean and std of the encoder's latents over fresh training clips."""
    stream = toyworld.training_clips(seed + 1, CLIP_FRAMES)
    z = vae.encoder(clips_to_tensor([next(stream)[2] for _ in range(clips)]))
    dims = (0, 2, 3, 4)
    std = z.std(dim=dims).clamp_min(1e-3)
    return z.mean(dim=dims).tolist(), std.tolist()


def save(vae: wan_vae.WanVae, out: Path, seed: int) -> None:
    mean, std = latent_statistics(vae, seed)
    vae.cfg.latents_mean, vae.cfg.latents_std = mean, std
    (out / "vae").mkdir(parents=True, exist_ok=True)
    with open(out / "vae" / "config.json", "w") as f:
        json.dump(vae.cfg.to_json(), f, indent=2)
    safetensors_io.save(vae.served_state_dict(),
                        str(out / "vae" / "diffusion_pytorch_model.safetensors"))
    torch.save(vae.encoder.state_dict(), out / "vae_encoder.pt")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with RunLog(out / "vae_log.csv", "vae") as log:
        vae, losses = train(args.steps, args.seed, args.batch, args.lr, log=log)
    save(vae, out, args.seed)
    print(f"vae: {args.steps} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}; saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
