"""Training smoke test of the tiny Wan VAE (tools/train/train_vae.py): a few steps from
scratch lower the loss, the run is reproducible from its seed, and what it saves is a `vae/`
folder the engine's strict loader accepts (longsana-inspect), with the latents' statistics in
its config.

    LONGSANA_INSPECT=build/bin/longsana-inspect /usr/bin/python3 -m unittest train_vae_test
"""

import json
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import torch

from train_paths import TINY, binary  # noqa: E402  (also puts tools/train on the path)
import train_vae  # noqa: E402



class TrainVaeTest(unittest.TestCase):
    def test_a_few_steps_lower_the_loss_reproducibly_and_save_a_loadable_vae(self):
        torch.set_num_threads(2)
        vae, losses = train_vae.train(12, seed=0, batch=2)
        first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
        self.assertLess(last, 0.8 * first, losses)
        # The same seed and length: the same run, step for step (the learning-rate schedule
        # depends on the length, so a shorter run is another run after its first step).
        short = train_vae.train(3, seed=0, batch=2)[1]
        self.assertEqual(train_vae.train(3, seed=0, batch=2)[1], short)
        self.assertEqual(short[0], losses[0])

        inspect = binary("LONGSANA_INSPECT", "longsana-inspect")
        with tempfile.TemporaryDirectory() as d:
            model = Path(d) / "model"
            shutil.copytree(TINY, model)
            shutil.rmtree(model / "vae")
            train_vae.save(vae, model, seed=0)
            config = json.loads((model / "vae" / "config.json").read_text())
            self.assertEqual(len(config["latents_std"]), config["z_dim"])
            self.assertTrue(all(s > 0 for s in config["latents_std"]))
            run = subprocess.run([inspect, str(model)], capture_output=True, text=True)
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            self.assertIn("vae", run.stdout)


if __name__ == "__main__":
    unittest.main()
