// The CUDA context functions in a build without the CUDA backend
// (S2FT_WITH_CUDA=OFF): no device is ever reported, so no CUDA context can
// exist and the remaining functions are unreachable through the C API.
#include "common/error.hpp"
#include "cuda_context.hpp"

namespace s2ft {
namespace cuda {
namespace {
[[noreturn]] void unavailable() {
  fail(S2FT_ERR_UNSUPPORTED, "libs2ft was built without CUDA (S2FT_WITH_CUDA=OFF); only CPU contexts are available");
}
}  // namespace

void ContextDeleter::operator()(Context *) const {}
int device_count(std::string *why) {
  if (why != nullptr) *why = "libs2ft was built without CUDA (S2FT_WITH_CUDA=OFF)";
  return -1;
}
ContextPtr create_context(int32_t) { unavailable(); }
int32_t device_id(const Context &) { unavailable(); }
void set_stream(Context &, void *) { unavailable(); }
void *stream(const Context &) { unavailable(); }
void set_workspace(Context &, void *, size_t) { unavailable(); }
size_t workspace_high_water(const Context &) { unavailable(); }
void synchronize(Context &) { unavailable(); }
void require_device_pointer(int32_t, const void *, const char *) { unavailable(); }

}  // namespace cuda
}  // namespace s2ft
