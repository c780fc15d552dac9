"""The trainer's Wan VAE decoder (tools/train/wan_vae.py, a whole clip at once) computes what
the engine's streaming decoder computes (frame by frame with its cache) from the same weights:
the trainer writes its weights into a model folder and a golden in the `vae` parity format,
and `longsana-parity vae` compares with the fp32 tolerances. Also the weights it saves are
exactly the keys and shapes the engine's strict loader expects.

    LONGSANA_PARITY=build/bin/longsana-parity /usr/bin/python3 -m unittest wan_vae_parity_test
"""

import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import torch

from train_paths import TINY, binary  # noqa: E402  (also puts tools/train on the path)
import safetensors_io  # noqa: E402
import wan_vae  # noqa: E402



def random_vae(seed: int) -> wan_vae.WanVae:
    torch.manual_seed(seed)
    vae = wan_vae.WanVae(wan_vae.Config.from_file(str(TINY / "vae" / "config.json")))
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1 + 0.1 * torch.randn_like(p))  # norms that do something
    return vae.eval()


class WanVaeParityTest(unittest.TestCase):
    def test_saved_weights_are_what_the_engine_loads_and_it_decodes_the_same(self):
        parity = binary("LONGSANA_PARITY", "longsana-parity")
        vae = random_vae(0)
        served = vae.served_state_dict()
        reference = safetensors_io.load(str(TINY / "vae" / "diffusion_pytorch_model.safetensors"))
        decoder_keys = {k: v.shape for k, v in reference.items()
                        if not k.startswith(("encoder.", "quant_conv."))}
        self.assertEqual({k: v.shape for k, v in served.items()}, decoder_keys)

        torch.manual_seed(1)
        z = torch.randn(1, vae.cfg.z_dim, 3, 4, 6)  # the DiT's normalised latent
        with torch.no_grad():
            z_vae = vae.denormalize(z)
            video = vae.decode(z)
        self.assertEqual(tuple(video.shape), (1, 3, 1 + 4 * 2, 32, 48))
        with tempfile.TemporaryDirectory() as d:
            model = Path(d) / "model"
            shutil.copytree(TINY, model)
            safetensors_io.save(served, str(model / "vae" / "diffusion_pytorch_model.safetensors"))
            golden = Path(d) / "vae_decode.safetensors"
            clamped = video.clamp(-1, 1)
            safetensors_io.save({
                "in/z": z, "dbg/z_vae": z_vae, "out/video": video, "out/video_clamped": clamped,
                "out/video_uint8": wan_vae.to_uint8_frames(video).unsqueeze(0),
                "out/num_frames": torch.tensor(video.shape[2], dtype=torch.int64),
            }, str(golden))
            run = subprocess.run([parity, "vae", "--model", str(model), "--golden", str(golden),
                                  "--verbose"], capture_output=True, text=True)
            print(run.stdout)
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            self.assertIn("vae (fp32): PASS", run.stdout)


if __name__ == "__main__":
    unittest.main()
