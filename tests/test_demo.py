"""The demo dataset: layout, determinism, and that colour and motion each carry one kind of class."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from tclsta.demo import (
    APPEARANCE_CLASSES,
    LUMA_WEIGHTS,
    MOTION_CLASSES,
    DemoClip,
    chroma_offset,
    drift_direction,
    expected_ceilings,
    make_demo_dataset,
    plan_clip,
    render_clip,
)
from tclsta.errors import BadConfigError
from tclsta.video import decode_frames, ffmpeg_binaries, probe_video

TINY = dict(classes_per_kind=2, groups=2, clips_per_group=1, num_frames=12)
TINY_CLASSES = [*MOTION_CLASSES[:2], *APPEARANCE_CLASSES[:2]]
INSET = 3  # px kept away from the patch border, where the fixed outline meets the moving texture


def _plan(class_name: str, group: int, seed: int = 0) -> DemoClip:
    return plan_clip(class_name, group, 1, num_frames=TINY["num_frames"], width=128, height=96, seed=seed)


def _patch_interior(plan: DemoClip) -> tuple[slice, slice]:
    return (
        slice(plan.patch_y + INSET, plan.patch_y + plan.patch_side - INSET),
        slice(plan.patch_x + INSET, plan.patch_x + plan.patch_side - INSET),
    )


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root, **TINY)
    return root


@pytest.fixture(scope="module")
def decoded(tiny_root: Path) -> dict[tuple[str, int], np.ndarray]:
    """Decoded frames of every tiny-dataset video, keyed by (class, group)."""
    return {
        (name, group): decode_frames(tiny_root / "videos" / name / f"v_{name}_g{group:02d}_c01.avi")
        for name in TINY_CLASSES
        for group in (1, 2)
    }


def test_layout_and_split_files(tiny_root: Path, decoded: dict[tuple[str, int], np.ndarray]) -> None:
    videos = sorted(str(path.relative_to(tiny_root / "videos")) for path in (tiny_root / "videos").rglob("*"))
    assert videos == sorted(
        list(TINY_CLASSES) + [f"{name}/v_{name}_g{group:02d}_c01.avi" for name in TINY_CLASSES for group in (1, 2)]
    )
    splits = tiny_root / "splits"
    assert sorted(path.name for path in splits.iterdir()) == ["classInd.txt", "testlist01.txt", "trainlist01.txt"]
    assert (splits / "classInd.txt").read_text() == "1 DriftRight\n2 DriftLeft\n3 RedPatch\n4 GreenPatch\n"
    assert (splits / "trainlist01.txt").read_text().splitlines() == [
        f"{name}/v_{name}_g02_c01.avi {label}" for label, name in enumerate(TINY_CLASSES, start=1)
    ]
    assert (splits / "testlist01.txt").read_text().splitlines() == [
        f"{name}/v_{name}_g01_c01.avi" for name in TINY_CLASSES
    ]
    info = probe_video(tiny_root / "videos" / "DriftRight" / "v_DriftRight_g01_c01.avi")
    assert (info.width, info.height, info.fps) == (128, 96, 25.0)
    assert info.num_frames == (TINY["num_frames"] if ffmpeg_binaries()[1] else None)  # None without ffprobe
    assert all(frames.shape == (TINY["num_frames"], 96, 128, 3) for frames in decoded.values())


def test_same_seed_gives_same_frames(tmp_path: Path, decoded: dict[tuple[str, int], np.ndarray]) -> None:
    make_demo_dataset(tmp_path, **TINY)
    for (name, group), frames in decoded.items():
        again = decode_frames(tmp_path / "videos" / name / f"v_{name}_g{group:02d}_c01.avi")
        np.testing.assert_array_equal(again, frames)
    assert not np.array_equal(render_clip(_plan("DriftRight", 1, seed=1)), render_clip(_plan("DriftRight", 1)))


def test_expected_ceilings() -> None:
    assert expected_ceilings(4) == {"rgb": 0.625, "flow": 0.625, "fused": 1.0}
    assert expected_ceilings(2) == {"rgb": 0.75, "flow": 0.75, "fused": 1.0}
    assert expected_ceilings(1) == {"rgb": 1.0, "flow": 1.0, "fused": 1.0}


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(BadConfigError, match="classes_per_kind"):
        make_demo_dataset(tmp_path, classes_per_kind=5)
    with pytest.raises(BadConfigError, match="groups"):
        make_demo_dataset(tmp_path, groups=1)
    assert not any(tmp_path.iterdir())


def test_colour_offsets_carry_no_luma() -> None:
    plan = _plan("RedPatch", 1)
    grey = render_clip(dataclasses.replace(plan, chroma=(0.0, 0.0, 0.0))) @ LUMA_WEIGHTS
    for name in APPEARANCE_CLASSES:
        coloured = render_clip(dataclasses.replace(plan, chroma=chroma_offset(name))) @ LUMA_WEIGHTS
        assert np.abs(coloured - grey).max() <= 1.0, name


def test_appearance_classes_differ_in_colour_and_motion_classes_share_it(
    decoded: dict[tuple[str, int], np.ndarray],
) -> None:
    mean_colour = {}
    for (name, group), frames in decoded.items():
        rows, cols = _patch_interior(_plan(name, group))
        mean_colour[name, group] = frames[:, rows, cols].reshape(-1, 3).mean(axis=0)
    for colour in mean_colour.values():
        assert abs(colour @ LUMA_WEIGHTS - 128) < 10  # every patch has the same brightness
    for name in MOTION_CLASSES[:2]:
        for group in (1, 2):
            assert np.ptp(mean_colour[name, group]) < 3  # grey
    red, green = APPEARANCE_CLASSES[:2]
    for group in (1, 2):
        assert np.linalg.norm(mean_colour[red, group] - mean_colour[green, group]) > 100
        assert np.linalg.norm(mean_colour[red, group] - mean_colour[red, 3 - group]) < 10


def test_flow_inside_patch_follows_class_direction(decoded: dict[tuple[str, int], np.ndarray]) -> None:
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create(nscales=3, warps=3, epsilon=0.05)
    for (name, group), frames in decoded.items():
        plan = _plan(name, group)
        rows, cols = _patch_interior(plan)
        grey = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]
        moving = np.mean(
            [
                tvl1.calc(grey[i], grey[i + 1], None)[rows, cols].reshape(-1, 2).mean(axis=0)
                for i in range(plan.motion_start, plan.motion_stop)
            ],
            axis=0,
        )
        speed = np.hypot(*plan.velocity)
        assert moving @ np.array(drift_direction(name)) > 0.8 * speed, (name, moving)
        assert np.linalg.norm(moving - np.array(plan.velocity)) < 0.25 * speed, (name, moving)
        still = plan.motion_stop if plan.motion_stop < plan.num_frames - 1 else plan.motion_start - 1
        still_flow = tvl1.calc(grey[still], grey[still + 1], None)[rows, cols]
        assert np.abs(still_flow).mean() < 0.2, (name, "moves outside the action window")
