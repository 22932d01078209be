# Sourced by the other scripts: puts a CUDA Toolkit's nvcc on PATH when one is
# installed in the standard place but not on PATH, so the CUDA backend builds.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
