// CUDA device discovery for context creation. This translation unit is the
// CUDA backend's first piece: it proves the toolchain and the runtime link.
#include <cuda_runtime.h>

#include "cuda_probe.h"

bool s2ft_cuda_probe_device_count(int *count, std::string *why) {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    *why = cudaGetErrorString(err);
    *count = 0;
    return false;
  }
  *count = n;
  return true;
}
