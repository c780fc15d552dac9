"""A training run's log: one CSV row per step (step, loss, seconds) and a line on stdout every
`every` steps, for the README's curves."""

from __future__ import annotations

import csv
from pathlib import Path


class RunLog:
    def __init__(self, path: Path, name: str, every: int = 50):
        self.name, self.every = name, every
        self.file = open(path, "w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(["step", "loss", "seconds"])

    def __call__(self, step: int, loss: float, seconds: float) -> None:
        self.writer.writerow([step, f"{loss:.5f}", f"{seconds:.1f}"])
        if step % self.every == 0:
            print(f"{self.name} step {step}: loss {loss:.4f} ({seconds:.0f} s)", flush=True)

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()
