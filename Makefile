# The two commands a newcomer types: `make demo` and `make test`.
# Both create .venv with the pinned requirements and install ffmpeg when it is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test setup system-packages lint clean-demo

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
	snakemake --cores $(CORES) results/demo/report.html
	@echo "Open results/demo/report.html"

test: setup
	python -m pytest

lint: setup
	snakemake --lint
	snakefmt --check Snakefile rules

clean-demo:
	rm -rf data/demo results/demo logs .snakemake
