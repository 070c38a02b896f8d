"""The report of a dataset run on several splits: each split's values, their mean and std, ablation included."""

import json

import numpy as np
import pandas as pd

from tclsta.split_report import write_split_report


def test_mean_and_std_across_splits_for_models_and_ablation_variants(tmp_path):
    folders = []
    for split, top1 in ((1, 0.5), (2, 0.7), (3, 0.9)):
        folder = tmp_path / "results/ucf101" / f"split{split}"
        folder.mkdir(parents=True)
        result = {"top1": top1, "top5": 1.0, "mean_class_accuracy": top1 - 0.1}
        (folder / "metrics.json").write_text(json.dumps({"results": {"rgb": result, "fused": result}}))
        pd.DataFrame([{"variant": variant, **{f"{m}_{k}": top1 - shift for m in ("rgb", "flow", "fused")
                                              for k in ("top1", "mean_class_accuracy")}}
                      for variant, shift in (("full", 0.0), ("no_attention", 0.2))]).to_csv(folder / "ablation.csv", index=False)
        folders.append(folder)

    write_split_report("ucf101", folders, True, tmp_path / "report.html", tmp_path / "splits.csv")

    table = pd.read_csv(tmp_path / "splits.csv", keep_default_na=False).set_index(["variant", "model", "metric"])
    assert table.loc[("", "fused", "top1"), ["split1", "split2", "split3"]].tolist() == [0.5, 0.7, 0.9]
    assert np.isclose(table.loc[("", "fused", "top1"), "mean"], 0.7) and np.isclose(table.loc[("", "fused", "top1"), "std"], 0.2)
    assert np.isclose(table.loc[("no_attention", "flow", "top1"), "mean"], 0.5)
    report = (tmp_path / "report.html").read_text()
    assert "70.0 ± 20.0" in report and "50.0 ± 20.0" in report and "no_attention" in report
    assert "TSN (Wang et al. 2016)" in report  # ucf101: the published means, which the mean top-1 compares with
