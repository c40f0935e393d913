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

# `make bench`: every benchmark, one after the other (each writes bench/results/<name>[-tag].json;
# its JSON on stdout is the same document), then the results tables in README.md and docs/
bench: setup
	$(PY) bench/data_throughput.py >/dev/null
	$(PY) bench/train_throughput.py >/dev/null
	$(PY) bench/train_throughput.py --batch-size 16 --materialize --tag b16 >/dev/null
	$(PY) bench/infer_latency.py >/dev/null
	$(PY) bench/serve_latency.py >/dev/null
	$(PY) bench/localize_probe.py >/dev/null
	$(PY) bench/idle_actors.py >/dev/null
	$(PY) bench/ray_presence.py >/dev/null
	$(PY) bench/render_docs.py

clean:
	rm -rf runs sections .pytest_cache
