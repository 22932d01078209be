// Turns a libs2ft status into an exception carrying the library's message.
#pragma once

#include <stdexcept>
#include <string>

#include <s2ft/s2ft.h>

namespace ft {

inline void s2ft_check(s2ft_status st, const char *what) {
  if (st != S2FT_OK)
    throw std::runtime_error(std::string(what) + ": " + s2ft_status_string(st) + ": " + s2ft_last_error());
}

// A compact row-major [rows, cols] float32 CPU tensor descriptor.
inline s2ft_tensor f32_tensor(const float *data, int64_t rows, int64_t cols) {
  s2ft_tensor t;
  s2ft_check(s2ft_tensor_cpu_f32_2d(&t, const_cast<float *>(data), rows, cols), "s2ft_tensor_cpu_f32_2d");
  return t;
}

}  // namespace ft
