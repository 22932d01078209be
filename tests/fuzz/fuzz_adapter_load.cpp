// libFuzzer target: s2ft_adapter_load on arbitrary file contents must
// return a status (never crash, never read out of bounds), and an adapter it
// accepts must answer its accessors and save again.
#include <cstdint>
#include <cstdio>
#include <string>
#include <unistd.h>
#include <vector>

#include "s2ft/s2ft.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const std::string path = "/tmp/s2ft-fuzz-adapter-" + std::to_string(getpid()) + ".safetensors";
  FILE *f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  s2ft_adapter *a = nullptr;
  if (s2ft_adapter_load(path.c_str(), &a) == S2FT_OK) {
    s2ft_model_shape shape;
    if (s2ft_adapter_info(a, &shape, nullptr, nullptr) != S2FT_OK) __builtin_trap();
    for (int32_t l = 0; l < shape.n_layers; ++l)
      for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
        int64_t n = 0;
        if (s2ft_adapter_lines(a, l, t, nullptr, nullptr, 0, &n) != S2FT_OK) __builtin_trap();
        std::vector<int64_t> lines(static_cast<size_t>(n));
        std::vector<uint64_t> fps(static_cast<size_t>(n));
        if (s2ft_adapter_lines(a, l, t, lines.data(), fps.data(), n, &n) != S2FT_OK) __builtin_trap();
      }
    s2ft_adapter_destroy(a);
  }
  return 0;
}
