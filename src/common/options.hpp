// Checks shared by the versioned option structs (s2ft_*_options): their
// ..._init() functions accept only a version this library knows, and the
// functions that take them refuse structs that were never initialised.
#pragma once

#include <cstdint>
#include <string>

#include "common/error.hpp"

namespace s2ft {

// For ..._init(opts, version).
inline void check_init_version(uint32_t version, uint32_t known) {
  if (version != known)
    fail_arg("unknown options version " + std::to_string(version) + " (this library knows " + std::to_string(known) +
             ")");
}

// For a function given `opts`: its version field must be the known one.
inline void check_options_version(uint32_t version, uint32_t known, const char *init_function) {
  if (version != known)
    fail_arg("opts->version is " + std::to_string(version) + "; initialise options with " + init_function + "()");
}

}  // namespace s2ft
