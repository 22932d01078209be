// Stand-in backend modules for the loader's tests, one library per variant
// (STANDIN_VARIANT): a module of another ABI version, one built for another
// library version, one that is another backend, and a library that exports
// no entry point at all. None can compute anything: the loader must refuse
// every one of them before using its table.
#include <cstdint>

#include "backend/backend.hpp"
#include "common/version.hpp"

#define STANDIN_ABI 1
#define STANDIN_VERSION 2
#define STANDIN_NAME 3
#define STANDIN_NO_ENTRY 4

namespace {
const char *standin_error() { return "stand-in module"; }
}  // namespace

#if STANDIN_VARIANT == STANDIN_NO_ENTRY
extern "C" __attribute__((visibility("default"))) int s2ft_standin_not_a_module(void) { return 42; }
#else
extern "C" __attribute__((visibility("default"))) const s2ft::backend::ModuleInfo *s2ft_backend_module_v1(void) {
  static s2ft::backend::Ops ops;
  static s2ft::backend::ModuleInfo info;
  ops.name = STANDIN_VARIANT == STANDIN_NAME ? "rocm" : "cuda";
  ops.last_error = &standin_error;
  // 999: an ABI version no build has (tests/CMakeLists.txt expects the number in the message).
  info.abi_version = STANDIN_VARIANT == STANDIN_ABI ? 999u : s2ft::backend::kAbiVersion;
  info.library_version = STANDIN_VARIANT == STANDIN_VERSION ? "9.9.9" : S2FT_VERSION_TEXT;
  info.ops = &ops;
  return &info;
}
#endif
