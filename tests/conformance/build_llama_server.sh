#!/usr/bin/env bash
# Build (or reuse) llama.cpp's C++ `llama-server` from the llama.cpp that the llama-cpp-python sdist
# on PyPI vendors (the same source build_server.sh compiles; no other download). About 25 minutes on
# 2 quiet cores (measured here: 38 min at load average ~20), once per machine; the binary is cached
# OUTSIDE the checkout (ARENA_CI_LLAMA_SERVER, default /var/cache/arena-ci/llama-server) and later
# runs only check it is there.
set -euo pipefail
DEST="${ARENA_CI_LLAMA_SERVER:-/var/cache/arena-ci/llama-server}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
if [ -x "$DEST/bin/llama-server" ]; then
  "$DEST/bin/llama-server" --version 2>&1 | head -n 2
  exit 0
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
python -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK"
tar -xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
echo "build_llama_server.sh: compiling llama-server (~25 min on 2 cores)" >&2
cmake -S "$SRC" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON
nice -n 10 cmake --build "$WORK/build" --target llama-server -j 2
mkdir -p "$DEST/bin"
cp "$WORK/build/bin/llama-server" "$DEST/bin/llama-server"
"$DEST/bin/llama-server" --version 2>&1 | head -n 2
