# The two commands a newcomer types: `make demo` and `make test`.
# Both create .venv with the pinned requirements and install ffmpeg when it is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test setup ffmpeg lint clean-demo

setup: $(STAMP) ffmpeg

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -r requirements.txt
	$(BIN)/pip install --no-deps -e .
	touch $@

# ffmpeg (with ffprobe) from Debian when run as root; otherwise tclsta falls back to the
# ffmpeg binary shipped by the imageio-ffmpeg package (see README).
ffmpeg:
	@if ! command -v ffprobe >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; \
		else \
			echo "ffmpeg not found and not root: using the imageio-ffmpeg binary"; \
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
