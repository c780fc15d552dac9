"""The whole training pipeline of the tiny model in miniature (tools/train): the tokenizer,
the engine's caption embeddings, a VAE and a DiT trained for a few steps, assembled into a
model folder that the engine's strict loader accepts and serves end to end (through gRPC, by
longsana-bench-server). The DiT's loss falls over its few steps; the sampler's sigma table
and block partition are the served ones.

    /usr/bin/python3 -m unittest train_dit_test   # with LONGSANA_* set by CTest
"""

import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import torch

from train_paths import TINY, binary  # noqa: E402  (also puts tools/train on the path)
import dit  # noqa: E402
import toyworld  # noqa: E402
import train_dit  # noqa: E402
import train_tokenizer  # noqa: E402
import train_vae  # noqa: E402


class SamplerConventionsTest(unittest.TestCase):
    def test_sigma_table_and_blocks_are_the_served_ones(self):
        # model.md §7.1's nearest-entry values.
        sigmas = train_dit.sigma_of(torch.tensor([1000.0, 960.0, 889.0, 888.0, 727.0, 728.0]))
        for got, want in zip(sigmas.tolist(), [1.0, 0.959957, 0.889153, 0.887960, 0.727410,
                                               0.728400]):
            self.assertAlmostEqual(got, want, places=5)
        self.assertEqual(train_dit.segments(21), [(0, 11), (11, 21)])
        self.assertEqual(train_dit.segments(30), [(0, 10), (10, 20), (20, 30)])
        self.assertEqual(train_dit.segments(7), [(0, 7)])


class TrainDitTest(unittest.TestCase):
    def test_a_miniature_pipeline_trains_and_the_engine_serves_its_model(self):
        torch.set_num_threads(2)
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            model = root / "model"
            shutil.copytree(TINY, model)
            shutil.rmtree(model / "tokenizer")
            train_tokenizer.train(model / "tokenizer")
            # Captions of a handful of training scenes, through the engine's text path.
            scenes = [s for s in toyworld.training_scenes()][::40]
            prompts = [toyworld.caption(s, i) for i, s in enumerate(scenes)]
            (root / "captions.txt").write_text("\n".join(prompts) + "\n")
            run = subprocess.run([binary("LONGSANA_ENCODE_CAPTIONS", "longsana-encode-captions"),
                                  "--model", str(model), "--prompts", str(root / "captions.txt"),
                                  "--out", str(root / "captions.safetensors"), "--caption_len",
                                  "24"], capture_output=True, text=True)
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)

            vae, _ = train_vae.train(2, seed=0, batch=1)
            shutil.rmtree(model / "vae")
            train_vae.save(vae, model, seed=0)  # vae/ and vae_encoder.pt
            encoder, mean, std = train_dit.load_encoder(model)
            captions = train_dit.Captions(root / "captions.txt", root / "captions.safetensors")
            torch.manual_seed(0)
            net = dit.LongSanaDit(dit.Config.from_file(str(TINY / "transformer" / "config.json")))
            losses = train_dit.train(net, encoder, mean, std, captions, steps=8, batch=2)
            self.assertLess(sum(losses[-3:]) / 3, sum(losses[:3]) / 3, losses)
            shutil.rmtree(model / "transformer")
            train_dit.save(net, model)
            (model / "vae_encoder.pt").unlink()

            inspect = subprocess.run([binary("LONGSANA_INSPECT", "longsana-inspect"), str(model)],
                                     capture_output=True, text=True)
            self.assertEqual(inspect.returncode, 0, inspect.stdout + inspect.stderr)
            served = subprocess.run(
                [binary("LONGSANA_BENCH_SERVER", "longsana-bench-server"), f"--model_dir={model}",
                 "--caption_len=24", "--width=96", "--height=64", "--frames=41", "--repeats=1",
                 "--sessions=1", "--threads=2"], capture_output=True, text=True)
            self.assertEqual(served.returncode, 0, served.stdout + served.stderr)
            self.assertIn("SUMMARY | engine, 1 sessions of 96x64, 41 frames", served.stdout)


if __name__ == "__main__":
    unittest.main()
