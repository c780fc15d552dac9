"""The semantic evaluator of issue 16: deterministic image analysis (no learned judge) that
reads a toy-world video block by block and scores it against a caption.

Per block of frames it measures
  - the background colour: the median of each frame's border pixels, named by the nearest
    background of the palette;
  - the object: pixels far from that background; its colour (median, nearest object colour),
    its area, and its shape (how much of its bounding box it fills: a ball ~0.79, a square
    ~1, a triangle ~0.5; measured with the object rolled to the frame's centre, so that
    wrapping around an edge does not split it);
  - its motion: the centroid on the torus (circular means, so an object wrapping around an
    edge keeps one position), the median frame-to-frame displacement, and the direction it
    names (left, right, up, down, or still under STILL_SPEED).

    python3 tools/train/evaluate.py VIDEO.mp4 --caption "a red ball rolling left over black"
    python3 tools/train/evaluate.py VIDEO.mp4 --switch "CAPTION_A" "CAPTION_B" --at-block 3

prints one line per block and the share of blocks whose colour, background, shape and motion
match; exits 1 when a share is under --min (default 0: report only).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import toyworld  # noqa: E402

BLOCK_FRAMES = 40          # video frames per LongSANA block at 16 fps
FOREGROUND_DISTANCE = 60   # RGB distance from the background beyond which a pixel is object
MIN_AREA = 20              # pixels: below this the object is absent
STILL_SPEED = 0.4          # pixels per frame: slower is "still"
SHAPE_FILL = {"ball": np.pi / 4, "square": 1.0, "triangle": 0.5}


@dataclasses.dataclass
class BlockReading:
    index: int
    background: str
    colour: str | None       # None when no object is found
    shape: str | None
    motion: str | None
    area: float              # mean pixels per frame
    velocity: tuple[float, float]  # pixels per frame (x right, y down)

    def matches(self, scene: toyworld.Scene) -> dict[str, bool]:
        return {"colour": self.colour == scene.colour,
                "background": self.background == scene.background,
                "shape": self.shape == scene.shape,
                "motion": self.motion == scene.motion,
                "present": self.colour is not None}


def _nearest(rgb: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    names = list(palette)
    colours = np.array([palette[n] for n in names], np.float64)
    return names[int(np.argmin(((colours - rgb) ** 2).sum(axis=1)))]


def _circular_mean(coords: np.ndarray, period: int) -> float:
    angles = coords * (2 * np.pi / period)
    mean = np.arctan2(np.sin(angles).mean(), np.cos(angles).mean())
    return float(mean % (2 * np.pi) * period / (2 * np.pi))


def read_block(frames: np.ndarray, index: int = 0) -> BlockReading:
    """One block: uint8 [T, H, W, 3]."""
    f = frames.astype(np.float64)
    t, h, w, _ = f.shape
    border = np.concatenate([f[:, :2].reshape(t, -1, 3), f[:, -2:].reshape(t, -1, 3),
                             f[:, :, :2].reshape(t, -1, 3), f[:, :, -2:].reshape(t, -1, 3)],
                            axis=1)
    bg_rgb = np.median(border, axis=1)  # [T, 3]
    background = _nearest(np.median(bg_rgb, axis=0), toyworld.BACKGROUNDS)
    distance = np.sqrt(((f - bg_rgb[:, None, None, :]) ** 2).sum(axis=-1))  # [T, H, W]
    mask = distance > FOREGROUND_DISTANCE
    areas = mask.reshape(t, -1).sum(axis=1)
    present = areas >= MIN_AREA
    if present.sum() < max(2, t // 2):
        return BlockReading(index, background, None, None, None, float(areas.mean()), (0.0, 0.0))
    colour = _nearest(np.median(f[mask], axis=0), toyworld.OBJECT_COLOURS)

    xs, ys = [], []
    fills = []
    for i in np.flatnonzero(present):
        yy, xx = np.nonzero(mask[i])
        cx, cy = _circular_mean(xx, w), _circular_mean(yy, h)
        xs.append(cx)
        ys.append(cy)
        # The bounding box with the object rolled to the centre, so wrapping cannot split it.
        centred = np.roll(mask[i], (int(round(h / 2 - cy)), int(round(w / 2 - cx))), (0, 1))
        yy, xx = np.nonzero(centred)
        box = (xx.max() - xx.min() + 1) * (yy.max() - yy.min() + 1)
        fills.append(len(xx) / box)
    shape = None
    if fills:
        fill = float(np.median(fills))
        shape = min(SHAPE_FILL, key=lambda s: abs(SHAPE_FILL[s] - fill))
    # Displacements the short way round the torus, per frame step between present frames.
    frames_present = np.flatnonzero(present)
    steps = np.diff(frames_present)
    dx = (np.diff(xs) + w / 2) % w - w / 2
    dy = (np.diff(ys) + h / 2) % h - h / 2
    vx = float(np.median(dx / steps)) if len(dx) else 0.0
    vy = float(np.median(dy / steps)) if len(dy) else 0.0
    if max(abs(vx), abs(vy)) < STILL_SPEED:
        motion = "still"
    elif abs(vx) >= abs(vy):
        motion = "right" if vx > 0 else "left"
    else:
        motion = "down" if vy > 0 else "up"
    return BlockReading(index, background, colour, shape, motion, float(areas.mean()), (vx, vy))


def read_video(frames: np.ndarray, block_frames: int = BLOCK_FRAMES,
               first_block_frames: int | None = None) -> list[BlockReading]:
    """Every block of a video. LongSANA's first block has one frame more (41 = 1 + 4 x 10),
    so by default the first block is block_frames + 1 frames when the video has 1 + 40k."""
    if first_block_frames is None:
        first_block_frames = block_frames + 1 if len(frames) % block_frames == 1 else block_frames
    readings, start, index = [], 0, 0
    while start < len(frames):
        size = first_block_frames if index == 0 else block_frames
        readings.append(read_block(frames[start:start + size], index))
        start += size
        index += 1
    return readings


def load_video(path: str) -> np.ndarray:
    """All frames of a video file as uint8 [T, H, W, 3] (RGB), decoded by ffmpeg."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height", "-of", "json", path], check=True, capture_output=True, text=True)
    stream = json.loads(probe.stdout)["streams"][0]
    w, h = int(stream["width"]), int(stream["height"])
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt",
                          "rgb24", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def scores(readings: list[BlockReading], scenes: list[toyworld.Scene]) -> dict[str, float]:
    """The share of blocks matching their scene, per attribute (scenes[i] for block i)."""
    totals: dict[str, int] = {}
    for reading, scene in zip(readings, scenes):
        for attribute, ok in reading.matches(scene).items():
            totals[attribute] = totals.get(attribute, 0) + int(ok)
    return {a: n / max(1, len(readings)) for a, n in totals.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("video")
    parser.add_argument("--caption", help="the prompt the whole video should show")
    parser.add_argument("--switch", nargs=2, metavar=("BEFORE", "AFTER"),
                        help="two prompts: BEFORE for blocks < --at-block, AFTER from it on")
    parser.add_argument("--at-block", type=int, default=0)
    parser.add_argument("--min", type=float, default=0.0,
                        help="exit 1 when a colour/background/shape/motion share is below this")
    args = parser.parse_args()
    if (args.caption is None) == (args.switch is None):
        parser.error("give --caption or --switch")
    readings = read_video(load_video(args.video))
    if args.caption is not None:
        scenes = [toyworld.parse_caption(args.caption)] * len(readings)
    else:
        before, after = (toyworld.parse_caption(c) for c in args.switch)
        scenes = [before if r.index < args.at_block else after for r in readings]
    for r, scene in zip(readings, scenes):
        m = r.matches(scene)
        print(f"block {r.index}: background {r.background}, object {r.colour} {r.shape} "
              f"{r.motion} (area {r.area:.0f}, v {r.velocity[0]:+.2f},{r.velocity[1]:+.2f}) | "
              + " ".join(f"{a}={'ok' if ok else 'NO'}" for a, ok in m.items()))
    s = scores(readings, scenes)
    print("shares: " + ", ".join(f"{a} {v:.0%}" for a, v in s.items()))
    low = [a for a in ("colour", "background", "shape", "motion") if s[a] < args.min]
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
