"""Trains the tiny model's tokenizer (issue 16): a SentencePiece BPE model over every caption
of the toy world and the CHI prefix the engine puts before each prompt (engine/text/prompt.cc),
in Gemma's conventions so the engine's unchanged Tokenizer loads it: <pad> 0, <eos> 1,
<bos> 2, <unk> 3, byte fallback (any text encodes, unknown characters as bytes), no dummy
prefix, no normalisation. Single-threaded and unshuffled, so the same inputs give the same
model bytes.

    /usr/bin/python3 tools/train/train_tokenizer.py --out runs/model/tokenizer [--vocab 1000]
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from pathlib import Path

import sentencepiece as spm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import toyworld  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def chi_prompt() -> str:
    """The CHI prefix as the engine holds it (the C++ string literal in prompt.cc)."""
    source = (ROOT / "engine" / "text" / "prompt.cc").read_text()
    body = source[source.index("kChiPrompt ="):source.index(";", source.index("kChiPrompt ="))]
    pieces = re.findall(r'"((?:[^"\\]|\\.)*)"', body)
    return "".join(pieces).encode().decode("unicode_escape")


def corpus() -> list[str]:
    """Every caption variant of every scene, and the CHI's lines."""
    lines = []
    for scene in toyworld.all_scenes():
        for template in range(len(toyworld.TEMPLATES)):
            for phrase in range(5):
                for word in range(4):
                    lines.append(toyworld.caption(scene, template, phrase, word))
    lines.extend(line for line in chi_prompt().split("\n") if line.strip())
    return sorted(set(lines))


def train(out: Path, vocab: int = 1000) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_writer=model, vocab_size=vocab,
        model_type="bpe", byte_fallback=True, character_coverage=1.0,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        add_dummy_prefix=False, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, num_threads=1,
        shuffle_input_sentence=False, input_sentence_size=0, minloglevel=2)
    (out / "tokenizer.model").write_bytes(model.getvalue())
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GemmaTokenizer", "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
        "padding_side": "right", "clean_up_tokenization_spaces": False,
        "spaces_between_special_tokens": False, "sp_model_kwargs": {}, "legacy": False},
        indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
        "unk_token": "<unk>"}, indent=2) + "\n")
    return out / "tokenizer.model"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--vocab", type=int, default=1000)
    args = parser.parse_args()
    path = train(Path(args.out), args.vocab)
    sp = spm.SentencePieceProcessor(model_file=str(path))
    print(f"tokenizer: {sp.get_piece_size()} pieces from {len(corpus())} lines -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
