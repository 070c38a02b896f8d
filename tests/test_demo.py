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
    BenchmarkClip,
    DemoClip,
    benchmark_direction,
    chroma_offset,
    drift_direction,
    expected_ceilings,
    make_demo_dataset,
    plan_benchmark_clip,
    plan_clip,
    render_benchmark_clip,
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
    assert sorted(path.name for path in splits.iterdir()) == ["classInd.txt", *(f"{kind}list0{n}.txt" for kind in ("test", "train") for n in (1, 2, 3))]
    assert (splits / "classInd.txt").read_text() == "1 DriftRight\n2 DriftLeft\n3 RedPatch\n4 GreenPatch\n"
    assert (splits / "trainlist01.txt").read_text().splitlines() == [
        f"{name}/v_{name}_g02_c01.avi {label}" for label, name in enumerate(TINY_CLASSES, start=1)
    ]
    assert (splits / "testlist01.txt").read_text().splitlines() == [
        f"{name}/v_{name}_g01_c01.avi" for name in TINY_CLASSES
    ]
    # split 2 tests the next group, split 3 (two groups only) the first again
    for split, group in ((2, 2), (3, 1)):
        assert (splits / f"testlist0{split}.txt").read_text().splitlines() == [
            f"{name}/v_{name}_g0{group}_c01.avi" for name in TINY_CLASSES
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
    assert expected_ceilings(4) == {"rgb": 1.0, "flow": 0.625, "fused": 1.0, "rgb_per_frame": 0.625}
    assert expected_ceilings(2) == {"rgb": 1.0, "flow": 0.75, "fused": 1.0, "rgb_per_frame": 0.75}
    assert expected_ceilings(1) == {"rgb": 1.0, "flow": 1.0, "fused": 1.0, "rgb_per_frame": 1.0}


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


def _benchmark_plan(class_name: str, clip: int = 1) -> BenchmarkClip:
    return plan_benchmark_clip(class_name, 1, clip, num_frames=12, width=64, height=48, seed=0)


def test_benchmark_dataset_layout_and_determinism(tmp_path: Path) -> None:
    settings = dict(classes_per_kind=1, groups=3, test_groups=2, clips_per_group=1, num_frames=8, width=64, height=48,
                    kind="benchmark")
    make_demo_dataset(tmp_path / "a", **settings)
    make_demo_dataset(tmp_path / "b", **settings)
    splits = tmp_path / "a" / "splits"
    assert (splits / "testlist01.txt").read_text().splitlines() == [
        "DriftRight/v_DriftRight_g01_c01.avi", "DriftRight/v_DriftRight_g02_c01.avi",
        "RedPatch/v_RedPatch_g01_c01.avi", "RedPatch/v_RedPatch_g02_c01.avi"]
    assert (splits / "trainlist01.txt").read_text().splitlines() == [
        "DriftRight/v_DriftRight_g03_c01.avi 1", "RedPatch/v_RedPatch_g03_c01.avi 2"]
    for video in sorted((tmp_path / "a" / "videos").rglob("*.avi")):
        again = tmp_path / "b" / video.relative_to(tmp_path / "a")
        np.testing.assert_array_equal(decode_frames(video), decode_frames(again))
    with pytest.raises(BadConfigError, match="kind"):
        make_demo_dataset(tmp_path / "c", kind="other")
    with pytest.raises(BadConfigError, match="groups"):
        make_demo_dataset(tmp_path / "c", groups=3, test_groups=3)


def test_benchmark_builds_in_each_need() -> None:
    """Small target drifting in its class's direction inside the window only (appearance class i like motion class i),
    coloured only then; one distractor drifting throughout, one only outside the window, each in another pair's
    direction and colour, weaker per pixel but larger; no overlaps."""
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create(nscales=3, warps=3, epsilon=0.05)
    for motion, appearance in zip(MOTION_CLASSES, APPEARANCE_CLASSES):
        assert benchmark_direction(appearance) == benchmark_direction(motion) == drift_direction(motion)
    for class_name in ("DriftLeft", "GreenPatch"):
        plan = _benchmark_plan(class_name)
        frames = render_benchmark_clip(plan)
        target, spatial, temporal = plan.patches
        assert target.side < min(spatial.side, temporal.side)
        pair = benchmark_direction(class_name)
        for distractor in (spatial, temporal):
            direction = np.array(distractor.velocity) / np.linalg.norm(distractor.velocity)
            assert any(np.allclose(direction, d) for d in map(drift_direction, MOTION_CLASSES))
            assert not np.allclose(direction, pair)  # another pair's direction ...
            assert np.linalg.norm(distractor.velocity) < np.linalg.norm(target.velocity)  # ... slower ...
            shown = np.array(distractor.chroma)
            assert any(np.allclose(shown, 0.6 * np.array(chroma_offset(other))) for other in APPEARANCE_CLASSES
                       if benchmark_direction(other) == tuple(direction))  # ... in that pair's paler colour
            assert distractor.side >= 1.4 * target.side  # ... over about twice the area or more
        boxes = [(p.x, p.y, p.x + p.side, p.y + p.side) for p in plan.patches]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
        grey = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]

        def mean_flow(patch, step: int) -> np.ndarray:
            inner = (slice(patch.y + 2, patch.y + patch.side - 2), slice(patch.x + 2, patch.x + patch.side - 2))
            return tvl1.calc(grey[step], grey[step + 1], None)[inner].reshape(-1, 2).mean(axis=0)

        inside = (plan.action_start + plan.action_stop) // 2
        outside = plan.action_stop if plan.action_stop < plan.num_frames - 1 else plan.action_start - 1
        assert mean_flow(target, inside) @ np.array(benchmark_direction(class_name)) > 0.5
        assert np.abs(mean_flow(target, outside)).max() < 0.3
        assert np.linalg.norm(mean_flow(spatial, inside)) > 0.5 and np.linalg.norm(mean_flow(spatial, outside)) > 0.5
        assert np.abs(mean_flow(temporal, inside)).max() < 0.3 and np.linalg.norm(mean_flow(temporal, outside)) > 0.5
        rows, cols = slice(target.y, target.y + target.side), slice(target.x, target.x + target.side)
        grey_frame = plan.action_stop + 1 if plan.action_stop + 1 < plan.num_frames else plan.action_start - 1
        spread = [np.ptp(frames[i, rows, cols].reshape(-1, 3).mean(axis=0)) for i in (inside, grey_frame)]
        if class_name in APPEARANCE_CLASSES:
            assert spread[0] > 40 and spread[1] < 3  # coloured only while it moves
        else:
            assert spread[0] < 3 and spread[1] < 3


def test_benchmark_ceilings() -> None:
    assert expected_ceilings(4, "benchmark") == {"rgb": 1.0, "flow": 0.5, "fused": 1.0, "rgb_per_frame": 0.625}
