#!/usr/bin/env bash
# Installs what libs2ft needs to build and test on Debian 12 (bookworm).
# The CUDA backend is built too when nvcc is found (CUDA Toolkit installed
# separately, e.g. under /usr/local/cuda). clang-14 and libclang-rt-14-dev
# (its sanitizer and libFuzzer runtimes) build the fuzzers (tests/fuzz).
# PyTorch is Debian's python3-torch (1.13.1, CPU), never PyPI's; the interop
# tests add pinned transformers and peft in a venv over it (scripts/python-env.sh); the Python
# package's tests run there with Debian's pytest (python3-pytest); the fine-tuning
# example's frontier plot uses Debian's python3-matplotlib.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake pkg-config binutils \
  libopenblas-dev nlohmann-json3-dev \
  libgtest-dev googletest \
  bindgen libclang-dev swig default-jdk-headless junit4 golang-go \
  clang clang-14 libclang-rt-14-dev \
  python3-torch python3-venv python3-pip python3-numpy python3-pytest python3-yaml python3-requests \
  python3-psutil python3-typing-extensions python3-matplotlib >/dev/null
# Rust: use a toolchain already on PATH (e.g. rustup's), else Debian's.
if ! command -v cargo >/dev/null 2>&1; then
  $SUDO apt-get install -y -qq --no-install-recommends cargo rustc >/dev/null
fi
echo "setup: packages installed"
