# `make demo`: set up .venv and run the main job on the embedded data. `make test`: the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := runs/demo
DEMO_STEPS := 200
WEB := apps/web

.PHONY: setup demo test test-fast test-android clean

setup: $(VENV)/.installed $(WEB)/node_modules/.package-lock.json

$(VENV)/.installed: pyproject.toml tests/mm-oracle.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all]'
	$(BIN)/pip install --quiet --no-deps -r tests/mm-oracle.txt
	touch $@

# onnxruntime-web (pinned in package-lock.json) for the web app and its browser test, which skips without it
$(WEB)/node_modules/.package-lock.json: $(WEB)/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix $(WEB) --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the web app's browser test will be skipped (install Node.js 20, then make setup)"; fi

# The main job: a small MCi0 SemanticFPN trained on the embedded synthetic data on this CPU, evaluated, then
# exported to ONNX and ExecuTorch (fp32) and Core ML (fp16), each artifact checked against PyTorch.
demo: setup
	$(BIN)/mcq data synth seg --out $(DEMO)/data
	$(BIN)/mcq train seg --backbone mci0 --data $(DEMO)/data --max-steps $(DEMO_STEPS) --batch-size 8 --img-size 256 \
		--val-every 100 --out $(DEMO)/train --exist-ok
	$(BIN)/mcq eval seg --checkpoint $(DEMO)/train/checkpoints/last.ckpt --data $(DEMO)/data \
		--json $(DEMO)/eval.json
	$(BIN)/mcq export all --checkpoint $(DEMO)/train/checkpoints/last.ckpt --data $(DEMO)/data \
		--out $(DEMO)/exports --json $(DEMO)/exports/report.json

# one pytest worker per core (at most 4), each test file on one worker (its module fixtures built once), files in
# collection order (tests/conftest.py puts those with slow tests first; xdist would otherwise start the files with
# the most tests first), the slowest tests named at the end. Every temporary file (tmp_path, the exporters' scratch)
# goes under .test-tmp in the checkout, emptied at each run: CI's /tmp filled up (OSError 28 at every tmp_path on
# 2026-12-06).
TEST_TMP := $(CURDIR)/.test-tmp
PYTEST := TMPDIR=$(TEST_TMP) $(BIN)/pytest -q -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder \
	--durations 15 --basetemp $(TEST_TMP)/pytest

test: setup
	rm -rf $(TEST_TMP) && mkdir $(TEST_TMP)
	$(PYTEST)

test-fast: setup
	rm -rf $(TEST_TMP) && mkdir $(TEST_TMP)
	$(PYTEST) -m "not slow"

# The Android app's platform-free Kotlin compiled with Debian's kotlinc and its JUnit tests run on the JVM, against the
# sidecars and reference vectors the current mcq writes (tests/test_android_jvm.py; needs `apt-get install kotlin junit4
# libandroid-json-java`). apps/android/jvm-test.sh alone runs them against the bundled reference.json.
test-android: setup
	mkdir -p $(TEST_TMP)
	MCQ_REQUIRE_KOTLIN=1 TMPDIR=$(TEST_TMP) $(BIN)/pytest -q --basetemp $(TEST_TMP)/android tests/test_android_jvm.py

clean:
	rm -rf $(VENV) runs $(TEST_TMP)
