"""The toy world (tools/train/toyworld.py) and the semantic evaluator (tools/train/evaluate.py):
clips are reproducible, captions say what the clip shows and parse back, the held-out pairs
never reach training, and the evaluator reads every scene of the world correctly, through
an H.264 round trip too, and tells a prompt switch's blocks apart.

    /usr/bin/python3 -m unittest tests/train/toyworld_test.py
"""

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

from train_paths import TRAIN  # noqa: E402  (also puts tools/train on the path)
import evaluate  # noqa: E402
import toyworld  # noqa: E402
from toyworld import Scene  # noqa: E402


def encode_mp4(frames: np.ndarray, path: str) -> None:
    """H.264 in yuv420p at CRF 23, what the server streams."""
    t, h, w, _ = frames.shape
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", f"{w}x{h}", "-r", "16", "-i", "-", "-c:v", "libx264", "-preset",
                    "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", path],
                   input=frames.tobytes(), check=True)


class WorldTest(unittest.TestCase):
    def test_clips_are_a_pure_function_of_scene_and_seed(self):
        scene = Scene("red", "ball", "left", "navy")
        a = toyworld.render(scene, 41, seed=5)
        self.assertEqual(a.shape, (41, toyworld.HEIGHT, toyworld.WIDTH, 3))
        self.assertEqual(a.dtype, np.uint8)
        self.assertTrue(np.array_equal(a, toyworld.render(scene, 41, seed=5)))
        self.assertFalse(np.array_equal(a, toyworld.render(scene, 41, seed=6)))
        # A later window of the same clip is the same frames.
        self.assertTrue(np.array_equal(toyworld.render(scene, 10, seed=5, first_frame=31),
                                       a[31:]))
        stream = toyworld.training_clips(seed=1, num_frames=5)
        again = toyworld.training_clips(seed=1, num_frames=5)
        for _ in range(3):
            (s1, c1, f1), (s2, c2, f2) = next(stream), next(again)
            self.assertEqual((s1, c1), (s2, c2))
            self.assertTrue(np.array_equal(f1, f2))

    def test_a_bad_attribute_is_refused_naming_the_field(self):
        with self.assertRaisesRegex(ValueError, "colour: 'pink'"):
            Scene("pink", "ball", "left", "navy")
        with self.assertRaisesRegex(ValueError, "background: 'red'"):
            Scene("red", "ball", "left", "red")

    def test_held_out_pairs_never_reach_training(self):
        train = toyworld.training_scenes()
        held = toyworld.held_out_scenes()
        self.assertTrue(held)
        self.assertEqual(len(train) + len(held), len(toyworld.all_scenes()))
        self.assertFalse(any((s.colour, s.shape) in toyworld.HELD_OUT for s in train))
        stream = toyworld.training_clips(seed=2, num_frames=1)
        self.assertFalse(any(next(stream)[0].held_out for _ in range(500)))

    def test_every_caption_variant_parses_back_to_its_scene(self):
        for scene in toyworld.all_scenes():
            for variant in range(5):
                text = toyworld.caption(scene, variant, variant + 1, variant + 2)
                self.assertEqual(toyworld.parse_caption(text), scene, text)
        self.assertEqual(toyworld.parse_caption("Green CUBE drops over Teal"),
                         Scene("green", "square", "down", "teal"))
        with self.assertRaisesRegex(ValueError, "no shape, motion"):
            toyworld.parse_caption("a red thing on a gray background")


class EvaluatorTest(unittest.TestCase):
    def test_every_scene_of_the_world_is_read_correctly(self):
        wrong = []
        for i, scene in enumerate(toyworld.all_scenes()):
            reading = evaluate.read_block(toyworld.render(scene, 41, seed=i))
            bad = [a for a, ok in reading.matches(scene).items() if not ok]
            if bad:
                wrong.append(f"{scene}: {bad} ({reading})")
        self.assertEqual(wrong, [])

    def test_a_wrong_caption_scores_zero_on_what_differs(self):
        frames = toyworld.render(Scene("blue", "triangle", "up", "black"), 161, seed=3)
        readings = evaluate.read_video(frames)
        self.assertEqual(len(readings), 4)  # 41 + 40 + 40 + 40
        right = evaluate.scores(readings, [Scene("blue", "triangle", "up", "black")] * 4)
        self.assertEqual(right, {"colour": 1, "background": 1, "shape": 1, "motion": 1,
                                 "present": 1})
        other = evaluate.scores(readings, [Scene("red", "ball", "down", "black")] * 4)
        self.assertEqual((other["colour"], other["shape"], other["motion"]), (0, 0, 0))
        self.assertEqual(other["background"], 1)

    def test_wrapping_around_the_edge_keeps_the_direction(self):
        # 161 frames at 1.5 px/frame cross the 96-px frame more than twice.
        for motion in ("left", "right", "up", "down"):
            readings = evaluate.read_video(
                toyworld.render(Scene("orange", "square", motion, "gray"), 161, seed=1))
            self.assertEqual([r.motion for r in readings], [motion] * 4)

    def test_an_empty_background_has_no_object(self):
        frames = np.zeros((40, toyworld.HEIGHT, toyworld.WIDTH, 3), np.uint8)
        frames[:] = toyworld.BACKGROUNDS["teal"]
        reading = evaluate.read_block(frames)
        self.assertEqual(reading.background, "teal")
        self.assertIsNone(reading.colour)
        self.assertFalse(reading.matches(Scene("red", "ball", "left", "teal"))["present"])

    def test_through_h264_a_switch_is_seen_at_its_block(self):
        before = Scene("red", "ball", "right", "black")
        after = Scene("blue", "ball", "up", "black")
        frames = toyworld.render_switch([(before, 81), (after, 120)], seed=4)
        with tempfile.TemporaryDirectory() as d:
            path = str(Path(d) / "switch.mp4")
            encode_mp4(frames, path)
            decoded = evaluate.load_video(path)
            self.assertEqual(decoded.shape, frames.shape)
            readings = evaluate.read_video(decoded)
            self.assertEqual(len(readings), 5)
            scenes = [before, before, after, after, after]
            self.assertEqual(evaluate.scores(readings, scenes),
                             {"colour": 1, "background": 1, "shape": 1, "motion": 1,
                              "present": 1})
            # The command-line tool agrees, and --min makes a mismatch an exit status.
            tool = TRAIN / "evaluate.py"
            ok = subprocess.run([sys.executable, str(tool), path, "--switch",
                                 toyworld.caption(before), toyworld.caption(after, 3),
                                 "--at-block", "2", "--min", "1"],
                                capture_output=True, text=True)
            self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
            self.assertIn("motion 100%", ok.stdout)
            bad = subprocess.run([sys.executable, str(tool), path, "--caption",
                                  toyworld.caption(before), "--min", "0.9"],
                                 capture_output=True, text=True)
            self.assertEqual(bad.returncode, 1, bad.stdout + bad.stderr)


if __name__ == "__main__":
    unittest.main()
