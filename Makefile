# Two commands on a fresh Debian 12 / Ubuntu 24.04 machine:
#   make demo   installs what is missing, then detects objects in the bundled clip (results under out/)
#   make test   installs what is missing, then runs ruff and the test suite
#   make serve  installs what is missing, then serves the bundled clip (looped) and a test pattern
#   make lock   resolves the newest versions pyproject.toml allows into requirements.lock (then run make test)
# Every install takes its versions from requirements.lock (pip constraints): a fresh clone installs what
# was tested.
# The virtual environment uses the distribution's Python so that its GStreamer bindings (python3-gi,
# python3-gst-1.0: buffers map to memoryviews without a copy) are visible next to PyTorch.

PYTHON ?= /usr/bin/python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE := media/sample.mp4
LOCK := requirements.lock
EXTRAS := track,onnx,openvino,serve,ray,int8,test
# pytest workers: 2 fits the 2-core CI machine; the tests that start a local Ray share one (tests/conftest.py).
# OpenMP threads that wait by sleeping, not spinning: with two workers (and their subprocesses) on two cores,
# PyTorch's spinning threads took the CPU the other worker needed (element and stream tests: 4 min 9 s ->
# 3 min 17-29 s; the detections are the same). Not vidpipe's default: alone, the torch backend is faster spinning.
TEST_WORKERS ?= 2
TEST_ENV := OMP_WAIT_POLICY=PASSIVE

.PHONY: demo test serve lock lint bench bench-streams bench-serve soak system-deps test-system-deps clean

demo: $(BIN)/.installed
	$(BIN)/vidpipe detect $(SAMPLE) --json out/detections.jsonl --video out/annotated.mp4 --graph out/pipeline.png

test: $(BIN)/.installed-test | test-system-deps
	$(BIN)/ruff check vidpipe tests benchmarks
	$(TEST_ENV) $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=25

serve: $(BIN)/.installed
	$(BIN)/vidpipe serve --config examples/vidpipe.yaml --port 8080

bench: $(BIN)/.installed-test
	$(BIN)/python benchmarks/decode.py
	$(BIN)/python benchmarks/models.py
	$(BIN)/python benchmarks/pipeline.py

bench-streams: $(BIN)/.installed-test
	$(BIN)/python benchmarks/streams.py

bench-serve: $(BIN)/.installed-test | test-system-deps
	cd benchmarks && ../$(BIN)/python serve.py --minutes 10

soak: $(BIN)/.installed-test
	$(BIN)/python benchmarks/soak.py --minutes 20

system-deps:
	bash scripts/install-system-deps.sh

test-system-deps:
	bash scripts/install-system-deps.sh --test

$(BIN)/.venv: | system-deps
	$(PYTHON) -m venv --system-site-packages $(VENV)
	touch $@

$(BIN)/.installed: pyproject.toml $(LOCK) $(BIN)/.venv
	$(BIN)/pip install -q -c $(LOCK) -e '.[track,onnx,openvino,serve]'
	touch $@

$(BIN)/.installed-test: pyproject.toml $(LOCK) $(BIN)/.venv
	$(BIN)/pip install -q -c $(LOCK) -e '.[$(EXTRAS)]'
	touch $@ $(BIN)/.installed

# A fresh environment, the newest versions pyproject.toml allows, frozen (the distribution's packages,
# seen through --system-site-packages, are left out: apt installs those).
lock: | system-deps
	rm -rf .lock-venv
	$(PYTHON) -m venv --system-site-packages .lock-venv
	.lock-venv/bin/pip install -q '.[$(EXTRAS)]'
	{ echo "# pip constraints: the versions make demo, make test and CI install (make lock writes this file)"; \
	  echo "# $$(date -u +%Y-%m-%d), $$($(PYTHON) --version), $$(uname -m)"; \
	  .lock-venv/bin/pip freeze --local --exclude vidpipe; } > $(LOCK)
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) out
