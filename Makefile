# The two commands a newcomer types: `make demo` and `make test`.
# Both create .venv with the pinned requirements and install ffmpeg when it is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Jobs that run torch use one thread each (Snakemake runs such jobs side by side instead): floating-point
# sums then do not depend on the machine's core count, and the demo's numbers are the same on every run.
ONE_THREAD_RULES := train_stream score_stream features collaborative attention \
	ablation_train_stream ablation_score_stream ablation_features ablation_collaborative
ONE_THREAD := --set-threads $(foreach rule,$(ONE_THREAD_RULES),$(rule)=1)  # after the targets: it takes several values

.PHONY: demo figures test setup system-packages lint clean-demo rehearsal

setup: $(STAMP) system-packages

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -r requirements.txt
	$(BIN)/pip install --no-deps -e .
	touch $@

# System packages from Debian when run as root (apt-get), one "command:package" pair each:
# ffmpeg (with ffprobe) for decoding. Without root, tclsta falls back to the ffmpeg
# binary shipped by the imageio-ffmpeg package (see README).
SYSTEM_PACKAGES := ffprobe:ffmpeg chromium:chromium sinfo:slurm-client slurmctld:slurmctld slurmd:slurmd munge:munge
system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
		command -v "$${pair%%:*}" >/dev/null || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "missing system packages:$$missing (not root: ffmpeg falls back to imageio-ffmpeg)"; \
		fi; \
	fi

demo: setup
	snakemake --cores $(CORES) results/demo/report.html $(ONE_THREAD)
	@python -m tclsta figures --print results/demo
	@echo "Open results/demo/report.html"

# Runs the demo and the benchmark (with its ablation), then rewrites the README's result tables from the
# files they produced and records those figures, with the commit, under docs/figures/.
figures: setup
	snakemake --cores $(CORES) results/demo/report.html results/benchmark/report.html $(ONE_THREAD)
	python -m tclsta figures --readme README.md --output-dir docs/figures results/demo results/benchmark

test: setup
	python -m pytest

# The UCF101 recipe end to end at its real shapes (ResNet-50 at 224, 25 frames x 10 crops, 101 classes) on a
# generated UCF101-layout dataset, only counts cut; prints each rule's time and peak memory (docs/rehearsal.md).
rehearsal: setup
	python benchmarks/rehearsal.py --cores $(CORES)

lint: setup
	snakemake --lint
	snakefmt --check Snakefile rules

# the demo's shards too (work/shards/<key>/, tclsta/shared.py), not those of other datasets
clean-demo:
	rm -rf data/demo results/demo logs .snakemake \
		"$$(python -c 'from tclsta.config import load_config; from tclsta.shared import shards_folder; print(shards_folder(load_config("config.yaml"), "demo"))')"
