// How a backend fills its operation table: each operation is a plain C++
// function that throws s2ft::Error on failure, wrapped by Entry<&function>
// into a table entry that returns the status instead and leaves the message
// in the backend's own last error (common/error.cpp is compiled into every
// backend library, so each has its own). No exception leaves a backend.
#pragma once

#include "common/error.hpp"
#include "s2ft/s2ft.h"

namespace s2ft {
namespace backend {

template <auto F>
struct Entry;

template <typename... A, void (*F)(A...)>
struct Entry<F> {
  static s2ft_status call(A... a) noexcept {
    return guard(nullptr, [&] { F(a...); });
  }
};

// The table's last_error: this library's last-error message.
inline const char *backend_last_error() { return last_error_message(); }

}  // namespace backend
}  // namespace s2ft
