// libFuzzer target: s2ft_selection_load on arbitrary file contents must
// return a status (never crash, never read out of bounds), and a selection
// it accepts must answer its accessors for every layer and target.
#include <cstdint>
#include <cstdio>
#include <string>
#include <unistd.h>
#include <vector>

#include "s2ft/s2ft.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const std::string path = "/tmp/s2ft-fuzz-selection-" + std::to_string(getpid()) + ".json";
  FILE *f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  s2ft_selection *sel = nullptr;
  if (s2ft_selection_load(path.c_str(), &sel) == S2FT_OK) {
    s2ft_model_shape shape;
    s2ft_selection_shape(sel, &shape);
    for (int32_t l = 0; l < shape.n_layers; ++l)
      for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
        int64_t n = 0;
        if (s2ft_selection_indices(sel, l, t, S2FT_INDEX_LINES | S2FT_INDEX_PERMUTED, nullptr, 0, &n) != S2FT_OK) __builtin_trap();
        std::vector<int64_t> idx(static_cast<size_t>(n));
        if (s2ft_selection_indices(sel, l, t, S2FT_INDEX_LINES | S2FT_INDEX_PERMUTED, idx.data(), n, &n) != S2FT_OK) __builtin_trap();
      }
    s2ft_selection_destroy(sel);
  }
  return 0;
}
