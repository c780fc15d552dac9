"""The trainer's LongSANA DiT (tools/train/dit.py, with autograd) computes what the engine's
DitModel computes from the same weights: the trainer saves its weights into a model folder and
writes goldens in the `dit_forward` and `dit_state` formats (tests/testdata/GOLDENS.md
§2.3-2.4), and `longsana-parity dit-forward|dit-state` compares them with the fp32
tolerances: a block's velocity, the cache pass's state (S, z and the conv frame per layer),
and a later block reading that state at its absolute frame offset.

    LONGSANA_PARITY=build/bin/longsana-parity /usr/bin/python3 -m unittest dit_parity_test
"""

import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import torch

from train_paths import TINY, binary  # noqa: E402  (also puts tools/train on the path)
import dit  # noqa: E402
import safetensors_io  # noqa: E402



def random_dit(seed: int) -> dit.LongSanaDit:
    torch.manual_seed(seed)
    model = dit.LongSanaDit(dit.Config.from_file(str(TINY / "transformer" / "config.json")))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))  # norms that do something
    return model.eval()


def caption_inputs(cfg: dit.Config, length: int = 24, valid: int = 7):
    g = torch.Generator().manual_seed(11)
    caption = torch.randn(1, length, cfg.caption_channels, generator=g)
    mask = torch.zeros(1, length, dtype=torch.int64)
    mask[:, :valid] = 1
    return caption, mask


class DitParityTest(unittest.TestCase):
    def setUp(self):
        self.parity = binary("LONGSANA_PARITY", "longsana-parity")
        self.dir = tempfile.TemporaryDirectory()
        self.model = random_dit(0)
        reference = safetensors_io.load(
            str(TINY / "transformer" / "diffusion_pytorch_model.safetensors"))
        served = self.model.served_state_dict()
        self.assertEqual({k: tuple(v.shape) for k, v in served.items()},
                         {k: tuple(v.shape) for k, v in reference.items()})
        self.folder = Path(self.dir.name) / "model"
        shutil.copytree(TINY, self.folder)
        safetensors_io.save(served, str(self.folder / "transformer" /
                                        "diffusion_pytorch_model.safetensors"))

    def tearDown(self):
        self.dir.cleanup()

    def run_parity(self, component: str, golden: dict) -> str:
        path = Path(self.dir.name) / f"{component}.safetensors"
        safetensors_io.save(golden, str(path))
        run = subprocess.run([self.parity, component, "--model", str(self.folder), "--golden",
                              str(path)], capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        return run.stdout

    def test_a_block_from_an_empty_state(self):
        cfg = self.model.cfg
        caption, mask = caption_inputs(cfg)
        x = torch.randn(1, cfg.in_channels, 3, 8, 12, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            v, _ = self.model(x, torch.tensor([700.9]), caption, mask, [0],
                              self.model.empty_context(1, 8, 12))
        out = self.run_parity("dit-forward", {
            "in/x": x, "in/timestep": torch.tensor([700.9]),
            "in/frame_range": torch.tensor([0, 3], dtype=torch.int64),
            "in/caption": caption.unsqueeze(1), "in/mask": mask, "out/v": v})
        self.assertIn("dit-forward (fp32): PASS", out)

    def test_the_cache_pass_state_and_a_later_block_reading_it(self):
        cfg = self.model.cfg
        caption, mask = caption_inputs(cfg)
        g = torch.Generator().manual_seed(2)
        first = torch.randn(1, cfg.in_channels, 3, 8, 12, generator=g)
        later = torch.randn(1, cfg.in_channels, 2, 8, 12, generator=g)
        with torch.no_grad():
            cache_v, own = self.model(first, torch.tensor([0.0]), caption, mask, [0],
                                      self.model.empty_context(1, 8, 12))
            next_v, _ = self.model(later, torch.tensor([312.0]), caption, mask, [3], own)
        golden = {"cache_pass/x": first, "cache_pass/frame_range": torch.tensor([0, 3]),
                  "cache_pass/v": cache_v, "in/caption": caption.unsqueeze(1), "in/mask": mask,
                  "next/x": later, "next/timestep": torch.tensor([312.0]),
                  "next/frame_range": torch.tensor([3, 5]), "next/v": next_v}
        for layer, (s, z, conv) in enumerate(own):
            golden[f"state/layer{layer}/S"] = s
            golden[f"state/layer{layer}/z"] = z.unsqueeze(2)
            golden[f"state/layer{layer}/conv"] = conv.transpose(1, 2).unsqueeze(2)
        out = self.run_parity("dit-state", golden)
        self.assertIn("dit-state (fp32): PASS", out)
        self.assertIn("next/v", out)


if __name__ == "__main__":
    unittest.main()
