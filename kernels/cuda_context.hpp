// The CUDA context as the module's operation table (cuda_backend.cu) sees
// it: a plain C++ interface with no CUDA types. The definition
// (stream, cuBLAS and cuSPARSE handles, workspace) is in cuda_runtime.cuh.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace s2ft {
namespace cuda {

struct Context;
struct ContextDeleter {
  void operator()(Context *ctx) const;
};
using ContextPtr = std::unique_ptr<Context, ContextDeleter>;

// Number of CUDA devices, or -1 with `why` set when the runtime or driver
// cannot be used (no driver, driver too old, no device nodes).
int device_count(std::string *why);

// Binds a context to `device_id`: creates the cuBLAS and cuSPARSE handles.
// Work goes to the legacy default stream until set_stream(). Throws
// S2FT_ERR_UNSUPPORTED (no usable device), S2FT_ERR_INVALID_ARGUMENT
// (device id out of range) or S2FT_ERR_BACKEND.
ContextPtr create_context(int32_t device_id);

int32_t device_id(const Context &ctx);

// The stream the context queues its work on (a cudaStream_t; NULL is the
// legacy default stream). Changing it makes the new stream wait (on the
// device, not the host) for the work already queued on the old one.
void set_stream(Context &ctx, void *stream);
void *stream(const Context &ctx);

// Caller-owned device memory for per-call scratch (NULL, 0: the context
// allocates its own, stream-ordered). A call that needs more than a
// caller's workspace fails with S2FT_ERR_OUT_OF_MEMORY and says how much.
void set_workspace(Context &ctx, void *ptr, size_t bytes);
// The most scratch any call on this context has needed so far, in bytes.
size_t workspace_high_water(const Context &ctx);

// Blocks the host until the context's stream has finished its work.
void synchronize(Context &ctx);

// Throws S2FT_ERR_DEVICE unless `ptr` is device (or managed) memory of CUDA
// device `device_id`; `name` names the tensor in the message.
void require_device_pointer(int32_t device_id, const void *ptr, const char *name);

}  // namespace cuda
}  // namespace s2ft
