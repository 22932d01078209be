// Which backend serves a device type, and loading backend modules: the CPU
// backend is part of libs2ft.so; the CUDA backend is libs2ft_cuda.so,
// opened with dlopen on first use (a CUDA context is created or CUDA
// devices are counted) and never closed. A CPU-only process never loads it,
// and libs2ft.so runs where no CUDA library is installed.
#pragma once

#include <cstdint>
#include <string>

#include "backend/backend.hpp"

namespace s2ft {
namespace backend {

// The CPU backend's table (src/backend/cpu/).
const Ops &cpu_ops();

// The table of the backend for `device_type` (S2FT_DEVICE_*), loading its
// module the first time; NULL with *why set when it cannot be had (the
// first attempt's answer is kept for the life of the process).
const Ops *find_ops(int32_t device_type, std::string *why);

// The same, throwing S2FT_ERR_UNSUPPORTED with the reason (or
// S2FT_ERR_INVALID_ARGUMENT for an unknown device type).
const Ops &ops_for(int32_t device_type);

// Where to look for a module: `override_path` alone when not empty (the
// S2FT_CUDA_BACKEND variable), else `file_name` in `library_dir` (the
// folder libs2ft.so was loaded from) and then `file_name` on the dynamic
// loader's path.
struct ModuleSearch {
  std::string backend;        // the backend's name in its table, "cuda"
  std::string label;          // its name in messages, "CUDA"
  std::string override_path;  // S2FT_CUDA_BACKEND
  std::string override_variable = "S2FT_CUDA_BACKEND";
  std::string library_dir;
  std::string file_name;      // libs2ft_cuda.so.<ABI major>
  std::string hint;           // added to a "could not be loaded" message
};

// The search for the CUDA module in this process.
ModuleSearch cuda_module_search();

// One attempt to load a module (no caching; for the loader and its tests).
// ops is NULL and error says what was looked for where when it fails: not
// found, not loadable (a dependency such as the CUDA runtime missing), not
// a backend module, another ABI or library version, another backend.
struct LoadResult {
  const Ops *ops = nullptr;
  std::string path;   // the file that was loaded
  std::string error;
};
LoadResult load_module(const ModuleSearch &search);

}  // namespace backend
}  // namespace s2ft
