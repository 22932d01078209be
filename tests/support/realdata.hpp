// Where the real test data lives: $S2FT_TEST_DATA, else the folder the build
// was configured with (../shared/data beside the checkout).
#pragma once

#include <cstdlib>
#include <string>

namespace s2ft_test {

inline std::string data_dir() {
  const char *env = std::getenv("S2FT_TEST_DATA");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(S2FT_TEST_DATA_DIR);
}

inline std::string model_dir() { return data_dir() + "/stories260K-hf"; }

}  // namespace s2ft_test
