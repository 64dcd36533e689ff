#!/usr/bin/env bash
# Build (or reuse) a wheel of llama-cpp-python, a real OpenAI-compatible model server, for the
# conformance suite (tests/conformance/). PyPI has no binary wheel of it for Linux x86_64, so it is
# compiled from the sdist: about 25 minutes on 2 quiet cores, once per machine (measured here: 27 min
# at load average 10-20). The wheel is cached OUTSIDE the checkout (ARENA_CI_WHEELS, default /var/cache/arena-ci/wheels) so later runs only install it
# (a few seconds). The server is installed with its own dependencies (fastapi, sse-starlette, ...)
# into a virtual environment of its own (ARENA_SERVER_VENV, default /var/cache/arena-ci/llama-venv),
# so it cannot change the versions the arena runs with; the tests start it from there.
#
# Usage: tests/conformance/build_server.sh          # build if no cached wheel, then install
#        LLAMA_CPP_PYTHON_VERSION=0.3.36 tests/conformance/build_server.sh
set -euo pipefail
WHEELS="${ARENA_CI_WHEELS:-/var/cache/arena-ci/wheels}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
mkdir -p "$WHEELS"
shopt -s nullglob
cached=("$WHEELS"/llama_cpp_python-"$VERSION"-*.whl)
if [ ${#cached[@]} -eq 0 ]; then
  echo "build_server.sh: no cached wheel of llama-cpp-python $VERSION in $WHEELS; compiling (~25 min on 2 cores)" >&2
  # GGML_NATIVE=OFF: the wheel must run on any x86_64 CI machine, not only the one that built it.
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" nice -n 10 \
    python -m pip wheel --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -w "$WHEELS"
  cached=("$WHEELS"/llama_cpp_python-"$VERSION"-*.whl)
fi
VENV="${ARENA_SERVER_VENV:-/var/cache/arena-ci/llama-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# The wheel plus the extras its server needs (uvicorn, fastapi, sse-starlette, ...), from PyPI.
"$VENV/bin/python" -m pip install -q "${cached[0]}[server]"
"$VENV/bin/python" -c "import llama_cpp, llama_cpp.server; print('llama-cpp-python', llama_cpp.__version__, 'ready in $VENV')"
