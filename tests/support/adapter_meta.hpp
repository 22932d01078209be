// An adapter file's metadata as a map, read through the public API; failures are
// reported as test failures (and give an empty map).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <string>

#include "s2ft/s2ft.h"

namespace s2ft_test {

inline std::map<std::string, std::string> adapter_file_meta(const std::string &path) {
  std::map<std::string, std::string> out;
  s2ft_adapter *a = nullptr;
  EXPECT_EQ(s2ft_adapter_load(path.c_str(), &a), S2FT_OK) << s2ft_last_error();
  if (a == nullptr) return out;
  int64_t n = 0;
  EXPECT_EQ(s2ft_adapter_meta_count(a, &n), S2FT_OK);
  for (int64_t i = 0; i < n; ++i) {
    const char *k = nullptr, *v = nullptr;
    EXPECT_EQ(s2ft_adapter_meta_at(a, i, &k, &v), S2FT_OK);
    if (k != nullptr && v != nullptr) out[k] = v;
  }
  s2ft_adapter_destroy(a);
  return out;
}

}  // namespace s2ft_test
