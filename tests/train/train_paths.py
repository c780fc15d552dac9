"""Shared by the tests of tools/train: the repository's paths, tools/train on sys.path, and
the built binaries (from the environment CTest sets, else build/bin)."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "testdata" / "tiny-longsana"
TRAIN = ROOT / "tools" / "train"
sys.path.insert(0, str(TRAIN))


def binary(env: str, name: str) -> str:
    """The path CTest passes in `env`, or build/bin/NAME for a run by hand."""
    return os.environ.get(env, str(ROOT / "build" / "bin" / name))
