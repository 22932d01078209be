// libFuzzer target: the selection reader must accept or refuse any text,
// refusing with S2FT_ERR_FORMAT (no crash, no out-of-bounds read, no other
// exception), and a selection it accepts must be consistent through the
// public accessors: every (layer, target) gives as many units as lines per
// unit allow, in range, ascending; the permuted lines of a target are a
// contiguous range exactly when s2ft_selection_range says so; and each
// permutation is one.
//
// The text goes through s2ft::selection_from_text, which is
// s2ft_selection_load after the file is read (see fuzz_adapter_load.cpp for
// why not through a file).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "s2ft/s2ft.h"
#include "select/selection.hpp"

namespace {

[[noreturn]] void finding(const char *what) {
  std::fprintf(stderr, "fuzz_selection_load: %s (last error: %s)\n", what, s2ft_last_error());
  std::abort();
}

void require_ok(s2ft_status status, const char *what) {
  if (status != S2FT_OK) finding(what);
}

struct SelectionFree {
  void operator()(s2ft_selection *s) const { s2ft_selection_destroy(s); }
};

std::vector<int64_t> indices(const s2ft_selection *sel, int32_t layer, int32_t target, uint32_t flags) {
  int64_t n = 0;
  require_ok(s2ft_selection_indices(sel, layer, target, flags, nullptr, 0, &n), "s2ft_selection_indices (count) failed");
  std::vector<int64_t> out(static_cast<size_t>(n));
  require_ok(s2ft_selection_indices(sel, layer, target, flags, out.data(), n, &n), "s2ft_selection_indices failed");
  return out;
}

// Ascending, distinct and inside [0, limit).
void require_index_set(const std::vector<int64_t> &v, int64_t limit, const char *what) {
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] < 0 || v[i] >= limit || (i > 0 && v[i] <= v[i - 1])) finding(what);
}

void check_permutation(const s2ft_selection *sel, int32_t layer, int32_t kind, int64_t size) {
  int64_t n = 0;
  require_ok(s2ft_selection_permutation(sel, layer, kind, nullptr, 0, &n), "s2ft_selection_permutation (count) failed");
  if (n != size) finding("a permutation has the wrong length");
  std::vector<int64_t> p(static_cast<size_t>(n));
  require_ok(s2ft_selection_permutation(sel, layer, kind, p.data(), n, &n), "s2ft_selection_permutation failed");
  std::vector<char> seen(p.size(), 0);
  for (int64_t v : p) {
    if (v < 0 || v >= size || seen[static_cast<size_t>(v)]) finding("a permutation is not one");
    seen[static_cast<size_t>(v)] = 1;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::unique_ptr<s2ft_selection, SelectionFree> owned;
  try {
    owned.reset(s2ft::selection_from_text(std::string(reinterpret_cast<const char *>(data), size), "fuzz.json").release());
  } catch (const s2ft::Error &e) {
    // Anything else (another status, another exception type) is a finding:
    // the C API would report it as an internal error, not a bad file.
    if (e.status() != S2FT_ERR_FORMAT) finding(e.what());
    return 0;
  }
  const s2ft_selection *sel = owned.get();
  s2ft_model_shape s;
  require_ok(s2ft_selection_shape(sel, &s), "s2ft_selection_shape failed");
  const int64_t q_lines = int64_t{s.n_heads} * s.head_dim, kv_lines = int64_t{s.n_kv_heads} * s.head_dim;
  const int64_t line_limit[S2FT_NUM_TARGETS] = {q_lines, kv_lines, s.d_ff, s.d_ff};  // O, V, DOWN, UP
  const int64_t unit_limit[S2FT_NUM_TARGETS] = {s.n_heads, s.n_kv_heads, s.d_ff, s.d_ff};
  const int64_t lines_per_unit[S2FT_NUM_TARGETS] = {s.head_dim, s.head_dim, 1, 1};
  uint32_t targets = 0;
  require_ok(s2ft_selection_targets(sel, &targets), "s2ft_selection_targets failed");
  uint32_t seen_targets = 0;
  for (int32_t l = 0; l < s.n_layers; ++l) {
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
      const std::vector<int64_t> units = indices(sel, l, t, S2FT_INDEX_UNITS | S2FT_INDEX_BASE);
      const std::vector<int64_t> lines = indices(sel, l, t, S2FT_INDEX_LINES | S2FT_INDEX_BASE);
      const std::vector<int64_t> moved = indices(sel, l, t, S2FT_INDEX_LINES | S2FT_INDEX_PERMUTED);
      require_index_set(units, unit_limit[t], "units out of range or not ascending");
      require_index_set(lines, line_limit[t], "lines out of range or not ascending");
      require_index_set(moved, line_limit[t], "permuted lines out of range or not ascending");
      if (static_cast<int64_t>(lines.size()) != static_cast<int64_t>(units.size()) * lines_per_unit[t] ||
          moved.size() != lines.size())
        finding("unit, line and permuted-line counts disagree");
      if (!units.empty()) seen_targets |= S2FT_TARGET_BIT(t);
      int64_t begin = 0, count = 0;
      const s2ft_status range = s2ft_selection_range(sel, l, t, &begin, &count);
      const bool contiguous = moved.empty() || moved.back() - moved.front() + 1 == static_cast<int64_t>(moved.size());
      if (range == S2FT_OK) {
        if (!contiguous || count != static_cast<int64_t>(moved.size()) || (count > 0 && begin != moved.front()))
          finding("s2ft_selection_range disagrees with the permuted lines");
      } else if (range != S2FT_ERR_STATE || contiguous) {
        finding("s2ft_selection_range refuses contiguous permuted lines");
      }
    }
    check_permutation(sel, l, S2FT_PERM_HEADS, s.n_heads);
    check_permutation(sel, l, S2FT_PERM_KV_HEADS, s.n_kv_heads);
    check_permutation(sel, l, S2FT_PERM_CHANNELS, s.d_ff);
  }
  if (seen_targets != targets) finding("s2ft_selection_targets differs from the stored units");
  return 0;
}
