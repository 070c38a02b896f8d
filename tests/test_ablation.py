"""The ablation table from real small runs of every variant, laid out as the workflow lays them out."""

import dataclasses
import json
import shutil

from test_collaborative import TINY_COLLABORATIVE, train_collaborative_into, train_streams

from tclsta.ablation import COLUMNS, METRICS, MODELS, VARIANTS, ablation_inputs, ablation_table, variant_settings
from tclsta.evaluate import fuse_streams
from tclsta.features import read_features


def test_ablation_table_from_real_runs(tiny_dataset, tmp_path):
    config = tiny_dataset.config
    results = tmp_path / "results" / "tiny"
    train_streams(tiny_dataset, results)
    shutil.copy(tiny_dataset.manifest_path, results / "manifest.csv")
    train_collaborative_into(results / "features", results)
    fuse_streams(results / "scores" / "rgb.csv", results / "scores" / "flow.csv", config.fusion,
                 read_features(results / "features" / "rgb.h5").classes, results / "fusion.json")
    for variant in VARIANTS:
        if not variant.overrides:
            continue
        if variant.retrains_streams:
            train_streams(tiny_dataset, variant.streams_dir(results),
                          dataclasses.replace(config.model, **variant.overrides.get("model", {})),
                          dataclasses.replace(config.train, **variant.overrides.get("train", {})))
        collaborative = dataclasses.replace(TINY_COLLABORATIVE, **variant.overrides.get("collaborative", {}))
        train_collaborative_into(variant.streams_dir(results) / "features", variant.run_dir(results), collaborative)
    assert all(path.exists() for path in ablation_inputs(results))

    table = ablation_table(results, config.fusion)
    assert list(table.columns) == COLUMNS
    assert table["variant"].tolist() == [v.name for v in VARIANTS]
    assert (table["num_test_videos"] == 8).all()
    accuracies = table[[c for c in COLUMNS[4:] if "_diff" not in c]]  # validation top-1 too
    assert accuracies.notna().all().all() and ((accuracies >= 0) & (accuracies <= 1)).all().all()
    for name in (f"{model}_{metric}" for model in MODELS for metric in METRICS):
        assert (table[f"{name}_ci_low"] <= table[name]).all() and (table[name] <= table[f"{name}_ci_high"]).all()
        assert (table[f"{name}_diff"] == table[name] - table.loc[0, name]).all()
        assert (table[f"{name}_diff_ci_low"] <= table[f"{name}_diff"] + 1e-9).all()
        # the full model against itself: the same resamples give a difference of exactly zero
        assert table.loc[0, [f"{name}_diff", f"{name}_diff_ci_low", f"{name}_diff_ci_high"]].tolist() == [0, 0, 0]
    assert ablation_table(results, config.fusion).equals(table)  # seeded: the same intervals again
    by_name = table.set_index("variant")
    # Variants that reuse the full model's streams report the same stream accuracies.
    for name in ("learned_fusion", "late_fusion", "no_mutual_guidance"):
        assert by_name.loc[name, "rgb_top1"] == by_name.loc["full", "rgb_top1"]
        assert by_name.loc[name, "flow_mean_class_accuracy"] == by_name.loc["full", "flow_mean_class_accuracy"]
        # the same predictions on the same resamples: a paired difference of zero, interval included
        assert by_name.loc[name, ["rgb_top1_diff_ci_low", "rgb_top1_diff_ci_high"]].tolist() == [0, 0]


def test_variant_settings_override_only_the_sections_a_stage_uses():
    stage = json.dumps({"name": "tiny", "model": {"spatial_attention": True, "backbone": "small"}, "train": {"seed": 0}})
    changed = json.loads(variant_settings(stage, "no_spatial_attention"))
    assert changed["model"] == {"spatial_attention": False, "backbone": "small"} and changed["train"] == {"seed": 0}
    assert "collaborative" not in json.loads(variant_settings(stage, "no_mutual_guidance"))
