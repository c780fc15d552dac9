"""Builds the tiny trained LongSANA model folder end to end (issue 16): tokenizer, VAE,
caption embeddings through the engine's own text path, DiT, then the folder in the diffusers
layout the engine loads (the text encoder is the tiny random Gemma-2, frozen; the scheduler and
model_index.json come from the tiny random model).

    /usr/bin/python3 tools/train/build_model.py --out runs/toy \\
        --encode-captions build/bin/longsana-encode-captions [--vae-steps 2000] [--dit-steps 3000]

writes OUT/model/ (the folder to serve) and OUT/{vae_log,dit_log}.csv, OUT/timings.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dit  # noqa: E402
import toyworld  # noqa: E402
import train_dit  # noqa: E402
import train_tokenizer  # noqa: E402
import train_vae  # noqa: E402
from run_log import RunLog  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "testdata" / "tiny-longsana"
CAPTION_LEN = 24


def training_prompts(per_scene: int, seed: int) -> list[str]:
    """`per_scene` caption variants of every training scene (none of the held-out pairs)."""
    rng = np.random.default_rng(seed)
    prompts = set()
    for scene in toyworld.training_scenes():
        for _ in range(per_scene):
            prompts.add(toyworld.random_caption(scene, rng))
    return sorted(prompts)


def build(out: Path, encode_captions: str, vae_steps: int, dit_steps: int, seed: int = 0,
          per_scene: int = 4, vae_batch: int = 4, dit_batch: int = 8,
          dit_config: dit.Config | None = None,
          scenes: list | None = None) -> tuple[dict, list[float]]:
    """Returns the time each stage took (seconds) and the DiT's losses. `scenes` replaces the
    training captions by one caption per given scene (tests)."""
    timings = {}
    model = out / "model"
    if model.exists():
        shutil.rmtree(model)
    model.mkdir(parents=True)
    t0 = time.monotonic()
    train_tokenizer.train(model / "tokenizer")
    timings["tokenizer"] = time.monotonic() - t0
    for part in ("text_encoder", "scheduler"):
        shutil.copytree(TINY / part, model / part)
    shutil.copy(TINY / "model_index.json", model / "model_index.json")

    t0 = time.monotonic()
    with RunLog(out / "vae_log.csv", "vae") as log:
        vae, _ = train_vae.train(vae_steps, seed, vae_batch, log=log)
    train_vae.save(vae, model, seed)
    (model / "vae_encoder.pt").replace(out / "vae_encoder.pt")
    timings["vae"] = time.monotonic() - t0

    t0 = time.monotonic()
    prompts = (training_prompts(per_scene, seed) if scenes is None
               else [toyworld.caption(s, i) for i, s in enumerate(scenes)])
    (out / "captions.txt").write_text("\n".join(prompts) + "\n")
    # The engine's text path needs a whole model folder: the tiny random DiT stands in.
    shutil.copytree(TINY / "transformer", model / "transformer")
    subprocess.run([encode_captions, "--model", str(model), "--prompts", str(out / "captions.txt"),
                    "--out", str(out / "captions.safetensors"), "--caption_len", str(CAPTION_LEN)],
                   check=True, capture_output=True, text=True)
    shutil.rmtree(model / "transformer")
    timings["captions"] = time.monotonic() - t0

    t0 = time.monotonic()
    shutil.copy(out / "vae_encoder.pt", model / "vae_encoder.pt")
    encoder, mean, std = train_dit.load_encoder(model)
    (model / "vae_encoder.pt").unlink()
    captions = train_dit.Captions(out / "captions.txt", out / "captions.safetensors")
    cfg = dit_config or dit.Config(num_layers=4, num_attention_heads=4, cross_attention_dim=128,
                                   num_cross_attention_heads=4, in_channels=vae.cfg.z_dim,
                                   out_channels=vae.cfg.z_dim,
                                   caption_channels=captions.embeddings.shape[-1])
    torch.manual_seed(seed)
    net = dit.LongSanaDit(cfg)
    with RunLog(out / "dit_log.csv", "dit") as log:
        losses = train_dit.train(net, encoder, mean, std, captions, dit_steps, seed, dit_batch,
                                 log=log)
    train_dit.save(net, model)
    timings["dit"] = time.monotonic() - t0
    timings["dit_loss_first"], timings["dit_loss_last"] = losses[0], losses[-1]
    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    return timings, losses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--encode-captions", default=str(ROOT / "build" / "bin" /
                                                         "longsana-encode-captions"))
    parser.add_argument("--vae-steps", type=int, default=2000)
    parser.add_argument("--dit-steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    timings, _ = build(Path(args.out), args.encode_captions, args.vae_steps, args.dit_steps,
                       args.seed)
    print(json.dumps(timings, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
