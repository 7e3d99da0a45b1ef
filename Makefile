# Two commands on a fresh Debian 12 / Ubuntu 24.04 machine:
#   make demo   installs what is missing, then detects objects in the bundled clip (results under out/)
#   make test   installs what is missing, then runs ruff and the test suite
#   make serve  installs what is missing, then serves the bundled clip (looped) and a test pattern
# The virtual environment uses the distribution's Python so that its GStreamer bindings (python3-gi,
# python3-gst-1.0: buffers map to memoryviews without a copy) are visible next to PyTorch.

PYTHON ?= /usr/bin/python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE := media/sample.mp4

.PHONY: demo test serve lint bench bench-streams bench-serve soak system-deps test-system-deps clean

demo: $(BIN)/.installed
	$(BIN)/vidpipe detect $(SAMPLE) --json out/detections.jsonl --video out/annotated.mp4 --graph out/pipeline.png

test: $(BIN)/.installed-test | test-system-deps
	$(BIN)/ruff check vidpipe tests benchmarks
	$(BIN)/python -m pytest -q

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

$(BIN)/.installed: pyproject.toml $(BIN)/.venv
	$(BIN)/pip install -q -e '.[track,onnx,openvino,serve]'
	touch $@

$(BIN)/.installed-test: pyproject.toml $(BIN)/.venv
	$(BIN)/pip install -q -e '.[track,onnx,openvino,serve,ray,int8,test]'
	touch $@ $(BIN)/.installed

clean:
	rm -rf $(VENV) out
