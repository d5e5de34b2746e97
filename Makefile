# The Lambda package, as `sam build` makes it: template.yaml's functions say
# `BuildMethod: makefile`, so sam runs `make build-<LogicalId>` with ARTIFACTS_DIR set.
# scripts/package.py copies the code (core/, handlers/) and installs the runtime wheels for
# Lambda's Python 3.12 on arm64 with pip's platform flags: no local Python 3.12 and no
# container needed. EXTRAS names optional dependency groups of pyproject.toml to include
# (`sam build --parameter-overrides` cannot reach it; set it in the environment).
PYTHON ?= python3
EXTRAS ?=
# --no-deps: the code alone (tests/test_package.py builds it this way, offline).
PACKAGE_FLAGS ?=

build-ApiFunction build-MaintenanceFunction build-DeliveryFunction:
	$(PYTHON) scripts/package.py "$(ARTIFACTS_DIR)" --extras "$(EXTRAS)" $(PACKAGE_FLAGS)

.PHONY: build-ApiFunction build-MaintenanceFunction build-DeliveryFunction
