# `make run`  : set-up + the main job (synthetic data, Phase 1 training, evaluation, a prediction)
# `make test` : set-up + the test suite
PY := .venv/bin/python
STAMP := .venv/.installed-$(shell cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)
PYTEST_ARGS ?=

.PHONY: setup run test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh
	rm -f .venv/.installed-* && touch $@

run: setup
	$(PY) -m cli quickstart --out runs/quickstart

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) bench/data_throughput.py
	$(PY) bench/train_throughput.py
	$(PY) bench/infer_latency.py
	$(PY) bench/serve_latency.py
	$(PY) bench/localize_probe.py
	$(PY) bench/idle_actors.py
	$(PY) bench/ray_presence.py

clean:
	rm -rf runs sections .pytest_cache
