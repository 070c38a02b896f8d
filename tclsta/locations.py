"""Where the workflow's own files are: Snakefile, rules/, envs/, workflow/ (config schema, report
captions, profiles, container recipe) and the example config.yaml.

An installed tclsta carries them in ``tclsta/pipeline/``, laid out as in the repository (pyproject.toml
maps the repository root there); a source checkout, installed editable or not, has them in the
repository root beside ``tclsta/``.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
PIPELINE_DIR = _PACKAGE / "pipeline" if (_PACKAGE / "pipeline" / "Snakefile").is_file() else _PACKAGE.parent
SNAKEFILE = PIPELINE_DIR / "Snakefile"
SCHEMA_PATH = PIPELINE_DIR / "workflow" / "schemas" / "config.schema.yaml"
