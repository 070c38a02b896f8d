#!/usr/bin/env bash
# Post-deploy script of every conda env (Snakemake runs <env>.post-deploy.sh inside the new env, from
# the directory snakemake was started in): installs tclsta itself, editable, from the repository,
# which is that directory, or TCLSTA_SOURCE when this workflow is used as a module of another one.
set -eu
source_dir="${TCLSTA_SOURCE:-$PWD}"
if [ ! -f "$source_dir/tclsta/__init__.py" ]; then
    echo "tclsta sources not found in $source_dir: set TCLSTA_SOURCE to the TCLSTA repository" >&2
    exit 1
fi
python -m pip install --no-deps --quiet -e "$source_dir"
