"""The toy world the tiny LongSANA is trained on (issue 16): deterministic clips of one shape
in a named colour moving in a named direction over a named background, with captions from
varied templates.

Everything is a pure function of its seed: the same scene and seed give the same bytes on any
machine (numpy's PCG64 and integer rendering; no floating-point drawing state survives a
frame). Some colour/shape pairs are left out of training on purpose (HELD_OUT) so that the
evaluation can tell generalisation from memory.

    scene = Scene("red", "ball", "left", "blue")
    frames = render(scene, num_frames=161, seed=3)    # uint8 [T, H, W, 3]
    caption(scene, template=2)                         # "red ball rolling left over blue"

The motion wraps around the frame (a ball leaving on the left comes back on the right), so a
clip can last minutes with the object always present; the evaluator measures positions on
the circle for the same reason.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterator

import numpy as np

WIDTH, HEIGHT, FPS = 96, 64, 16

# Named colours, RGB. Object colours and background colours are separate sets with no colour
# close to another across them (the evaluator names colours by the nearest palette entry).
OBJECT_COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 70),
    "blue": (50, 90, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
    "white": (240, 240, 240),
}
BACKGROUNDS = {
    "black": (15, 15, 15),
    "gray": (120, 120, 120),
    "navy": (20, 30, 90),
    "teal": (20, 110, 110),
    "brown": (110, 70, 30),
}
SHAPES = ("ball", "square", "triangle")
MOTIONS = ("left", "right", "up", "down", "still")

# Left out of training: every motion and background of these pairs is evaluation-only.
HELD_OUT = frozenset({("yellow", "triangle"), ("purple", "ball"), ("green", "square")})

SPEED = 1.5  # pixels per frame along the motion (24 px/s at 16 fps: a crossing takes 4 s)
RADIUS = 9   # half the object's size in pixels

# Words a caption may use for each attribute (the first is the canonical one).
SHAPE_WORDS = {
    "ball": ("ball", "circle", "disc", "dot"),
    "square": ("square", "box", "block", "cube"),
    "triangle": ("triangle", "wedge"),
}
MOTION_PHRASES = {
    "left": ("moves to the left", "rolling left", "slides left", "drifting left", "heads left"),
    "right": ("moves to the right", "rolling right", "slides right", "drifting right",
              "heads right"),
    "up": ("moves up", "rising", "floats upward", "drifting up", "climbs"),
    "down": ("moves down", "falling", "sinks", "drifting down", "drops"),
    "still": ("stays still", "resting", "sits still", "not moving", "stays in place"),
}
TEMPLATES = (
    "a {colour} {shape} {motion} on a {bg} background",
    "{colour} {shape} {motion} over {bg}",
    "a {shape} in {colour} {motion} across a {bg} backdrop",
    "on a {bg} background, a {colour} {shape} {motion}",
    "the {colour} {shape} {motion}, {bg} behind it",
)


@dataclasses.dataclass(frozen=True)
class Scene:
    colour: str  # a key of OBJECT_COLOURS
    shape: str   # one of SHAPES
    motion: str  # one of MOTIONS
    background: str  # a key of BACKGROUNDS

    def __post_init__(self) -> None:
        for value, allowed, field in ((self.colour, OBJECT_COLOURS, "colour"),
                                      (self.shape, SHAPES, "shape"),
                                      (self.motion, MOTIONS, "motion"),
                                      (self.background, BACKGROUNDS, "background")):
            if value not in allowed:
                raise ValueError(f"{field}: {value!r} is not one of {sorted(allowed)}")

    @property
    def held_out(self) -> bool:
        return (self.colour, self.shape) in HELD_OUT


def all_scenes() -> list[Scene]:
    """Every scene of the world, in a fixed order."""
    return [Scene(c, s, m, b) for c in OBJECT_COLOURS for s in SHAPES for m in MOTIONS
            for b in BACKGROUNDS]


def training_scenes() -> list[Scene]:
    return [s for s in all_scenes() if not s.held_out]


def held_out_scenes() -> list[Scene]:
    return [s for s in all_scenes() if s.held_out]


def caption(scene: Scene, template: int = 0, phrase: int = 0, shape_word: int = 0) -> str:
    """The scene in words; `template`, `phrase` and `shape_word` pick among the variants
    (modulo their counts)."""
    words = SHAPE_WORDS[scene.shape]
    phrases = MOTION_PHRASES[scene.motion]
    return TEMPLATES[template % len(TEMPLATES)].format(
        colour=scene.colour, shape=words[shape_word % len(words)],
        motion=phrases[phrase % len(phrases)], bg=scene.background)


def random_caption(scene: Scene, rng: np.random.Generator) -> str:
    return caption(scene, int(rng.integers(len(TEMPLATES))), int(rng.integers(5)),
                   int(rng.integers(4)))


_WORD = re.compile(r"[a-z]+")


def parse_caption(text: str) -> Scene:
    """The scene a caption describes, from its words: the object's colour is the first object
    colour named, the background the background colour named (the world keeps the two sets
    apart), the shape and the motion from their words and phrases. ValueError naming what is
    missing when the caption does not describe a scene of this world."""
    lowered = text.lower()
    words = _WORD.findall(lowered)
    colour = next((w for w in words if w in OBJECT_COLOURS), None)
    background = next((w for w in words if w in BACKGROUNDS), None)
    shape = next((s for w in words for s, names in SHAPE_WORDS.items() if w in names), None)
    motion = next((m for m, phrases in MOTION_PHRASES.items()
                   if any(p in lowered for p in phrases)), None)
    if motion is None:  # single direction words, e.g. "red ball left on black"
        motion = next((w for w in words if w in ("left", "right", "up", "down", "still")), None)
    missing = [name for name, value in (("colour", colour), ("shape", shape),
                                        ("motion", motion), ("background", background))
               if value is None]
    if missing:
        raise ValueError(f"caption {text!r} names no {', '.join(missing)} of the toy world")
    return Scene(colour, shape, motion, background)


def _velocity(motion: str) -> tuple[float, float]:
    return {"left": (-SPEED, 0.0), "right": (SPEED, 0.0), "up": (0.0, -SPEED),
            "down": (0.0, SPEED), "still": (0.0, 0.0)}[motion]


def _mask(shape: str, cx: float, cy: float) -> np.ndarray:
    """The shape centred at (cx, cy) on the torus: bool [H, W]."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    # Displacement to the centre the short way round, so the shape wraps at the borders.
    dx = (xs - cx + WIDTH / 2) % WIDTH - WIDTH / 2
    dy = (ys - cy + HEIGHT / 2) % HEIGHT - HEIGHT / 2
    if shape == "ball":
        return dx * dx + dy * dy <= RADIUS * RADIUS
    if shape == "square":
        return (np.abs(dx) <= RADIUS * 0.85) & (np.abs(dy) <= RADIUS * 0.85)
    # An upward triangle: apex at the top, base at the bottom.
    top, bottom = -RADIUS, RADIUS * 0.8
    inside_y = (dy >= top) & (dy <= bottom)
    half_width = (dy - top) / (bottom - top) * RADIUS * 1.1
    return inside_y & (np.abs(dx) <= half_width)


def start_position(seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    return float(rng.uniform(0, WIDTH)), float(rng.uniform(0, HEIGHT))


def render(scene: Scene, num_frames: int, seed: int = 0,
           start: tuple[float, float] | None = None, first_frame: int = 0) -> np.ndarray:
    """Frames first_frame .. first_frame + num_frames - 1 of the scene's clip: uint8
    [num_frames, HEIGHT, WIDTH, 3]. The start position comes from the seed unless given."""
    cx0, cy0 = start if start is not None else start_position(seed)
    vx, vy = _velocity(scene.motion)
    bg = np.array(BACKGROUNDS[scene.background], np.uint8)
    fg = np.array(OBJECT_COLOURS[scene.colour], np.uint8)
    out = np.empty((num_frames, HEIGHT, WIDTH, 3), np.uint8)
    for i in range(num_frames):
        f = first_frame + i
        mask = _mask(scene.shape, (cx0 + vx * f) % WIDTH, (cy0 + vy * f) % HEIGHT)
        out[i] = bg
        out[i][mask] = fg
    return out


def position_after(scene: Scene, start: tuple[float, float], frames: int) -> tuple[float, float]:
    vx, vy = _velocity(scene.motion)
    return (start[0] + vx * frames) % WIDTH, (start[1] + vy * frames) % HEIGHT


def render_switch(scenes: list[tuple[Scene, int]], seed: int = 0) -> np.ndarray:
    """A clip whose scene changes: (scene, frames) in order, the object continuing from where
    the previous scene left it (what a prompt switch should look like)."""
    position = start_position(seed)
    parts = []
    for scene, frames in scenes:
        parts.append(render(scene, frames, start=position))
        position = position_after(scene, position, frames)
    return np.concatenate(parts)


def training_clips(seed: int, num_frames: int) -> Iterator[tuple[Scene, str, np.ndarray]]:
    """An endless, reproducible stream of (scene, caption, frames) over the training scenes."""
    rng = np.random.default_rng(seed)
    scenes = training_scenes()
    while True:
        scene = scenes[int(rng.integers(len(scenes)))]
        clip_seed = int(rng.integers(2**31))
        yield scene, random_caption(scene, rng), render(scene, num_frames, clip_seed)
