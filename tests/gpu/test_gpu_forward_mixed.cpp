// s2ft_adapter_forward_mixed on CUDA against the CPU backend on the same
// host data: decode-only batches (the batched GEMV kernel), prefill-only
// batches (grouped GEMM or cuSPARSE), mixed batches, 1 to 9 adapters,
// segments without an adapter and empty ones, adapters without an entry,
// k = 1 to all lines, every dtype, column and row targets, base-order and
// permuted weights, strided x and y, each delta path forced (DENSE, SPARSE)
// and AUTO; shapes large enough for several GEMV tiles and input chunks;
// the CSR cache across permutations and adapter changes; error paths.
#include <cuda_runtime.h>

#include <cmath>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "gpu/gpu_support.hpp"
#include "support/target_geometry.hpp"

using s2ft_gpu::DeviceMatrix;
using s2ft_gpu::GpuContext;
using namespace s2ft_test;

namespace {

// Small: 45 outputs (two GEMV tiles), GQA. Big: inputs and k beyond one
// GEMV chunk (2048) for every target that has them.
const s2ft_model_shape kSmall{2, 45, 4, 2, 5, 37};
const s2ft_model_shape kBig{1, 2100, 2, 1, 8, 2304};

// Sets (layer, target) of `a` to `lines` with a random delta.
void set_entry(s2ft_adapter *a, const s2ft_model_shape &s, int32_t layer, int32_t t, const std::vector<int64_t> &lines,
               Random &rng) {
  int64_t r, c;
  weight_shape(s, t, &r, &c);
  const int64_t k = static_cast<int64_t>(lines.size());
  HostMatrix d = by_columns(t) ? HostMatrix(S2FT_F32, r, k) : HostMatrix(S2FT_F32, k, c);
  d.fill_random(rng, 0.5);
  ASSERT_S2FT_OK(s2ft_adapter_set(a, layer, t, lines.data(), k, &d.t, nullptr));
}

// Adapter i of a batch: kind i % 4 picks 1 line, about a third of the lines,
// all lines (given in reverse), or no entry for this target (an entry for
// another one instead, so the adapter adds nothing here).
std::unique_ptr<AdapterOwner> make_adapter(const s2ft_model_shape &s, int32_t layer, int32_t t, int i, Random &rng) {
  auto ad = std::make_unique<AdapterOwner>();
  const double default_scale = i % 3 == 0 ? 0.5 : (i % 3 == 1 ? 1.0 : -2.0);
  EXPECT_EQ(s2ft_adapter_create(&s, "gpu", default_scale, &ad->a), S2FT_OK) << s2ft_last_error();
  const int64_t n = line_count(s, t);
  std::vector<int64_t> lines;
  switch (i % 4) {
    case 0:
      lines = {rng.below(n)};
      break;
    case 1:
      for (int64_t l = 0; l < n; ++l)
        if (rng.below(3) == 0) lines.push_back(l);
      if (lines.empty()) lines.push_back(n / 2);
      break;
    case 2:
      for (int64_t l = n - 1; l >= 0; --l) lines.push_back(l);
      break;
    default: {
      const int32_t other = t == S2FT_TARGET_O ? S2FT_TARGET_UP : S2FT_TARGET_O;
      set_entry(ad->a, s, layer, other, {0}, rng);
      return ad;
    }
  }
  set_entry(ad->a, s, layer, t, lines, rng);
  return ad;
}

// A selection whose permutation moves the lines of every target.
void make_selection(const s2ft_model_shape &s, Selection &sel) {
  std::vector<int64_t> o(static_cast<size_t>(s.n_layers), s.n_kv_heads - 1), v(static_cast<size_t>(s.n_layers),
                                                                               s.n_kv_heads - 1);
  std::vector<int64_t> down, up;
  for (int32_t l = 0; l < s.n_layers; ++l) {
    for (int64_t c : {int64_t{2}, int64_t{5}, int64_t{s.d_ff - 1}, int64_t{s.d_ff / 2}}) down.push_back(c);
    for (int64_t c : {int64_t{s.d_ff - 2}, int64_t{3}, int64_t{s.d_ff / 3}}) up.push_back(c);
  }
  const int64_t *units[4] = {o.data(), v.data(), down.data(), up.data()};
  const int64_t n_units[4] = {1, 1, 4, 3};
  ASSERT_S2FT_OK(s2ft_selection_create(&s, S2FT_HEADS_BY_GROUP, units, n_units, &sel.sel));
}

enum class Batch { kDecode, kPrefill, kMixed };

// One mixed-adapter problem on host data.
struct Problem {
  s2ft_model_shape shape{};
  int32_t layer = 1, target = 0, dtype = S2FT_F32;
  const s2ft_selection *perm = nullptr;
  HostMatrix w, x;
  std::vector<std::unique_ptr<AdapterOwner>> owners;
  std::vector<const s2ft_adapter *> adapters;
  std::vector<double> scales;  // empty: NULL (default scales)
  std::vector<int64_t> offsets{0};
  std::vector<int32_t> seg;
  int64_t out = 0, in = 0;

  int64_t T() const { return offsets.back(); }
  void add_segment(int64_t rows, int32_t adapter) {
    offsets.push_back(offsets.back() + rows);
    seg.push_back(adapter);
  }
};

void make_problem(Problem &p, const s2ft_model_shape &s, int32_t layer, int32_t target, int32_t dtype, int n_adapters,
                  Batch batch, uint64_t seed) {
  Random rng(seed);
  p.shape = s;
  p.layer = layer;
  p.target = target;
  p.dtype = dtype;
  weight_shape(s, target, &p.out, &p.in);
  for (int i = 0; i < n_adapters; ++i) {
    p.owners.push_back(make_adapter(s, layer, target, i, rng));
    p.adapters.push_back(p.owners.back()->a);
  }
  if (seed % 2 == 0) {  // explicit scales, one of them NaN (= the default)
    for (int i = 0; i < n_adapters; ++i) p.scales.push_back(i == 1 ? NAN : rng.uniform(-2.0, 2.0));
  }
  auto adapter = [&] { return static_cast<int32_t>(rng.below(n_adapters + 1)) - 1; };  // -1 .. n-1
  switch (batch) {
    case Batch::kDecode:  // one token per request
      for (int r = 0; r < 23; ++r) p.add_segment(1, adapter());
      break;
    case Batch::kPrefill:  // long segments only (plus an empty one)
      p.add_segment(9 + rng.below(25), 0);
      p.add_segment(0, adapter());
      for (int r = 0; r < 3; ++r) p.add_segment(9 + rng.below(25), adapter());
      p.add_segment(12, n_adapters - 1);
      break;
    case Batch::kMixed: {
      const int64_t sizes[] = {0, 1, 1, 1, 2, 5, 8, 9, 13, 30};
      p.add_segment(1, 0);
      p.add_segment(17, 0);
      for (int r = 0; r < 14; ++r) p.add_segment(sizes[rng.below(10)], adapter());
      p.add_segment(3, n_adapters - 1);
      break;
    }
  }
  p.w = HostMatrix(dtype, p.out, p.in);
  p.w.fill_random(rng);
  p.x = HostMatrix(dtype, p.T(), p.in);
  p.x.fill_random(rng);
}

HostMatrix cpu_forward(const Problem &p) {
  Context cx;
  HostMatrix y(p.dtype, p.T(), p.out);
  y.poison();
  EXPECT_EQ(s2ft_adapter_forward_mixed(cx.ctx, p.layer, p.target, &p.x.t, &p.w.t, p.perm, p.adapters.data(),
                                       p.scales.empty() ? nullptr : p.scales.data(),
                                       static_cast<int64_t>(p.adapters.size()), p.offsets.data(), p.seg.data(),
                                       static_cast<int64_t>(p.seg.size()), &y.t),
            S2FT_OK)
      << s2ft_last_error();
  return y;
}

// The CUDA result, x and y with row strides x_ld and y_ld (-1: compact).
HostMatrix gpu_forward(GpuContext &g, const Problem &p, int64_t x_ld = -1, int64_t y_ld = -1) {
  DeviceMatrix dx(p.x, x_ld), dw(p.w), dy(p.dtype, p.T(), p.out, y_ld);
  EXPECT_EQ(s2ft_adapter_forward_mixed(g.ctx, p.layer, p.target, &dx.t, &dw.t, p.perm, p.adapters.data(),
                                       p.scales.empty() ? nullptr : p.scales.data(),
                                       static_cast<int64_t>(p.adapters.size()), p.offsets.data(), p.seg.data(),
                                       static_cast<int64_t>(p.seg.size()), &dy.t),
            S2FT_OK)
      << s2ft_last_error();
  g.sync();
  return dy.download();
}

const char *path_name(int32_t p) {
  return p == S2FT_DELTA_PATH_AUTO ? "auto" : p == S2FT_DELTA_PATH_DENSE ? "dense" : "sparse";
}
const char *batch_name(Batch b) { return b == Batch::kDecode ? "decode" : b == Batch::kPrefill ? "prefill" : "mixed"; }

// ---- parity on the small shape: every target, dtype, order and path ----------------

using Case = std::tuple<int32_t, int32_t, bool, int32_t>;  // target, dtype, permuted, path
std::string case_name(const ::testing::TestParamInfo<Case> &i) {
  static const char *const names[] = {"O", "V", "DOWN", "UP"};
  return std::string(names[std::get<0>(i.param)]) + "_" + dtype_label(std::get<1>(i.param)) +
         (std::get<2>(i.param) ? "_permuted_" : "_base_") + path_name(std::get<3>(i.param));
}

class GpuForwardMixed : public ::testing::TestWithParam<Case> {};

TEST_P(GpuForwardMixed, MatchesCpu) {
  S2FT_REQUIRE_GPU();
  const int32_t target = std::get<0>(GetParam()), dt = std::get<1>(GetParam()), path = std::get<3>(GetParam());
  const bool permuted = std::get<2>(GetParam());
  Selection sel;
  if (permuted) make_selection(kSmall, sel);
  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  ASSERT_S2FT_OK(s2ft_context_set_delta_path(g.ctx, path));
  struct Run {
    Batch batch;
    int n_adapters;
  };
  const Run runs[] = {{Batch::kDecode, 9}, {Batch::kPrefill, 3}, {Batch::kMixed, 9}, {Batch::kMixed, 1},
                      {Batch::kPrefill, 1}, {Batch::kDecode, 2}};
  uint64_t seed = 1000 + static_cast<uint64_t>(target) * 100 + static_cast<uint64_t>(dt) * 10;
  for (const Run &r : runs) {
    Problem p;
    make_problem(p, kSmall, 1, target, dt, r.n_adapters, r.batch, ++seed);
    p.perm = sel.sel;
    const HostMatrix want = cpu_forward(p);
    const HostMatrix got = gpu_forward(g, p);
    EXPECT_LE(s2ft_gpu::max_rel_diff(got, want), tolerance(dt))
        << batch_name(r.batch) << " batch, " << r.n_adapters << " adapters";
    // Strided x and y (padding poisoned with NaN) give the same.
    const HostMatrix strided = gpu_forward(g, p, p.in + 3, p.out + 5);
    EXPECT_LE(s2ft_gpu::max_rel_diff(strided, want), tolerance(dt))
        << batch_name(r.batch) << " batch, strided, " << r.n_adapters << " adapters";
    // A second call (AUTO now knows the shape; caches are warm) gives the same bytes.
    const HostMatrix again = gpu_forward(g, p);
    EXPECT_TRUE(s2ft_gpu::bit_equal(again, got)) << batch_name(r.batch) << " batch, repeated";
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> v;
  for (int32_t t = 0; t < 4; ++t)
    for (int32_t dt : {S2FT_F32, S2FT_F16, S2FT_BF16})
      for (bool perm : {false, true})
        for (int32_t path : {S2FT_DELTA_PATH_AUTO, S2FT_DELTA_PATH_DENSE, S2FT_DELTA_PATH_SPARSE})
          v.emplace_back(t, dt, perm, path);
  return v;
}
INSTANTIATE_TEST_SUITE_P(All, GpuForwardMixed, ::testing::ValuesIn(all_cases()), case_name);

// ---- the big shape: several GEMV input chunks (in, k > 2048) ------------------------

using BigCase = std::tuple<int32_t, int32_t>;  // target, dtype
std::string big_name(const ::testing::TestParamInfo<BigCase> &i) {
  static const char *const names[] = {"O", "V", "DOWN", "UP"};
  return std::string(names[std::get<0>(i.param)]) + "_" + dtype_label(std::get<1>(i.param));
}

class GpuForwardMixedBig : public ::testing::TestWithParam<BigCase> {};

TEST_P(GpuForwardMixedBig, MatchesCpuOnEveryPath) {
  S2FT_REQUIRE_GPU();
  const int32_t target = std::get<0>(GetParam()), dt = std::get<1>(GetParam());
  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  Problem p;
  make_problem(p, kBig, 0, target, dt, 4, Batch::kMixed, 77 + static_cast<uint64_t>(target));
  const HostMatrix want = cpu_forward(p);
  for (int32_t path : {S2FT_DELTA_PATH_AUTO, S2FT_DELTA_PATH_DENSE, S2FT_DELTA_PATH_SPARSE}) {
    ASSERT_S2FT_OK(s2ft_context_set_delta_path(g.ctx, path));
    EXPECT_LE(s2ft_gpu::max_rel_diff(gpu_forward(g, p), want), tolerance(dt)) << path_name(path);
  }
}

INSTANTIATE_TEST_SUITE_P(All, GpuForwardMixedBig,
                         ::testing::Combine(::testing::Values(S2FT_TARGET_O, S2FT_TARGET_V, S2FT_TARGET_DOWN,
                                                              S2FT_TARGET_UP),
                                            ::testing::Values(S2FT_F32, S2FT_BF16)),
                         big_name);

// ---- caches: one adapter under several permutations, and changed adapters -----------

TEST(GpuForwardMixedCache, PermutationsAndChangedAdaptersOnTheSparsePath) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  Selection sel;
  make_selection(kSmall, sel);
  for (int32_t path : {S2FT_DELTA_PATH_SPARSE, S2FT_DELTA_PATH_AUTO}) {
    ASSERT_S2FT_OK(s2ft_context_set_delta_path(g.ctx, path));
    for (int32_t target : {S2FT_TARGET_DOWN, S2FT_TARGET_V}) {
      Problem p;
      make_problem(p, kSmall, 1, target, S2FT_F32, 3, Batch::kPrefill, 500 + static_cast<uint64_t>(target));
      // Base order, permuted, base order again: each must use its own lines.
      const std::vector<const s2ft_selection *> perms = {nullptr, sel.sel, nullptr};
      for (const s2ft_selection *perm : perms) {
        p.perm = perm;
        EXPECT_LE(s2ft_gpu::max_rel_diff(gpu_forward(g, p), cpu_forward(p)), tolerance(S2FT_F32))
            << path_name(path) << (perm ? " permuted" : " base order");
      }
      // Change every adapter's entry: the device copies and CSRs must follow.
      Random rng(900);
      for (auto &o : p.owners) {
        std::vector<int64_t> lines = {1, 4};
        set_entry(o->a, kSmall, 1, target, lines, rng);
      }
      p.perm = nullptr;
      EXPECT_LE(s2ft_gpu::max_rel_diff(gpu_forward(g, p), cpu_forward(p)), tolerance(S2FT_F32))
          << path_name(path) << " after changing the adapters";
      // Replace the adapters by new ones (their addresses may be reused).
      p.owners.clear();
      p.adapters.clear();
      for (int i = 0; i < 3; ++i) {
        p.owners.push_back(make_adapter(kSmall, 1, target, i, rng));
        p.adapters.push_back(p.owners.back()->a);
      }
      EXPECT_LE(s2ft_gpu::max_rel_diff(gpu_forward(g, p), cpu_forward(p)), tolerance(S2FT_F32))
          << path_name(path) << " with new adapters";
    }
  }
}

// Segments without adapters only: exactly the base GEMM.
TEST(GpuForwardMixedEdge, NoAdaptersAndNoRows) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  Random rng(8);
  HostMatrix w(S2FT_BF16, 45, 37), x(S2FT_BF16, 6, 37);
  w.fill_random(rng);
  x.fill_random(rng);
  const int64_t offsets[3] = {0, 2, 6};
  const int32_t seg[2] = {-1, -1};
  Context cx;
  HostMatrix want(S2FT_BF16, 6, 45);
  ASSERT_S2FT_OK(s2ft_adapter_forward_mixed(cx.ctx, 1, S2FT_TARGET_DOWN, &x.t, &w.t, nullptr, nullptr, nullptr, 0,
                                            offsets, seg, 2, &want.t));
  DeviceMatrix dx(x), dw(w), dy(S2FT_BF16, 6, 45);
  ASSERT_S2FT_OK(s2ft_adapter_forward_mixed(g.ctx, 1, S2FT_TARGET_DOWN, &dx.t, &dw.t, nullptr, nullptr, nullptr, 0,
                                            offsets, seg, 2, &dy.t));
  g.sync();
  EXPECT_LE(s2ft_gpu::max_rel_diff(dy.download(), want), tolerance(S2FT_BF16));
  // No rows at all.
  DeviceMatrix dx0(S2FT_BF16, 0, 37), dy0(S2FT_BF16, 0, 45);
  const int64_t zero[1] = {0};
  ASSERT_S2FT_OK(s2ft_adapter_forward_mixed(g.ctx, 1, S2FT_TARGET_DOWN, &dx0.t, &dw.t, nullptr, nullptr, nullptr, 0,
                                            zero, nullptr, 0, &dy0.t));
  g.sync();
}

// ---- error paths on a CUDA context ---------------------------------------------------

TEST(GpuForwardMixedErrors, HostTensorsOnACudaContext) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  Problem p;
  make_problem(p, kSmall, 1, S2FT_TARGET_DOWN, S2FT_F32, 2, Batch::kMixed, 11);
  DeviceMatrix dx(p.x), dw(p.w), dy(S2FT_F32, p.T(), p.out);
  auto call = [&](const s2ft_tensor *x, const s2ft_tensor *w, s2ft_tensor *y) {
    return s2ft_adapter_forward_mixed(g.ctx, p.layer, p.target, x, w, nullptr, p.adapters.data(), nullptr,
                                      static_cast<int64_t>(p.adapters.size()), p.offsets.data(), p.seg.data(),
                                      static_cast<int64_t>(p.seg.size()), y);
  };
  ASSERT_S2FT_OK(call(&dx.t, &dw.t, &dy.t));
  g.sync();
  // A CPU tensor on a CUDA context.
  EXPECT_S2FT_ERROR(call(&p.x.t, &dw.t, &dy.t), S2FT_ERR_DEVICE, "x is on");
  HostMatrix hy(S2FT_F32, p.T(), p.out);
  EXPECT_S2FT_ERROR(call(&dx.t, &dw.t, &hy.t), S2FT_ERR_DEVICE, "y is on");
  // A tensor that claims the GPU but points at host memory.
  s2ft_tensor liar = p.w.t;
  liar.device = s2ft_device{S2FT_DEVICE_CUDA, 0};
  EXPECT_S2FT_ERROR(call(&dx.t, &liar, &dy.t), S2FT_ERR_DEVICE, "host memory");
  // The shared validation still runs first on CUDA.
  const int32_t bad_seg = static_cast<int32_t>(p.adapters.size());
  std::vector<int32_t> seg = p.seg;
  seg[0] = bad_seg;
  EXPECT_S2FT_ERROR(s2ft_adapter_forward_mixed(g.ctx, p.layer, p.target, &dx.t, &dw.t, nullptr, p.adapters.data(),
                                               nullptr, static_cast<int64_t>(p.adapters.size()), p.offsets.data(),
                                               seg.data(), static_cast<int64_t>(seg.size()), &dy.t),
                    S2FT_ERR_INVALID_ARGUMENT, "segment_adapter[0]");
}

TEST(GpuDeltaPath, EveryPathIsAcceptedOnCuda) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  for (int32_t path : {S2FT_DELTA_PATH_SPARSE, S2FT_DELTA_PATH_DENSE, S2FT_DELTA_PATH_AUTO})
    ASSERT_S2FT_OK(s2ft_context_set_delta_path(g.ctx, path));
  EXPECT_S2FT_ERROR(s2ft_context_set_delta_path(g.ctx, 7), S2FT_ERR_INVALID_ARGUMENT, "got 7");
}

}  // namespace
