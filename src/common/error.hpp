// Internal error handling: code inside the library throws s2ft::Error; every
// C entry point runs its body through s2ft::guard(), which turns exceptions
// into a status and this thread's last-error message. No exception crosses
// the C ABI.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include "s2ft/s2ft.h"

namespace s2ft {

class Error : public std::runtime_error {
 public:
  Error(s2ft_status status, const std::string &message)
      : std::runtime_error(message), status_(status) {}
  s2ft_status status() const { return status_; }

 private:
  s2ft_status status_;
};

// Records `message` as this thread's last error and returns `status`.
s2ft_status set_error(s2ft_status status, const std::string &message);
// This thread's last error message (never NULL), and clearing it.
const char *last_error_message();
void clear_last_error();

// Throws Error(status, message) built from the arguments.
[[noreturn]] void fail(s2ft_status status, const std::string &message);

// Shorthands for the common failure kinds.
[[noreturn]] inline void fail_arg(const std::string &m) { fail(S2FT_ERR_INVALID_ARGUMENT, m); }
[[noreturn]] inline void fail_shape(const std::string &m) { fail(S2FT_ERR_SHAPE, m); }

// Throws S2FT_ERR_INVALID_ARGUMENT "<name> is NULL" when p is null.
template <typename T>
inline void require_not_null(const T *p, const char *name) {
  if (p == nullptr) fail_arg(std::string(name) + " is NULL");
}

// Runs body() and maps any exception onto a status and a message that
// starts with "<function>: " (nothing when function is NULL).
template <typename F>
s2ft_status guard(const char *function, F &&body) noexcept {
  const auto prefix = [function]() { return function != nullptr ? std::string(function) + ": " : std::string(); };
  try {
    std::forward<F>(body)();
    return S2FT_OK;
  } catch (const Error &e) {
    return set_error(e.status(), prefix() + e.what());
  } catch (const std::bad_alloc &) {
    return set_error(S2FT_ERR_OUT_OF_MEMORY, prefix() + "out of memory");
  } catch (const std::exception &e) {
    return set_error(S2FT_ERR_INTERNAL, prefix() + "internal error: " + e.what());
  } catch (...) {
    return set_error(S2FT_ERR_INTERNAL, prefix() + "internal error");
  }
}

}  // namespace s2ft
