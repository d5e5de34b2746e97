# The Lambda package, as `sam build` makes it: template.yaml's functions say
# `BuildMethod: makefile`, so sam runs `make build-<LogicalId>` with ARTIFACTS_DIR set.
# scripts/package.py copies the code (core/, handlers/) and installs the runtime wheels for
# Lambda's Python 3.12 on arm64 with pip's platform flags: no local Python 3.12 and no
# container needed. EXTRAS names optional dependency groups of pyproject.toml to include
# (`sam build --parameter-overrides` cannot reach it; set it in the environment).
# EMBEDDER=minilm (the default) ships all-MiniLM-L6-v2 built as an int8 ONNX graph in minilm/
# with the onnxruntime and tokenizers wheels, which template.yaml's default Embedder=minilm
# runs; EMBEDDER=minilm-numpy ships the float16 weights for the numpy runtime instead (no
# onnxruntime); EMBEDDER=builtin leaves the model out for a deployment with Embedder=builtin.
PYTHON ?= python3
EXTRAS ?=
EMBEDDER ?= minilm
# --no-deps: the code and the model, no wheels (tests/e2e/test_package.py builds it this way).
PACKAGE_FLAGS ?=

build-ApiFunction build-MaintenanceFunction build-DeliveryFunction build-IngestFunction:
	$(PYTHON) scripts/package.py "$(ARTIFACTS_DIR)" --extras "$(EXTRAS)" --embedder "$(EMBEDDER)" $(PACKAGE_FLAGS)

.PHONY: build-ApiFunction build-MaintenanceFunction build-DeliveryFunction build-IngestFunction
