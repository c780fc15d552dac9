"""The whole training pipeline of the tiny model in miniature (tools/train/build_model.py):
the tokenizer, the engine's caption embeddings, a VAE and a DiT trained for a few steps,
assembled into a model folder that the engine's strict loader accepts and serves end to end
(through gRPC, by longsana-bench-server). The DiT's loss falls over its few steps; the sampler's sigma table
and block partition are the served ones.

    /usr/bin/python3 -m unittest train_dit_test   # with LONGSANA_* set by CTest
"""

import subprocess
import tempfile
import unittest
from pathlib import Path

import torch

from train_paths import TINY, binary  # noqa: E402  (also puts tools/train on the path)
import build_model  # noqa: E402
import dit  # noqa: E402
import toyworld  # noqa: E402
import train_dit  # noqa: E402


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
            out = Path(d)
            tiny_dit = dit.Config.from_file(str(TINY / "transformer" / "config.json"))
            timings, losses = build_model.build(
                out, binary("LONGSANA_ENCODE_CAPTIONS", "longsana-encode-captions"),
                vae_steps=2, dit_steps=8, vae_batch=1, dit_batch=2, dit_config=tiny_dit,
                scenes=toyworld.training_scenes()[::40])
            self.assertLess(sum(losses[-3:]) / 3, sum(losses[:3]) / 3, losses)
            self.assertEqual(set(timings) >= {"tokenizer", "vae", "captions", "dit"}, True)
            model = out / "model"
            self.assertEqual(sorted(p.name for p in model.iterdir()),
                             ["model_index.json", "scheduler", "text_encoder", "tokenizer",
                              "transformer", "vae"])
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
