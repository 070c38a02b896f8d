"""Shard keys: runs over the same videos with the same shard settings share work/shards/<key>/, others do not."""

import copy

import pytest

from conftest import TINY_SETTINGS
from tclsta.shared import shard_groups

ENTRY = {k: v for k, v in TINY_SETTINGS.items() if k != "name"}
ENTRY["preprocess"] = {k: v for k, v in ENTRY["preprocess"].items() if k != "num_shards"}  # the default, 16


@pytest.mark.parametrize("change, shared", [
    ({"train": {"seed": 1}}, True),  # training is not preprocessing
    ({"split": "all"}, True),  # the splits of one entry
    ({"flow": {"backend": "torch", "batch_pairs": 8}}, True),  # how flow is computed, not what
    ({"flow": {"bound": 20.0}}, True),  # a default spelled out
    ({"root": "data/tiny/./videos/"}, True),  # the same folder, written otherwise
    ({"root": "data/other/videos"}, False),
    ({"preprocess": {"num_shards": 3}}, False),
    ({"preprocess": {"short_side": None, "num_shards": 16}}, True),  # its default, as the other leaves it out
    ({"preprocess": {"short_side": 32}}, False),
    ({"flow": {"warps": 3}}, False),
])
def test_runs_share_shards_when_videos_and_shard_settings_agree(change, shared):
    other = copy.deepcopy(ENTRY)
    for key, value in change.items():
        other[key] = {**other[key], **value} if isinstance(value, dict) else value
    groups = shard_groups({"datasets": {"tiny": ENTRY, "other": other}})
    runs = ["tiny", *(f"other/split{n}" for n in (1, 2, 3))] if change.get("split") else ["tiny", "other"]
    assert (list(groups.values()) == [runs]) == shared, groups
