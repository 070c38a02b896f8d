"""The inference stages stand on tclsta.inference alone: none of them imports the trainer."""

import json
import subprocess
import sys

INFERENCE_STAGES = ("inference", "features", "attention_view", "predict", "evaluate", "collaborative", "fusion", "ablation", "report")


def test_inference_stages_do_not_import_the_trainer():
    modules = ", ".join(f"tclsta.{name}" for name in INFERENCE_STAGES)
    code = f"import json, sys, {modules}; print(json.dumps([m for m in sys.modules if m.startswith('tclsta.')]))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    imported = json.loads(run.stdout)
    assert "tclsta.inference" in imported and "tclsta.predict" in imported  # the check sees what was imported
    assert "tclsta.train" not in imported
