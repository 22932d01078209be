// Internal: what the core needs to know about CUDA before the CUDA backend
// exists: whether a runtime and devices are present. Compiled by nvcc.
#pragma once

#include <string>

// Returns false (and a reason) when the CUDA runtime cannot be queried.
bool s2ft_cuda_probe_device_count(int *count, std::string *why);
