// The thread-local last error. Compiled into every library of the project
// (libs2ft.so and each backend module), so each keeps its own message; a
// backend hands its message to the core through Ops::last_error.
#include "common/error.hpp"

#include <string>

namespace s2ft {
namespace {
// One message per thread, so concurrent callers never see each other's errors.
thread_local std::string last_error_text;
}  // namespace

s2ft_status set_error(s2ft_status status, const std::string &message) {
  try {
    last_error_text = message;
  } catch (...) {
    // Out of memory while recording the message: keep the old one rather than fail.
  }
  return status;
}

const char *last_error_message() { return last_error_text.c_str(); }

void clear_last_error() { last_error_text.clear(); }

void fail(s2ft_status status, const std::string &message) { throw Error(status, message); }

}  // namespace s2ft
