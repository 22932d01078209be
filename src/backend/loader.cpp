// The backend registry and the module loader (see loader.hpp).
#include "backend/loader.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "common/error.hpp"

#if !defined(S2FT_CUDA_MODULE_FILE) || !defined(S2FT_CUDA_MODULE_BUILT)
#error "the build defines S2FT_CUDA_MODULE_FILE (the CUDA module's file name) and S2FT_CUDA_MODULE_BUILT"
#endif

namespace s2ft {
namespace backend {

void check(const Ops &ops, s2ft_status status) {
  if (status != S2FT_OK) fail(status, ops.last_error != nullptr ? ops.last_error() : "backend error");
}

namespace {

std::string dl_error() {
  const char *e = dlerror();
  return e != nullptr ? e : "unknown dynamic loader error";
}

// Checks that a loaded library is a module of this build for `search.backend`.
LoadResult accept(void *handle, const std::string &path, const ModuleSearch &search) {
  LoadResult r;
  auto refuse = [&](const std::string &why) {
    dlclose(handle);
    r.error = why;
    return r;
  };
  dlerror();
  void *sym = dlsym(handle, kModuleEntry);
  if (sym == nullptr)
    return refuse("'" + path + "' is not a libs2ft backend module (it has no " + kModuleEntry + " entry point)");
  ModuleEntryFn entry;
  static_assert(sizeof entry == sizeof sym, "function and data pointers differ in size");
  std::memcpy(&entry, &sym, sizeof entry);
  const ModuleInfo *info = entry();
  if (info == nullptr) return refuse("'" + path + "' returned no module information");
  if (info->abi_version != kAbiVersion)
    return refuse("'" + path + "' is a libs2ft backend module of ABI version " + std::to_string(info->abi_version) +
                  ", but this libs2ft " + s2ft_version_string() + " needs ABI version " + std::to_string(kAbiVersion));
  const std::string built_for = info->library_version != nullptr ? info->library_version : "?";
  if (built_for != s2ft_version_string())
    return refuse("'" + path + "' was built with libs2ft " + built_for + ", but this is libs2ft " +
                  s2ft_version_string() + " (a module must come from the same build)");
  const Ops *ops = info->ops;
  if (ops == nullptr || ops->abi_version != kAbiVersion || ops->name == nullptr || ops->last_error == nullptr)
    return refuse("'" + path + "' returned an incomplete operation table");
  if (search.backend != ops->name)
    return refuse("'" + path + "' is the '" + ops->name + "' backend, not the '" + search.backend + "' backend");
  r.ops = ops;
  r.path = path;
  return r;
}

}  // namespace

LoadResult load_module(const ModuleSearch &search) {
  const int flags = RTLD_NOW | RTLD_LOCAL;
  if (!search.override_path.empty()) {
    void *h = dlopen(search.override_path.c_str(), flags);
    if (h == nullptr) {
      LoadResult r;
      r.error = search.override_variable + " names '" + search.override_path + "', which could not be loaded (" +
                dl_error() + ")";
      return r;
    }
    return accept(h, search.override_path, search);
  }
  std::string looked;
  if (!search.library_dir.empty()) {
    const bool slash = search.library_dir.back() == '/';
    const std::string path = search.library_dir + (slash ? "" : "/") + search.file_name;
    if (void *h = dlopen(path.c_str(), flags)) return accept(h, path, search);
    looked = "next to libs2ft (" + dl_error() + ")";
  }
  if (void *h = dlopen(search.file_name.c_str(), flags)) return accept(h, search.file_name, search);
  if (!looked.empty()) looked += " and ";
  looked += "on the dynamic loader's path (" + dl_error() + ")";
  LoadResult r;
  r.error = "the " + search.label + " backend module " + search.file_name + " could not be loaded: looked " + looked +
            "; install libs2ft with its " + search.label + " module, or set " + search.override_variable +
            " to the module's path" + search.hint;
  return r;
}

ModuleSearch cuda_module_search() {
  ModuleSearch s;
  s.backend = "cuda";
  s.label = "CUDA";
  if (const char *p = std::getenv(s.override_variable.c_str())) s.override_path = p;
  s.file_name = S2FT_CUDA_MODULE_FILE;
  if (!S2FT_CUDA_MODULE_BUILT) s.hint = " (this libs2ft was built with S2FT_WITH_CUDA=OFF, without the module)";
  // The folder of the library this code is in (libs2ft.so, or the program
  // when the core is linked statically).
  Dl_info info{};
  if (dladdr(reinterpret_cast<void *>(&cuda_module_search), &info) != 0 && info.dli_fname != nullptr) {
    std::string f = info.dli_fname;
    const size_t slash = f.rfind('/');
    if (slash != std::string::npos) s.library_dir = slash == 0 ? "/" : f.substr(0, slash);
  }
  return s;
}

const Ops *find_ops(int32_t device_type, std::string *why) {
  if (device_type == S2FT_DEVICE_CPU) return &cpu_ops();
  if (device_type != S2FT_DEVICE_CUDA) {
    if (why != nullptr) *why = "device type " + std::to_string(device_type) + " has no backend";
    return nullptr;
  }
  // The first attempt decides for the life of the process: a module is
  // never unloaded, and a failure is not retried (nothing changes the search).
  static std::once_flag once;
  static LoadResult cuda;
  std::call_once(once, [] {
    try {
      cuda = load_module(cuda_module_search());
    } catch (...) {
      cuda.ops = nullptr;
      cuda.error = "out of memory while loading the CUDA backend module";
    }
  });
  if (cuda.ops == nullptr && why != nullptr) *why = cuda.error;
  return cuda.ops;
}

const Ops &ops_for(int32_t device_type) {
  if (device_type != S2FT_DEVICE_CPU && device_type != S2FT_DEVICE_CUDA)
    fail_arg("device type " + std::to_string(device_type) + " is not S2FT_DEVICE_CPU or S2FT_DEVICE_CUDA");
  std::string why;
  const Ops *ops = find_ops(device_type, &why);
  if (ops == nullptr) fail(S2FT_ERR_UNSUPPORTED, why);
  return *ops;
}

}  // namespace backend
}  // namespace s2ft
