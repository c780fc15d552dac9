"""The tiny model's text path: the tokenizer trained on the toy world's captions
(tools/train/train_tokenizer.py) is reproducible, keeps Gemma's special ids and byte
fallback, gives every caption word one piece, and is loaded by the engine's unchanged
tokenizer; longsana-encode-captions then gives the trainer the engine's own caption
embeddings (different prompts differ, the same prompt repeats bit for bit).

    LONGSANA_ENCODE_CAPTIONS=build/bin/longsana-encode-captions \\
        /usr/bin/python3 -m unittest text_path_test
"""

import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import sentencepiece as spm
import torch

from train_paths import TINY, binary  # noqa: E402  (also puts tools/train on the path)
import safetensors_io  # noqa: E402
import toyworld  # noqa: E402
import train_tokenizer  # noqa: E402


class TextPathTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.root = Path(cls.dir.name)
        cls.model_file = train_tokenizer.train(cls.root / "tokenizer")
        cls.sp = spm.SentencePieceProcessor(model_file=str(cls.model_file))

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def test_the_tokenizer_is_reproducible_with_gemmas_conventions(self):
        again = train_tokenizer.train(self.root / "again")
        self.assertEqual(again.read_bytes(), self.model_file.read_bytes())
        sp = self.sp
        self.assertEqual(sp.get_piece_size(), 1000)
        self.assertEqual([sp.id_to_piece(i) for i in range(4)],
                         ["<pad>", "<eos>", "<bos>", "<unk>"])
        self.assertNotIn(sp.unk_id(), sp.encode("naïve ✓ 漢字"))  # bytes, never <unk>
        words = {w for s in toyworld.all_scenes() for w in toyworld.caption(s).split()}
        for word in sorted(words):
            self.assertEqual(len(sp.encode(" " + word)), 1, word)
        # The CHI prefix the engine prepends stays short: Gemma reads it for every prompt.
        self.assertLess(len(sp.encode(train_tokenizer.chi_prompt())), 260)

    def test_the_engine_encodes_captions_with_it(self):
        model = self.root / "model"
        shutil.copytree(TINY, model)  # the tiny Gemma-2 has a 1000-token vocabulary too
        shutil.rmtree(model / "tokenizer")
        shutil.copytree(self.root / "tokenizer", model / "tokenizer")
        scene = toyworld.Scene("red", "ball", "left", "black")
        prompts = [toyworld.caption(scene), toyworld.caption(scene, 1),
                   toyworld.caption(toyworld.Scene("blue", "ball", "left", "black")),
                   toyworld.caption(scene)]
        (self.root / "prompts.txt").write_text("\n".join(prompts) + "\n")
        out = self.root / "captions.safetensors"
        run = subprocess.run([binary("LONGSANA_ENCODE_CAPTIONS", "longsana-encode-captions"),
                              "--model", str(model), "--prompts", str(self.root / "prompts.txt"),
                              "--out", str(out), "--caption_len", "24"],
                             capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        t = safetensors_io.load(str(out))
        self.assertEqual(tuple(t["embeddings"].shape), (4, 24, 48))
        self.assertTrue(torch.equal(t["masks"].sum(1), t["num_tokens"]))
        self.assertTrue(torch.equal(t["embeddings"][0], t["embeddings"][3]))
        for other in (1, 2):
            self.assertFalse(torch.equal(t["embeddings"][0], t["embeddings"][other]))


if __name__ == "__main__":
    unittest.main()
