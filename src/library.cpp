// The library-wide C API: status strings, the last error, the version, and
// the count of live handles.
#include "common/error.hpp"
#include "common/live_handles.hpp"
#include "common/version.hpp"

namespace s2ft {

std::atomic<int64_t> &live_handle_count() {
  static std::atomic<int64_t> count{0};
  return count;
}

const char *handle_type_name(HandleKind kind) {
  switch (kind) {
    case HandleKind::context: return "s2ft_context";
    case HandleKind::statistics: return "s2ft_statistics";
    case HandleKind::selection: return "s2ft_selection";
    case HandleKind::optimizer: return "s2ft_optimizer";
    case HandleKind::adapter: return "s2ft_adapter";
    case HandleKind::model: return "s2ft_model";
    case HandleKind::sparse_delta: return "s2ft_sparse_delta";
    case HandleKind::checkpoint: return "s2ft_checkpoint";
    case HandleKind::sparse_set: return "s2ft_sparse_set";
    case HandleKind::spiel: return "s2ft_spiel";
  }
  return "handle";
}

}  // namespace s2ft

extern "C" {

S2FT_API const char *s2ft_status_string(s2ft_status status) {
  switch (status) {
    case S2FT_OK: return "ok";
    case S2FT_ERR_INVALID_ARGUMENT: return "invalid argument";
    case S2FT_ERR_SHAPE: return "shape mismatch";
    case S2FT_ERR_DTYPE: return "unsupported or mismatched dtype";
    case S2FT_ERR_DEVICE: return "wrong or mixed device";
    case S2FT_ERR_OUT_OF_MEMORY: return "out of memory";
    case S2FT_ERR_IO: return "I/O error";
    case S2FT_ERR_FORMAT: return "malformed file";
    case S2FT_ERR_UNSUPPORTED: return "unsupported";
    case S2FT_ERR_STATE: return "invalid state";
    case S2FT_ERR_BACKEND: return "backend error";
    case S2FT_ERR_INTERNAL: return "internal error";
    default: return "unknown status";
  }
}

S2FT_API const char *s2ft_last_error(void) { return s2ft::last_error_message(); }

S2FT_API void s2ft_clear_error(void) { s2ft::clear_last_error(); }

S2FT_API int64_t s2ft_live_handles(void) { return s2ft::live_handle_count().load(std::memory_order_relaxed); }

S2FT_API uint32_t s2ft_version(void) { return S2FT_VERSION_NUMBER; }

S2FT_API const char *s2ft_version_string(void) { return S2FT_VERSION_TEXT; }

}  // extern "C"
