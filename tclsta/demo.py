"""A synthetic dataset in the UCF101 layout where neither stream alone can be perfect.

Every clip shows one square patch of smooth random texture on a static, cluttered
grey background. During an action window (a random 40-60% of the clip) the
texture drifts inside the fixed patch outline like a conveyor belt.

* Motion classes (``MOTION_CLASSES``): grey texture; only the drift direction differs,
  so single RGB frames cannot tell them apart.
* Appearance classes (``APPEARANCE_CLASSES``): coloured texture, all drifting down-right.
  Each colour is a luma-free chroma offset added to the same grey texture, so the
  greyscale frames that optical flow sees carry no colour information.

Hence flow alone reaches at most ``(n + 1) / (2 n)`` accuracy for ``n`` classes per kind, and
so does any classifier of single RGB frames; but the static stream is not one: its LSTM sees the
texture move across the frames, so it can read the drift direction too, and its ceiling is 100%
(``expected_ceilings``). Fusing both streams reaches 100%.

The **benchmark** (``kind="benchmark"``) uses the same classes but is built so that each
component of the method has something to do (each need, with the effect expected when the
component is switched off):

* *spatial attention*: the target is a small patch (8-10 px) of fine texture; a larger patch (14-18 px,
  about three times the area) of coarse texture drifts for the whole clip in the direction of *another* pair
  and shows the colour of *another* appearance class (the "spatial distractor"). Per pixel it is weaker than
  the target (0.6 of its chroma and of its speed), in sum over its area and frames stronger: averaging over
  positions weighs the wrong class's colour and motion above the target's, so both streams should lose
  accuracy without spatial attention.
* *temporal attention*: a second such distractor drifts only outside the action window (35-50% of the clip),
  and the target shows its colour only inside it. Averaging over frames mixes in more frames of the wrong
  motion than of the right one, and frames with a grey target: both streams should lose accuracy without
  temporal attention.
* *per-class fusion weights*: appearance class ``i`` drifts in the same direction as motion
  class ``i``, so the motion stream cannot tell the pair apart, while the static stream is
  reliable on the appearance classes (and blind among the motion classes). Learned per-class
  weights should lean to RGB there and to flow on the motion classes. (Designed in the hope that
  the motion stream would be confidently wrong on the pairs; measured, it stays calibrated,
  about 50/50 on each pair, so plain fusion needs no per-class correction: README.)
* *mutual guidance*: the colour appears only while the target moves, so the motion stream's
  cue tells the static stream *when* to look (the collaborative model attends over frames,
  not positions). Without guidance the static attention must find those frames alone.

Ceilings: flow 1/2 (the pairs), fused 100%; RGB frames ``(n + 1) / (2 n)`` one at a time, the static stream
100% (its LSTM can read the drift from the frame sequence).

The **multi-label** variant (``kind="multilabel"``) draws both cues in every clip: the demo's patch drifts in
the direction of a motion class *and* shows the colour of an appearance class, and the clip is labelled with
both (every pairing, equally often). RGB sees the colour but not the direction, flow the direction but not the
colour, so each stream ranks its own kind's classes perfectly (average precision 1) and the other kind's at
chance (expected average precision about the classes' prevalence, ``1 / n``): each stream's mAP ceiling is
``(1 + 1 / n) / 2``, the same number as the demo's accuracy ceiling, and only fusing both reaches mAP 1.
Its layout: ``root/videos/<Motion>_<Colour>/v_<Motion>_<Colour>_gXX_cYY.avi`` and ``root/splits/labels.csv``
(``path,split,labels``: ``DriftRight_RedPatch/v_DriftRight_RedPatch_g01_c01.avi,test,DriftRight;RedPatch``).

Layout written by ``make_demo_dataset``::

    root/videos/<Class>/v_<Class>_gXX_cYY.avi   mpeg4 in AVI, 25 fps, yuv420p
    root/splits/classInd.txt                    "1 DriftRight" (1-based labels)
    root/splits/trainlist01.txt                 "DriftRight/v_DriftRight_g02_c01.avi 1" (groups test_groups + 1..)
    root/splits/testlist01.txt                  "DriftRight/v_DriftRight_g01_c01.avi"   (groups 1..test_groups)
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import ffmpeg
import numpy as np

from tclsta.atomic import atomic_path, write_text_atomic
from tclsta.config import ALL_SPLITS, DatasetConfig, DemoConfig
from tclsta.data.manifest import MULTILABEL_DEMO_CSV, SEPARATOR, ucf_split_files
from tclsta.errors import BadConfigError
from tclsta.settings import StageSettings, section_keys
from tclsta.video import ffmpeg_binaries, last_stderr_line

MOTION_CLASSES = ("DriftRight", "DriftLeft", "DriftUp", "DriftDown")
APPEARANCE_CLASSES = ("RedPatch", "GreenPatch", "BluePatch", "MagentaPatch")
FPS = 25
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])  # BT.601, as cv2.COLOR_RGB2GRAY and ffmpeg's yuv420p

# Unit drift directions in image coordinates (x right, y down).
_MOTION_DIRECTIONS = {
    "DriftRight": (1.0, 0.0),
    "DriftLeft": (-1.0, 0.0),
    "DriftUp": (0.0, -1.0),
    "DriftDown": (0.0, 1.0),
}
APPEARANCE_DIRECTION = (math.sqrt(0.5), math.sqrt(0.5))  # down-right: 45 degrees from every motion class
_PURE_COLOURS = {
    "RedPatch": (1.0, 0.0, 0.0),
    "GreenPatch": (0.0, 1.0, 0.0),
    "BluePatch": (0.0, 0.0, 1.0),
    "MagentaPatch": (1.0, 0.0, 1.0),
}
# Patch grey levels are PATCH_MEAN + PATCH_CONTRAST * t with t in [-1, 1]; adding a chroma
# offset of at most CHROMA_AMPLITUDE per channel stays inside [0, 255], so nothing clips
# and the luma of every class is exactly the grey texture.
PATCH_MEAN = 128.0
PATCH_CONTRAST = 40.0
CHROMA_AMPLITUDE = 70.0
# Sizes in pixels at the reference frame height of 96 (128x96); they scale with the short side.
_REFERENCE_SHORT_SIDE = 96
_PATCH_SIDE_RANGE = (28.0, 36.0)
_SPEED_RANGE = (1.5, 2.0)  # px per frame
_TEXTURE_BLUR_SIGMA = 1.2  # gives texture features of about 3-4 px
_ACTION_FRACTION_RANGE = (0.4, 0.6)
KINDS = ("demo", "benchmark", "multilabel")
# The benchmark's sizes in pixels at its reference frame height of 48 (64x48).
_BENCHMARK_SHORT_SIDE = 48
_TARGET_SIDE_RANGE = (8.0, 10.0)
_DISTRACTOR_SIDE_RANGE = (14.0, 18.0)
_TARGET_BLUR_SIGMA = 0.7  # fine texture on the target
_DISTRACTOR_BLUR_SIGMA = 2.0  # coarse texture on the distractors
_BENCHMARK_SPEED_RANGE = (1.2, 1.6)
_BENCHMARK_ACTION_FRACTION_RANGE = (0.35, 0.5)
# Distractors carry other classes' cues: another pair's direction and another appearance class's colour, each
# weaker per pixel than the target's (these fractions of its chroma and speed) but, being larger and moving longer,
# stronger in sum: averaging over positions or frames weighs them above the target.
_DISTRACTOR_CHROMA = 0.6
_DISTRACTOR_SPEED = 0.6


@dataclass(frozen=True)
class DemoClip:
    """Everything that defines one synthetic clip; ``render_clip`` draws from it alone."""

    width: int
    height: int
    num_frames: int
    patch_x: int  # top-left corner of the patch
    patch_y: int
    patch_side: int
    motion_start: int  # the texture moves from frame i to i + 1 for motion_start <= i < motion_stop
    motion_stop: int
    velocity: tuple[float, float]  # (dx, dy) in px per frame, y pointing down
    chroma: tuple[float, float, float]  # luma-free RGB offset of the patch; zeros for grey
    noise_seed: int  # seeds the background clutter and the texture


@dataclass(frozen=True)
class BenchmarkPatch:
    """One textured square of a benchmark clip: where it is, when and how its texture drifts, when it is coloured."""

    x: int  # top-left corner
    y: int
    side: int
    velocity: tuple[float, float]  # (dx, dy) in px per frame while moving, y pointing down
    moving: tuple[tuple[int, int], ...]  # [start, stop) intervals of frame steps in which the texture drifts
    chroma: tuple[float, float, float]  # luma-free RGB offset, shown in the frames of ``coloured``
    coloured: tuple[int, int]  # [start, stop) frames
    texture_sigma: float  # blur of the texture in px (feature size)


@dataclass(frozen=True)
class BenchmarkClip:
    """A benchmark clip: the target patch (the class's cue), then the distractors."""

    width: int
    height: int
    num_frames: int
    action_start: int  # the target moves from frame i to i + 1 for action_start <= i < action_stop
    action_stop: int
    patches: tuple[BenchmarkPatch, ...]  # target first
    noise_seed: int  # seeds the background clutter and the textures


def class_names(classes_per_kind: int) -> list[str]:
    """The dataset's classes in label order: motion classes, then appearance classes."""
    return [*MOTION_CLASSES[:classes_per_kind], *APPEARANCE_CLASSES[:classes_per_kind]]


def expected_ceilings(classes_per_kind: int, kind: str = "demo") -> dict[str, float]:
    """Best achievable accuracy (multi-label: mAP) per stream on a balanced test set.

    In the demo the flow stream, blind to colour, separates the motion classes and is at chance among
    the ``n`` appearance classes: ``(n + n * 1/n) / (2 n)``; in the benchmark it cannot tell appearance
    class ``i`` from motion class ``i``: 1/2. A classifier of single RGB frames is likewise at chance
    among the motion classes (``rgb_per_frame``), but the static stream's LSTM sees the texture move
    across frames and can read the direction: its ceiling (``rgb``) is 100%. In the multi-label variant
    a blind half is ranked at chance, average precision about the prevalence ``1/n`` in expectation:
    mAP ``(1 + 1/n) / 2``, the same number, for flow and for single RGB frames.
    """
    per_frame = (classes_per_kind + 1) / (2 * classes_per_kind)
    return {"rgb": 1.0, "flow": 0.5 if kind == "benchmark" else per_frame, "fused": 1.0, "rgb_per_frame": per_frame}


def chroma_offset(class_name: str) -> tuple[float, float, float]:
    """The luma-free RGB offset that colours a class's patch (zeros for motion classes)."""
    if class_name not in _PURE_COLOURS:
        return (0.0, 0.0, 0.0)
    colour = np.array(_PURE_COLOURS[class_name])
    chroma = colour - colour @ LUMA_WEIGHTS  # the colour minus its own grey has zero luma
    chroma *= CHROMA_AMPLITUDE / np.abs(chroma).max()
    return tuple(float(value) for value in chroma)


def drift_direction(class_name: str) -> tuple[float, float]:
    """Unit (dx, dy) direction in which a class's texture drifts, y pointing down."""
    return _MOTION_DIRECTIONS.get(class_name, APPEARANCE_DIRECTION)


def video_name(class_name: str, group: int, clip: int) -> str:
    """UCF101-style file name, e.g. ``v_DriftRight_g01_c02.avi``."""
    return f"v_{class_name}_g{group:02d}_c{clip:02d}.avi"


def multilabel_folders(classes_per_kind: int) -> list[str]:
    """The multi-label variant's folders, one per (motion, colour) pairing: ``DriftRight_RedPatch``."""
    return [f"{motion}_{colour}" for motion in MOTION_CLASSES[:classes_per_kind] for colour in APPEARANCE_CLASSES[:classes_per_kind]]


def plan_multilabel_clip(folder: str, group: int, clip: int, *, seed: int, **size: int) -> DemoClip:
    """A demo clip drifting like the folder's motion class and coloured like its appearance class."""
    motion, colour = folder.split("_")
    # the colour enters the seed, so clips of one direction differ in geometry and texture between colours
    plan = plan_clip(motion, group, clip, seed=seed * len(APPEARANCE_CLASSES) + APPEARANCE_CLASSES.index(colour), **size)
    return dataclasses.replace(plan, chroma=chroma_offset(colour))


def plan_clip(
    class_name: str, group: int, clip: int, *, num_frames: int, width: int, height: int, seed: int
) -> DemoClip:
    """Draw one clip's geometry, timing and speed, deterministically from its identity and ``seed``."""
    all_classes = [*MOTION_CLASSES, *APPEARANCE_CLASSES]
    rng = np.random.default_rng([seed, all_classes.index(class_name), group, clip])
    scale = min(width, height) / _REFERENCE_SHORT_SIDE
    patch_side = round(rng.uniform(*_PATCH_SIDE_RANGE) * scale)
    motion_steps = max(1, round(rng.uniform(*_ACTION_FRACTION_RANGE) * (num_frames - 1)))
    motion_start = int(rng.integers(0, num_frames - 1 - motion_steps, endpoint=True))
    speed = rng.uniform(*_SPEED_RANGE) * scale
    direction_x, direction_y = drift_direction(class_name)
    return DemoClip(
        width=width,
        height=height,
        num_frames=num_frames,
        patch_x=int(rng.integers(0, width - patch_side, endpoint=True)),
        patch_y=int(rng.integers(0, height - patch_side, endpoint=True)),
        patch_side=patch_side,
        motion_start=motion_start,
        motion_stop=motion_start + motion_steps,
        velocity=(speed * direction_x, speed * direction_y),
        chroma=chroma_offset(class_name),
        noise_seed=int(rng.integers(2**63)),
    )


def _render_background(rng: np.random.Generator, width: int, height: int, scale: float) -> np.ndarray:
    """Static low-contrast grey clutter of rectangles and ellipses, ``(H, W)`` float32."""
    background = np.full((height, width), rng.uniform(105, 150), np.float32)
    for _ in range(int(rng.integers(10, 20))):
        level = float(background[0, 0] + rng.uniform(-25, 25))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        half_w, half_h = (int(v) for v in rng.uniform(4, 20, size=2) * scale)
        if rng.random() < 0.5:
            corner_a = (centre[0] - half_w, centre[1] - half_h)
            corner_b = (centre[0] + half_w, centre[1] + half_h)
            cv2.rectangle(background, corner_a, corner_b, level, thickness=-1)
        else:
            cv2.ellipse(background, centre, (half_w, half_h), rng.uniform(0, 180), 0, 360, level, thickness=-1)
    background += rng.normal(0, 3, background.shape).astype(np.float32)
    return cv2.GaussianBlur(background, (0, 0), 0.8 * scale)


def _render_texture(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Smooth random texture in [-1, 1] with features of about ``3 sigma`` px, ``(size, size)`` float32."""
    noise = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), sigma)
    return np.clip(noise / (2 * noise.std()), -1, 1)


def _drift_steps(index: int, moving: tuple[tuple[int, int], ...]) -> int:
    """How many frame steps the texture has drifted by frame ``index``."""
    return sum(min(max(index - start, 0), stop - start) for start, stop in moving)


def _texture_size(side: int, velocity: tuple[float, float], moving: tuple[tuple[int, int], ...]) -> int:
    """Side of a texture large enough to drift ``side`` px windows over it any way, plus the cubic kernel."""
    max_travel = math.ceil(math.hypot(*velocity) * sum(stop - start for start, stop in moving))
    return side + 2 * max_travel + 8


def _paint_patch(frames: np.ndarray, texture: np.ndarray, patch: BenchmarkPatch) -> None:
    """Draw ``patch`` into ``frames`` (T, H, W, 3) float32, its ``texture`` drifting inside the fixed outline."""
    rows = slice(patch.y, patch.y + patch.side)
    cols = slice(patch.x, patch.x + patch.side)
    rest_origin = (texture.shape[0] - patch.side) / 2
    for index in range(len(frames)):
        steps = _drift_steps(index, patch.moving)
        # Moving the sampling window against the drift moves the content along it.
        origin_x = rest_origin - steps * patch.velocity[0]
        origin_y = rest_origin - steps * patch.velocity[1]
        shift = np.array([[1, 0, origin_x], [0, 1, origin_y]], np.float32)
        patch_texture = cv2.warpAffine(
            texture, shift, (patch.side, patch.side), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
        )  # (S, S)
        grey = PATCH_MEAN + PATCH_CONTRAST * np.clip(patch_texture, -1, 1)
        coloured = patch.coloured[0] <= index < patch.coloured[1]
        chroma = np.array(patch.chroma if coloured else (0.0, 0.0, 0.0), np.float32)
        frames[index, rows, cols] = grey[:, :, None] + chroma  # (S, S, 3)


def render_clip(plan: DemoClip) -> np.ndarray:
    """The clip's frames, ``(T, H, W, 3)`` uint8 RGB."""
    rng = np.random.default_rng(plan.noise_seed)
    scale = min(plan.width, plan.height) / _REFERENCE_SHORT_SIDE
    background = _render_background(rng, plan.width, plan.height, scale)
    patch = BenchmarkPatch(
        x=plan.patch_x, y=plan.patch_y, side=plan.patch_side, velocity=plan.velocity,
        moving=((plan.motion_start, plan.motion_stop),), chroma=plan.chroma, coloured=(0, plan.num_frames),
        texture_sigma=_TEXTURE_BLUR_SIGMA * scale,
    )
    texture = _render_texture(rng, _texture_size(patch.side, patch.velocity, patch.moving), patch.texture_sigma)
    frames = np.repeat(background[None, :, :, None], 3, axis=3).repeat(plan.num_frames, axis=0)  # (T, H, W, 3)
    _paint_patch(frames, texture, patch)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def _place_apart(rng: np.random.Generator, sides: list[int], width: int, height: int) -> list[tuple[int, int]]:
    """Top-left corners of squares of ``sides`` inside the frame, no two overlapping (rejection sampling)."""
    for _ in range(1000):
        corners = [(int(rng.integers(0, width - side, endpoint=True)), int(rng.integers(0, height - side, endpoint=True)))
                   for side in sides]
        boxes = [(x, y, x + side, y + side) for (x, y), side in zip(corners, sides)]
        if all(a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
               for i, a in enumerate(boxes) for b in boxes[i + 1:]):
            return corners
    raise BadConfigError("width/height", f"{width}x{height} is too small for non-overlapping patches of sides {sides}")


def benchmark_direction(class_name: str) -> tuple[float, float]:
    """Drift direction of a benchmark class: appearance class i drifts like motion class i."""
    if class_name in APPEARANCE_CLASSES:
        return _MOTION_DIRECTIONS[MOTION_CLASSES[APPEARANCE_CLASSES.index(class_name)]]
    return _MOTION_DIRECTIONS[class_name]


def plan_benchmark_clip(
    class_name: str, group: int, clip: int, *, num_frames: int, width: int, height: int, seed: int
) -> BenchmarkClip:
    """Draw one benchmark clip (module docstring) deterministically from its identity and ``seed``."""
    all_classes = [*MOTION_CLASSES, *APPEARANCE_CLASSES]
    rng = np.random.default_rng([seed, len(KINDS), all_classes.index(class_name), group, clip])
    scale = min(width, height) / _BENCHMARK_SHORT_SIDE
    steps = max(1, round(rng.uniform(*_BENCHMARK_ACTION_FRACTION_RANGE) * (num_frames - 1)))
    start = int(rng.integers(0, num_frames - 1 - steps, endpoint=True))
    stop = start + steps
    sides = [round(rng.uniform(*_TARGET_SIDE_RANGE) * scale),
             *(round(rng.uniform(*_DISTRACTOR_SIDE_RANGE) * scale) for _ in range(2))]
    corners = _place_apart(rng, sides, width, height)
    pair = MOTION_CLASSES.index(class_name) if class_name in MOTION_CLASSES else APPEARANCE_CLASSES.index(class_name)
    others = [i for i in range(len(MOTION_CLASSES)) if i != pair]
    other_pairs = [others[int(rng.integers(len(others)))] for _ in range(2)]
    directions = [benchmark_direction(class_name), *(_MOTION_DIRECTIONS[MOTION_CLASSES[i]] for i in other_pairs)]
    colours = [chroma_offset(class_name), *(tuple(_DISTRACTOR_CHROMA * np.array(chroma_offset(APPEARANCE_CLASSES[i])))
                                            for i in other_pairs)]
    movements = [((start, stop),), ((0, num_frames - 1),), ((0, start), (stop, num_frames - 1))]
    target_speed = rng.uniform(*_BENCHMARK_SPEED_RANGE) * scale
    patches = []
    for index, ((x, y), side, (dx, dy), chroma, moving) in enumerate(zip(corners, sides, directions, colours, movements)):
        target = index == 0
        speed = target_speed if target else _DISTRACTOR_SPEED * target_speed
        patches.append(BenchmarkPatch(
            x=x, y=y, side=side, velocity=(speed * dx, speed * dy), moving=moving, chroma=chroma,
            coloured=(start, stop + 1) if target else (0, num_frames),
            texture_sigma=(_TARGET_BLUR_SIGMA if target else _DISTRACTOR_BLUR_SIGMA) * scale,
        ))
    return BenchmarkClip(width=width, height=height, num_frames=num_frames, action_start=start, action_stop=stop,
                         patches=tuple(patches), noise_seed=int(rng.integers(2**63)))


@dataclass(frozen=True)
class BenchmarkCue:
    """Where and when a benchmark clip's class cue is, in the generated frame's pixels."""

    box: tuple[int, int, int, int]  # the target patch: x0, y0, x1, y1 (exclusive)
    coloured: tuple[int, int] | None  # [start, stop) frames in which the target shows its class's colour; None: grey
    moving: tuple[int, int]  # [start, stop) frame steps i -> i + 1 in which the target's texture drifts


def benchmark_cue(video_id: str, demo: DemoConfig) -> BenchmarkCue:
    """The cue of the benchmark video ``video_id`` (``<Class>/v_<Class>_gXX_cYY``), redrawn from its plan."""
    match = re.fullmatch(r"(\w+)/v_\1_g(\d+)_c(\d+)", video_id)
    if match is None:
        raise ValueError(f"'{video_id}' is not the id of a generated video (<Class>/v_<Class>_gXX_cYY)")
    plan = plan_benchmark_clip(match[1], int(match[2]), int(match[3]), num_frames=demo.num_frames,
                               width=demo.width, height=demo.height, seed=demo.seed)
    target = plan.patches[0]
    return BenchmarkCue(box=(target.x, target.y, target.x + target.side, target.y + target.side),
                        coloured=target.coloured if any(target.chroma) else None, moving=target.moving[0])


def render_benchmark_clip(plan: BenchmarkClip) -> np.ndarray:
    """The benchmark clip's frames, ``(T, H, W, 3)`` uint8 RGB."""
    rng = np.random.default_rng(plan.noise_seed)
    scale = min(plan.width, plan.height) / _BENCHMARK_SHORT_SIDE
    background = _render_background(rng, plan.width, plan.height, scale)
    frames = np.repeat(background[None, :, :, None], 3, axis=3).repeat(plan.num_frames, axis=0)  # (T, H, W, 3)
    for patch in plan.patches:
        texture = _render_texture(rng, _texture_size(patch.side, patch.velocity, patch.moving), patch.texture_sigma)
        _paint_patch(frames, texture, patch)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def _write_avi(path: Path, frames: np.ndarray) -> None:
    """Encode ``(T, H, W, 3)`` uint8 RGB frames as high-quality mpeg4 AVI, atomically."""
    _, height, width, _ = frames.shape
    ffmpeg_exe, _ = ffmpeg_binaries()
    with atomic_path(path) as tmp:
        stream = (
            ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=FPS)
            # One encoder thread: the bitstream then does not depend on the machine's core count.
            .output(f"file:{tmp}", format="avi", vcodec="mpeg4", pix_fmt="yuv420p", threads=1, **{"qscale:v": 2})
            .global_args("-hide_banner", "-loglevel", "error")
            .overwrite_output()
        )
        try:
            stream.run(cmd=ffmpeg_exe, input=frames.tobytes(), capture_stdout=True, capture_stderr=True)
        except ffmpeg.Error as error:
            raise RuntimeError(f"ffmpeg could not encode {path}: {last_stderr_line(error.stderr)}") from None


def _check_arguments(
    classes_per_kind: int, groups: int, clips_per_group: int, num_frames: int, width: int, height: int,
    kind: str, test_groups: int,
) -> None:
    if kind not in KINDS:
        raise BadConfigError("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    if not 1 <= classes_per_kind <= len(MOTION_CLASSES):
        raise BadConfigError("classes_per_kind", f"must be between 1 and {len(MOTION_CLASSES)}, got {classes_per_kind}")
    if test_groups < 1:
        raise BadConfigError("test_groups", f"must be at least 1, got {test_groups}")
    if groups <= test_groups:
        raise BadConfigError("groups", f"must be more than test_groups={test_groups} (groups 1..test_groups are the "
                                       f"test split), got {groups}")
    if clips_per_group < 1:
        raise BadConfigError("clips_per_group", f"must be at least 1, got {clips_per_group}")
    if num_frames < 4:
        raise BadConfigError("num_frames", f"must be at least 4, got {num_frames}")
    for key, value in (("width", width), ("height", height)):
        if value < 32 or value % 2:
            raise BadConfigError(key, f"must be even and at least 32 (yuv420p), got {value}")


DEMO_SETTINGS = StageSettings("demo", entry=("root", "splits_dir"), demo=section_keys("demo"))


def demo_dataset(dataset: DatasetConfig) -> None:
    """Generate a demo dataset where its entry says: ``root: <dir>/videos``, ``splits_dir: <dir>/splits``."""
    root, splits = Path(dataset.root), Path(dataset.splits_dir)
    if splits.parent != root.parent or root.name != "videos" or splits.name != "splits":
        raise BadConfigError(f"datasets.{dataset.name}", "a demo dataset needs root: <dir>/videos and splits_dir: <dir>/splits")
    demo = dataset.demo
    make_demo_dataset(root.parent, classes_per_kind=demo.classes_per_kind, groups=demo.groups,
                      clips_per_group=demo.clips_per_group, num_frames=demo.num_frames,
                      width=demo.width, height=demo.height, seed=demo.seed, kind=demo.kind, test_groups=demo.test_groups)


def make_demo_dataset(
    root: Path,
    *,
    classes_per_kind: int = 4,
    groups: int = 4,
    clips_per_group: int = 4,
    num_frames: int = 32,
    width: int = 128,
    height: int = 96,
    seed: int = 0,
    kind: str = "demo",
    test_groups: int = 1,
) -> None:
    """Write the demo (or benchmark) videos and UCF101-style split files (multi-label: the labels CSV, one
    split) under ``root``, deterministically
    from ``seed``; groups ``1..test_groups`` are the test split of split 1, the next ``test_groups``
    groups (counting on from 1 after the last) that of split 2, and so on for split 3, as in UCF101's
    three splits (disjoint test groups when ``groups`` is at least 3 x ``test_groups``).

    The split files are written last, each atomically, because they are what the workflow tracks.
    """
    _check_arguments(classes_per_kind, groups, clips_per_group, num_frames, width, height, kind, test_groups)
    plan, render = {"demo": (plan_clip, render_clip), "benchmark": (plan_benchmark_clip, render_benchmark_clip),
                    "multilabel": (plan_multilabel_clip, render_clip)}[kind]
    root = Path(root)
    classes = multilabel_folders(classes_per_kind) if kind == "multilabel" else class_names(classes_per_kind)
    clips = [
        (class_name, group, clip)
        for class_name in classes
        for group in range(1, groups + 1)
        for clip in range(1, clips_per_group + 1)
    ]

    def write_clip(identity: tuple[str, int, int]) -> None:
        class_name, group, clip = identity
        frames = render(plan(class_name, group, clip, num_frames=num_frames, width=width, height=height, seed=seed))
        _write_avi(root / "videos" / class_name / video_name(class_name, group, clip), frames)

    # ffmpeg runs as a subprocess, so threads encode in parallel.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(write_clip, clips))

    if kind == "multilabel":
        rows = [f"{folder}/{video_name(folder, group, clip)},{'test' if group <= test_groups else 'train'},"
                f"{folder.replace('_', SEPARATOR)}\n" for folder, group, clip in clips]
        write_text_atomic(root / "splits" / MULTILABEL_DEMO_CSV, "path,split,labels\n" + "".join(rows))
        return
    labels = {class_name: label for label, class_name in enumerate(classes, start=1)}
    splits = root / "splits"
    write_text_atomic(splits / ucf_split_files(1)["classes"], "".join(f"{label} {name}\n" for name, label in labels.items()))
    for split in ALL_SPLITS:
        train_lines, test_lines = [], []
        for class_name, group, clip in clips:
            relative = f"{class_name}/{video_name(class_name, group, clip)}"
            if (group - 1 - (split - 1) * test_groups) % groups < test_groups:
                test_lines.append(relative)
            else:
                train_lines.append(f"{relative} {labels[class_name]}")
        files = ucf_split_files(split)
        write_text_atomic(splits / files["train"], "".join(f"{line}\n" for line in train_lines))
        write_text_atomic(splits / files["test"], "".join(f"{line}\n" for line in test_lines))
