// Co-permutation: the block computes the same function after permuting all
// seven weights together (checked against a float64 reference block), the
// lines land where the selection's permutation says, INVERSE restores the
// bytes exactly, strided views work, and every error path reports clearly.
#include <cstring>
#include <numeric>
#include <set>

#include "support/llama_block_ref.hpp"
#include "support/test_util.hpp"

using namespace s2ft_test;

namespace {

// One block's weights in a host dtype, plus the two norms (float64).
struct Block {
  s2ft_model_shape shape{};
  HostMatrix q, k, v, o, gate, up, down;
  std::vector<double> attn_norm, ffn_norm;

  Block(const s2ft_model_shape &s, int32_t dtype, uint64_t seed) : shape(s) {
    const int64_t nq = int64_t{s.n_heads} * s.head_dim, nkv = int64_t{s.n_kv_heads} * s.head_dim;
    q = HostMatrix(dtype, nq, s.d_model);
    k = HostMatrix(dtype, nkv, s.d_model);
    v = HostMatrix(dtype, nkv, s.d_model);
    o = HostMatrix(dtype, s.d_model, nq);
    gate = HostMatrix(dtype, s.d_ff, s.d_model);
    up = HostMatrix(dtype, s.d_ff, s.d_model);
    down = HostMatrix(dtype, s.d_model, s.d_ff);
    Random rng(seed);
    // Scales that keep attention away from uniform, so head order matters.
    for (HostMatrix *m : {&q, &k}) m->fill_random(rng, 0.9);
    for (HostMatrix *m : {&v, &o, &gate, &up, &down}) m->fill_random(rng, 0.5);
    for (int64_t i = 0; i < s.d_model; ++i) {
      attn_norm.push_back(rng.uniform(0.5, 1.5));
      ffn_norm.push_back(rng.uniform(0.5, 1.5));
    }
  }
  s2ft_layer_weights all() { return s2ft_layer_weights{&q.t, &k.t, &v.t, &o.t, &gate.t, &up.t, &down.t}; }
  s2ft_ref::BlockWeights ref() const {
    return s2ft_ref::BlockWeights{attn_norm, q.to_double(), k.to_double(), v.to_double(), o.to_double(),
                                  ffn_norm, gate.to_double(), up.to_double(), down.to_double()};
  }
  s2ft_ref::BlockShape ref_shape() const {
    s2ft_ref::BlockShape b;
    b.d_model = shape.d_model;
    b.n_heads = shape.n_heads;
    b.n_kv_heads = shape.n_kv_heads;
    b.head_dim = shape.head_dim;
    b.d_ff = shape.d_ff;
    return b;
  }
  std::vector<double> forward(const std::vector<double> &x, int64_t T) const {
    return s2ft_ref::llama_block(ref_shape(), ref(), x, T);
  }
};

std::vector<double> random_input(int64_t T, int64_t d, uint64_t seed) {
  Random rng(seed);
  std::vector<double> x(static_cast<size_t>(T * d));
  for (double &e : x) e = rng.uniform();
  return x;
}

std::vector<int64_t> permutation(const s2ft_selection *sel, int32_t layer, int32_t kind) {
  int64_t n = 0;
  EXPECT_EQ(s2ft_selection_permutation(sel, layer, kind, nullptr, 0, &n), S2FT_OK);
  std::vector<int64_t> p(static_cast<size_t>(n));
  EXPECT_EQ(s2ft_selection_permutation(sel, layer, kind, p.data(), n, &n), S2FT_OK);
  return p;
}

bool is_identity(const std::vector<int64_t> &p) {
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] != static_cast<int64_t>(i)) return false;
  return true;
}

// After FORWARD, line p*width + j of `after` must equal line order[p]*width + j of `before`.
void expect_lines_moved(const HostMatrix &before, const HostMatrix &after, bool by_columns,
                        const std::vector<int64_t> &order, int64_t width, const char *what) {
  for (size_t p = 0; p < order.size(); ++p)
    for (int64_t j = 0; j < width; ++j) {
      const int64_t to = static_cast<int64_t>(p) * width + j, from = order[p] * width + j;
      const int64_t n = by_columns ? before.rows : before.cols;
      for (int64_t i = 0; i < n; ++i) {
        const float a = by_columns ? after.get(i, to) : after.get(to, i);
        const float b = by_columns ? before.get(i, from) : before.get(from, i);
        ASSERT_EQ(a, b) << what << " line " << to;
      }
    }
}

struct Case {
  const char *name;
  int32_t n_heads, n_kv, head_dim, d_model, d_ff;
  int32_t granularity;
  int64_t count[S2FT_NUM_TARGETS];  // 0 = target not trained
};

class PermuteInvariance : public ::testing::TestWithParam<Case> {};

TEST_P(PermuteInvariance, BlockOutputUnchangedAndLinesWherePromised) {
  const Case c = GetParam();
  Context cx;
  const s2ft_model_shape shape{2, c.d_model, c.n_heads, c.n_kv, c.head_dim, c.d_ff};
  s2ft_select_options opts = count_options(c.count, c.granularity);
  const int64_t T = 7;
  const int32_t layer = 1;

  for (uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    opts.seed = seed;
    Selection s;
    ASSERT_S2FT_OK(s2ft_select(cx.ctx, &shape, &opts, nullptr, &s.sel));
    Block base(shape, S2FT_F32, 100 + seed);
    Block perm = base;
    const std::vector<double> x = random_input(T, shape.d_model, 7 + seed);
    const std::vector<double> want = base.forward(x, T);

    s2ft_layer_weights w = perm.all();
    ASSERT_S2FT_OK(s2ft_permute(cx.ctx, s.sel, layer, &w, S2FT_PERMUTE_FORWARD));
    const std::vector<double> got = perm.forward(x, T);
    EXPECT_LE(rel_error(got, want), 1e-5);

    const std::vector<int64_t> ph = permutation(s.sel, layer, S2FT_PERM_HEADS);
    const std::vector<int64_t> pk = permutation(s.sel, layer, S2FT_PERM_KV_HEADS);
    const std::vector<int64_t> pc = permutation(s.sel, layer, S2FT_PERM_CHANNELS);
    expect_lines_moved(base.q, perm.q, false, ph, shape.head_dim, "q");
    expect_lines_moved(base.k, perm.k, false, pk, shape.head_dim, "k");
    expect_lines_moved(base.v, perm.v, false, pk, shape.head_dim, "v");
    expect_lines_moved(base.o, perm.o, true, ph, shape.head_dim, "o");
    expect_lines_moved(base.gate, perm.gate, false, pc, 1, "gate");
    expect_lines_moved(base.up, perm.up, false, pc, 1, "up");
    expect_lines_moved(base.down, perm.down, true, pc, 1, "down");

    // The permuted trained lines hold exactly the base lines the selection names.
    const HostMatrix *mats[S2FT_NUM_TARGETS] = {&perm.o, &perm.v, &perm.down, &perm.up};
    const HostMatrix *bases[S2FT_NUM_TARGETS] = {&base.o, &base.v, &base.down, &base.up};
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
      int64_t n = 0;
      ASSERT_S2FT_OK(s2ft_selection_indices(s.sel, layer, t, S2FT_INDEX_LINES | S2FT_INDEX_PERMUTED, nullptr, 0, &n));
      std::vector<int64_t> pl(static_cast<size_t>(n)), bl(static_cast<size_t>(n));
      ASSERT_S2FT_OK(s2ft_selection_indices(s.sel, layer, t, S2FT_INDEX_LINES | S2FT_INDEX_PERMUTED, pl.data(), n, &n));
      ASSERT_S2FT_OK(s2ft_selection_indices(s.sel, layer, t, S2FT_INDEX_LINES | S2FT_INDEX_BASE, bl.data(), n, &n));
      const bool cols = t == S2FT_TARGET_O || t == S2FT_TARGET_DOWN;
      const int64_t other = cols ? mats[t]->rows : mats[t]->cols;
      std::multiset<std::vector<float>> got_lines, want_lines;
      for (int64_t i = 0; i < n; ++i) {
        std::vector<float> a, b;
        for (int64_t e = 0; e < other; ++e) {
          a.push_back(cols ? mats[t]->get(e, pl[i]) : mats[t]->get(pl[i], e));
          b.push_back(cols ? bases[t]->get(e, bl[i]) : bases[t]->get(bl[i], e));
        }
        got_lines.insert(a);
        want_lines.insert(b);
      }
      EXPECT_EQ(got_lines, want_lines) << "target " << t;
    }

    // INVERSE restores every byte.
    ASSERT_S2FT_OK(s2ft_permute(cx.ctx, s.sel, layer, &w, S2FT_PERMUTE_INVERSE));
    for (auto pr : {std::make_pair(&perm.q, &base.q), std::make_pair(&perm.k, &base.k), std::make_pair(&perm.v, &base.v),
                    std::make_pair(&perm.o, &base.o), std::make_pair(&perm.gate, &base.gate),
                    std::make_pair(&perm.up, &base.up), std::make_pair(&perm.down, &base.down)})
      EXPECT_EQ(0, std::memcmp(pr.first->bytes.data(), pr.second->bytes.data(), pr.second->bytes.size()));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, PermuteInvariance,
    ::testing::Values(Case{"mha_by_group", 4, 4, 4, 12, 10, S2FT_HEADS_BY_GROUP, {2, 0, 3, 0}},
                      Case{"mha_single_v_up", 4, 4, 6, 9, 11, S2FT_HEADS_SINGLE, {1, 2, 4, 5}},
                      Case{"gqa3_by_group_v_up", 6, 2, 4, 10, 13, S2FT_HEADS_BY_GROUP, {1, 1, 4, 5}},
                      Case{"gqa2_single_v_up", 8, 4, 6, 11, 9, S2FT_HEADS_SINGLE, {3, 2, 5, 2}},
                      Case{"gqa4_single_k_all", 8, 2, 2, 7, 6, S2FT_HEADS_SINGLE, {3, 0, 6, 1}},
                      Case{"gqa2_by_group_k1", 8, 4, 4, 8, 5, S2FT_HEADS_BY_GROUP, {1, 1, 1, 1}}),
    [](const ::testing::TestParamInfo<Case> &i) { return std::string(i.param.name); });

// A negative control: the reference notices a half-done permutation, so the
// invariance above is not vacuous.
TEST(Permute, PermutingOnlySomeCoupledWeightsChangesTheOutput) {
  Context cx;
  const s2ft_model_shape shape{1, 10, 6, 2, 4, 9};
  const int64_t o_units[] = {1}, down_units[] = {3, 5};
  const int64_t *units[S2FT_NUM_TARGETS] = {o_units, nullptr, down_units, nullptr};
  const int64_t n[S2FT_NUM_TARGETS] = {1, 0, 2, 0};
  Selection s;
  ASSERT_S2FT_OK(s2ft_selection_create(&shape, S2FT_HEADS_BY_GROUP, units, n, &s.sel));
  Block base(shape, S2FT_F32, 5);
  const std::vector<double> x = random_input(6, shape.d_model, 9);
  const std::vector<double> want = base.forward(x, 6);

  Block only_o = base;
  s2ft_layer_weights w{};
  w.o = &only_o.o.t;
  ASSERT_S2FT_OK(s2ft_permute(cx.ctx, s.sel, 0, &w, S2FT_PERMUTE_FORWARD));
  EXPECT_GT(rel_error(only_o.forward(x, 6), want), 1e-3);

  Block only_down = base;
  w = s2ft_layer_weights{};
  w.down = &only_down.down.t;
  ASSERT_S2FT_OK(s2ft_permute(cx.ctx, s.sel, 0, &w, S2FT_PERMUTE_FORWARD));
  EXPECT_GT(rel_error(only_down.forward(x, 6), want), 1e-3);

  Block all = base;
  w = all.all();
  ASSERT_S2FT_OK(s2ft_permute(cx.ctx, s.sel, 0, &w, S2FT_PERMUTE_FORWARD));
  EXPECT_LE(rel_error(all.forward(x, 6), want), 1e-5);
}

class PermuteDtype : public ::testing::TestWithParam<int32_t> {};

TEST_P(PermuteDtype, InverseRestoresBitExactly) {
  const int32_t dtype = GetParam();
  Context cx;
  const s2ft_model_shape shape{3, 16, 8, 4, 6, 21};
  s2ft_select_options opts;
  ASSERT_S2FT_OK(s2ft_select_options_init(&opts, S2FT_SELECT_OPTIONS_VERSION));
  opts.targets = 0xF;
  opts.head_granularity = S2FT_HEADS_SINGLE;
  opts.ratio[S2FT_TARGET_O] = 0.4;
  opts.ratio[S2FT_TARGET_V] = 0.5;
  opts.ratio[S2FT_TARGET_DOWN] = 0.3;
  opts.ratio[S2FT_TARGET_UP] = 0.2;
  opts.seed = 42;
  Selection s;
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &shape, &opts, nullptr, &s.sel));
  for (int32_t layer = 0; layer < shape.n_layers; ++layer) {
    Block b(shape, dtype, 77 + static_cast<uint64_t>(layer));
    const Block orig = b;
    s2ft_layer_weights w = b.all();
    ASSERT_S2FT_OK(s2ft_permute(cx.ctx, s.sel, layer, &w, S2FT_PERMUTE_FORWARD));
    // Something moved (the selection is not the identity here).
    const bool heads_moved = !is_identity(permutation(s.sel, layer, S2FT_PERM_HEADS));
    const bool chans_moved = !is_identity(permutation(s.sel, layer, S2FT_PERM_CHANNELS));
    EXPECT_TRUE(heads_moved || chans_moved);
    if (heads_moved) {
      EXPECT_NE(0, std::memcmp(b.o.bytes.data(), orig.o.bytes.data(), orig.o.bytes.size()));
    }
    if (chans_moved) {
      EXPECT_NE(0, std::memcmp(b.down.bytes.data(), orig.down.bytes.data(), orig.down.bytes.size()));
    }
    ASSERT_S2FT_OK(s2ft_permute(cx.ctx, s.sel, layer, &w, S2FT_PERMUTE_INVERSE));
    const HostMatrix *got[] = {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down};
    const HostMatrix *want[] = {&orig.q, &orig.k, &orig.v, &orig.o, &orig.gate, &orig.up, &orig.down};
    for (int i = 0; i < 7; ++i)
      EXPECT_EQ(0, std::memcmp(got[i]->bytes.data(), want[i]->bytes.data(), want[i]->bytes.size()))
          << "weight " << i << " layer " << layer;
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, PermuteDtype, ::testing::Values(S2FT_F32, S2FT_BF16, S2FT_F16),
                         [](const ::testing::TestParamInfo<int32_t> &i) { return std::string(dtype_label(i.param)); });

// A [rows, cols] view inside a larger buffer, with row stride rs and column
// stride cs (elements); everything outside the view holds a sentinel.
struct StridedMatrix {
  int32_t dtype;
  int64_t rows, cols, rs, cs;
  std::vector<uint8_t> bytes;
  s2ft_tensor t{};
  StridedMatrix(const HostMatrix &src, int64_t row_stride, int64_t col_stride)
      : dtype(src.dtype), rows(src.rows), cols(src.cols), rs(row_stride), cs(col_stride) {
    const size_t e = src.elem();
    bytes.assign(static_cast<size_t>((rows - 1) * rs + (cols - 1) * cs + 1 + 5) * e, 0xA5);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j)
        std::memcpy(&bytes[static_cast<size_t>(i * rs + j * cs) * e], &src.bytes[static_cast<size_t>(i * cols + j) * e], e);
    t = src.t;
    t.data = bytes.data();
    t.byte_offset = 0;
    t.strides[0] = rs;
    t.strides[1] = cs;
  }
  // The view's elements compared with a compact matrix, and every byte outside the view untouched.
  void expect_equals(const HostMatrix &m, const char *what) const {
    const size_t e = m.elem();
    std::vector<char> inside(bytes.size(), 0);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        const size_t off = static_cast<size_t>(i * rs + j * cs) * e;
        ASSERT_EQ(0, std::memcmp(&bytes[off], &m.bytes[static_cast<size_t>(i * cols + j) * e], e)) << what;
        for (size_t b = 0; b < e; ++b) inside[off + b] = 1;
      }
    for (size_t b = 0; b < bytes.size(); ++b) {
      if (!inside[b]) {
        ASSERT_EQ(bytes[b], 0xA5) << what << ": byte " << b << " outside the view changed";
      }
    }
  }
};

TEST(Permute, StridedViewsMatchCompactResult) {
  Context cx;
  const s2ft_model_shape shape{1, 10, 6, 2, 4, 9};
  const int64_t o_units[] = {1, 4}, v_units[] = {0}, down_units[] = {2, 8, 5}, up_units[] = {5, 0};
  const int64_t *units[S2FT_NUM_TARGETS] = {o_units, v_units, down_units, up_units};
  const int64_t n[S2FT_NUM_TARGETS] = {2, 1, 3, 2};
  Selection s;
  ASSERT_S2FT_OK(s2ft_selection_create(&shape, S2FT_HEADS_SINGLE, units, n, &s.sel));
  for (int32_t dtype : {S2FT_F32, S2FT_BF16}) {
    for (int variant = 0; variant < 2; ++variant) {
      SCOPED_TRACE(std::string(dtype_label(dtype)) + (variant ? " column-strided" : " padded rows"));
      Block compact(shape, dtype, 31);
      const Block orig = compact;
      HostMatrix *ms[] = {&compact.q, &compact.k, &compact.v, &compact.o, &compact.gate, &compact.up, &compact.down};
      std::vector<StridedMatrix> views;
      for (HostMatrix *m : ms)
        views.emplace_back(*m, variant ? 2 * m->cols + 3 : m->cols + 3, variant ? 2 : 1);
      s2ft_layer_weights ws{&views[0].t, &views[1].t, &views[2].t, &views[3].t, &views[4].t, &views[5].t, &views[6].t};
      s2ft_layer_weights wc = compact.all();
      ASSERT_S2FT_OK(s2ft_permute(cx.ctx, s.sel, 0, &wc, S2FT_PERMUTE_FORWARD));
      ASSERT_S2FT_OK(s2ft_permute(cx.ctx, s.sel, 0, &ws, S2FT_PERMUTE_FORWARD));
      for (size_t i = 0; i < views.size(); ++i) views[i].expect_equals(*ms[i], "forward");
      ASSERT_S2FT_OK(s2ft_permute(cx.ctx, s.sel, 0, &ws, S2FT_PERMUTE_INVERSE));
      const HostMatrix *om[] = {&orig.q, &orig.k, &orig.v, &orig.o, &orig.gate, &orig.up, &orig.down};
      for (size_t i = 0; i < views.size(); ++i) views[i].expect_equals(*om[i], "inverse");
    }
  }
}

TEST(Permute, NoWeightsIsANoOp) {
  Context cx;
  const s2ft_model_shape shape{1, 4, 2, 1, 2, 3};
  const int64_t d[] = {2};
  const int64_t *units[S2FT_NUM_TARGETS] = {nullptr, nullptr, d, nullptr};
  const int64_t n[S2FT_NUM_TARGETS] = {0, 0, 1, 0};
  Selection s;
  ASSERT_S2FT_OK(s2ft_selection_create(&shape, S2FT_HEADS_BY_GROUP, units, n, &s.sel));
  const s2ft_layer_weights none{};
  EXPECT_EQ(s2ft_permute(cx.ctx, s.sel, 0, &none, S2FT_PERMUTE_FORWARD), S2FT_OK);
}

// ---- error paths -------------------------------------------------------------------

class PermuteErrors : public ::testing::Test {
 protected:
  Context cx;
  s2ft_model_shape shape{2, 8, 4, 2, 2, 5};
  Selection s;
  Block b{shape, S2FT_F32, 3};
  Block orig{shape, S2FT_F32, 3};
  void SetUp() override {
    const int64_t o_units[] = {1, 0}, d[] = {4, 0, 1, 3};
    const int64_t *units[S2FT_NUM_TARGETS] = {o_units, nullptr, d, nullptr};
    const int64_t n[S2FT_NUM_TARGETS] = {1, 0, 2, 0};
    ASSERT_S2FT_OK(s2ft_selection_create(&shape, S2FT_HEADS_BY_GROUP, units, n, &s.sel));
  }
  // A failed call must leave every weight untouched.
  void expect_untouched() {
    const HostMatrix *got[] = {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down};
    const HostMatrix *want[] = {&orig.q, &orig.k, &orig.v, &orig.o, &orig.gate, &orig.up, &orig.down};
    for (int i = 0; i < 7; ++i)
      EXPECT_EQ(0, std::memcmp(got[i]->bytes.data(), want[i]->bytes.data(), want[i]->bytes.size())) << i;
  }
};

TEST_F(PermuteErrors, NullContext) {
  s2ft_layer_weights w = b.all();
  EXPECT_S2FT_ERROR(s2ft_permute(nullptr, s.sel, 0, &w, S2FT_PERMUTE_FORWARD), S2FT_ERR_INVALID_ARGUMENT, "ctx");
}

TEST_F(PermuteErrors, NullSelection) {
  s2ft_layer_weights w = b.all();
  EXPECT_S2FT_ERROR(s2ft_permute(cx.ctx, nullptr, 0, &w, S2FT_PERMUTE_FORWARD), S2FT_ERR_INVALID_ARGUMENT, "sel");
}

TEST_F(PermuteErrors, NullWeights) {
  EXPECT_S2FT_ERROR(s2ft_permute(cx.ctx, s.sel, 0, nullptr, S2FT_PERMUTE_FORWARD), S2FT_ERR_INVALID_ARGUMENT,
                    "weights");
}

TEST_F(PermuteErrors, LayerOutOfRange) {
  s2ft_layer_weights w = b.all();
  EXPECT_S2FT_ERROR(s2ft_permute(cx.ctx, s.sel, 2, &w, S2FT_PERMUTE_FORWARD), S2FT_ERR_INVALID_ARGUMENT,
                    "layer 2 is out of range");
  EXPECT_S2FT_ERROR(s2ft_permute(cx.ctx, s.sel, -1, &w, S2FT_PERMUTE_FORWARD), S2FT_ERR_INVALID_ARGUMENT, "layer -1");
  expect_untouched();
}

TEST_F(PermuteErrors, BadDirection) {
  s2ft_layer_weights w = b.all();
  EXPECT_S2FT_ERROR(s2ft_permute(cx.ctx, s.sel, 0, &w, 2), S2FT_ERR_INVALID_ARGUMENT, "direction");
  expect_untouched();
}

TEST_F(PermuteErrors, EachWeightsShapeIsChecked) {
  const char *names[] = {"weights->q", "weights->k", "weights->v", "weights->o",
                         "weights->gate", "weights->up", "weights->down"};
  for (int i = 0; i < 7; ++i) {
    s2ft_layer_weights w = b.all();
    s2ft_tensor *ts[] = {w.q, w.k, w.v, w.o, w.gate, w.up, w.down};
    s2ft_tensor bad = *ts[i];
    bad.shape[0] -= 1;  // one line short (still a valid view of the same memory)
    s2ft_tensor **slot[] = {&w.q, &w.k, &w.v, &w.o, &w.gate, &w.up, &w.down};
    *slot[i] = &bad;
    EXPECT_S2FT_ERROR(s2ft_permute(cx.ctx, s.sel, 0, &w, S2FT_PERMUTE_FORWARD), S2FT_ERR_SHAPE, names[i]);
  }
  // Transposed o: [n_heads*hd, d_model] instead of [d_model, n_heads*hd].
  HostMatrix o_t(S2FT_F32, int64_t{shape.n_heads} * shape.head_dim, shape.d_model + 1);
  s2ft_layer_weights w = b.all();
  w.o = &o_t.t;
  EXPECT_S2FT_ERROR(s2ft_permute(cx.ctx, s.sel, 0, &w, S2FT_PERMUTE_FORWARD), S2FT_ERR_SHAPE, "weights->o");
  expect_untouched();
}

TEST_F(PermuteErrors, WrongRank) {
  s2ft_layer_weights w = b.all();
  s2ft_tensor t = b.q.t;
  t.ndim = 1;
  w.q = &t;
  EXPECT_S2FT_ERROR(s2ft_permute(cx.ctx, s.sel, 0, &w, S2FT_PERMUTE_FORWARD), S2FT_ERR_SHAPE, "weights->q");
  expect_untouched();
}

TEST_F(PermuteErrors, UnsupportedDtype) {
  s2ft_layer_weights w = b.all();
  s2ft_tensor t = b.k.t;
  t.dtype = s2ft_dtype{0, 32, 1};  // int32
  w.k = &t;
  EXPECT_S2FT_ERROR(s2ft_permute(cx.ctx, s.sel, 0, &w, S2FT_PERMUTE_FORWARD), S2FT_ERR_DTYPE, "weights->k");
  expect_untouched();
}

TEST_F(PermuteErrors, WrongDevice) {
  s2ft_layer_weights w = b.all();
  s2ft_tensor t = b.v.t;
  t.device = s2ft_device{S2FT_DEVICE_CUDA, 0};
  w.v = &t;
  EXPECT_S2FT_ERROR(s2ft_permute(cx.ctx, s.sel, 0, &w, S2FT_PERMUTE_FORWARD), S2FT_ERR_DEVICE, "weights->v");
  expect_untouched();
}

TEST_F(PermuteErrors, NullDataInNonEmptyWeight) {
  s2ft_layer_weights w = b.all();
  s2ft_tensor t = b.gate.t;
  t.data = nullptr;
  w.gate = &t;
  EXPECT_S2FT_ERROR(s2ft_permute(cx.ctx, s.sel, 0, &w, S2FT_PERMUTE_FORWARD), S2FT_ERR_INVALID_ARGUMENT,
                    "weights->gate");
  expect_untouched();
}

TEST_F(PermuteErrors, NegativeStride) {
  s2ft_layer_weights w = b.all();
  s2ft_tensor t = b.up.t;
  t.strides[0] = -t.strides[0];
  w.up = &t;
  EXPECT_S2FT_ERROR(s2ft_permute(cx.ctx, s.sel, 0, &w, S2FT_PERMUTE_FORWARD), S2FT_ERR_INVALID_ARGUMENT,
                    "weights->up");
  expect_untouched();
}

}  // namespace
