# Two commands on a fresh Debian 12 / Ubuntu 24.04 machine:
#   make demo   installs what is missing, then detects objects in the bundled clip (results under out/)
#   make test   installs what is missing, then runs ruff and the test suite
# The virtual environment uses the distribution's Python so that its GStreamer bindings (python3-gi,
# python3-gst-1.0: buffers map to memoryviews without a copy) are visible next to PyTorch.

PYTHON ?= /usr/bin/python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLE := media/sample.mp4

.PHONY: demo test lint bench bench-streams soak system-deps clean

demo: $(BIN)/.installed
	$(BIN)/vidpipe detect $(SAMPLE) --json out/detections.jsonl --video out/annotated.mp4 --graph out/pipeline.png

test: $(BIN)/.installed-test
	$(BIN)/ruff check vidpipe tests benchmarks
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed-test
	$(BIN)/python benchmarks/decode.py
	$(BIN)/python benchmarks/models.py
	$(BIN)/python benchmarks/pipeline.py

bench-streams: $(BIN)/.installed-test
	$(BIN)/python benchmarks/streams.py

soak: $(BIN)/.installed-test
	$(BIN)/python benchmarks/soak.py --minutes 20

system-deps:
	bash scripts/install-system-deps.sh

$(BIN)/.venv: | system-deps
	$(PYTHON) -m venv --system-site-packages $(VENV)
	touch $@

$(BIN)/.installed: pyproject.toml $(BIN)/.venv
	$(BIN)/pip install -q -e '.[track,onnx,openvino]'
	touch $@

$(BIN)/.installed-test: pyproject.toml $(BIN)/.venv
	$(BIN)/pip install -q -e '.[track,onnx,openvino,test]'
	touch $@ $(BIN)/.installed

clean:
	rm -rf $(VENV) out
