// s2ft_permute on a CUDA context: FORWARD equals the CPU backend's result
// byte for byte and INVERSE restores the weights bit-exactly, for every
// dtype, MHA and GQA shapes, both head granularities, odd sizes, k = 1 and
// k = all, and compact, padded, column-strided and misaligned device views
// (bytes outside a view must stay untouched).
#include <cuda_runtime.h>

#include <array>
#include <cstring>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "gpu/gpu_support.hpp"

using namespace s2ft_test;
using s2ft_gpu::GpuContext;

namespace {

// A [rows, cols] device view with row stride rs and column stride cs (in
// elements), starting byte_offset bytes into its allocation; every byte of
// the allocation outside the view holds 0xA5.
struct StridedDevice {
  int32_t dtype = S2FT_F32;
  int64_t rows = 0, cols = 0, rs = 0, cs = 0;
  size_t offset = 0, e = 4;
  std::vector<uint8_t> image;
  void *data = nullptr;
  s2ft_tensor t{};

  StridedDevice(const HostMatrix &src, int64_t row_stride, int64_t col_stride, size_t byte_offset)
      : dtype(src.dtype), rows(src.rows), cols(src.cols), rs(row_stride), cs(col_stride), offset(byte_offset),
        e(src.elem()) {
    const int64_t span = rows > 0 && cols > 0 ? (rows - 1) * rs + (cols - 1) * cs + 1 : 0;
    image.assign(offset + static_cast<size_t>(span) * e + 16, 0xA5);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j)
        std::memcpy(&image[at(i, j)], &src.bytes[static_cast<size_t>(i * cols + j) * e], e);
    EXPECT_EQ(cudaMalloc(&data, image.size()), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data, image.data(), image.size(), cudaMemcpyHostToDevice), cudaSuccess);
    const int64_t shape[2] = {rows, cols};
    EXPECT_EQ(s2ft_tensor_init(&t, data, dtype, S2FT_DEVICE_CUDA, 0, 2, shape), S2FT_OK) << s2ft_last_error();
    t.strides[0] = rs;
    t.strides[1] = cs;
    t.byte_offset = offset;
  }
  StridedDevice(const StridedDevice &) = delete;
  StridedDevice &operator=(const StridedDevice &) = delete;
  ~StridedDevice() {
    if (data != nullptr) cudaFree(data);
  }
  size_t at(int64_t i, int64_t j) const { return offset + static_cast<size_t>(i * rs + j * cs) * e; }

  // The view's elements (call after the context's work is done); fails the
  // test if any byte outside the view changed.
  HostMatrix download(const char *what) const {
    std::vector<uint8_t> now(image.size());
    EXPECT_EQ(cudaMemcpy(now.data(), data, now.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    HostMatrix h(dtype, rows, cols);
    std::vector<char> inside(now.size(), 0);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        std::memcpy(&h.bytes[static_cast<size_t>(i * cols + j) * e], &now[at(i, j)], e);
        for (size_t b = 0; b < e; ++b) inside[at(i, j) + b] = 1;
      }
    size_t changed = 0;
    for (size_t b = 0; b < now.size(); ++b)
      if (!inside[b] && now[b] != 0xA5) ++changed;
    EXPECT_EQ(changed, 0u) << what << ": bytes outside the view changed";
    return h;
  }
};

// The seven weights of one block on the host.
struct Block {
  std::array<HostMatrix, 7> w;  // q, k, v, o, gate, up, down
  Block(const s2ft_model_shape &s, int32_t dtype, uint64_t seed) {
    const int64_t nq = int64_t{s.n_heads} * s.head_dim, nkv = int64_t{s.n_kv_heads} * s.head_dim;
    const int64_t shapes[7][2] = {{nq, s.d_model},   {nkv, s.d_model}, {nkv, s.d_model}, {s.d_model, nq},
                                  {s.d_ff, s.d_model}, {s.d_ff, s.d_model}, {s.d_model, s.d_ff}};
    Random rng(seed);
    for (int i = 0; i < 7; ++i) {
      w[static_cast<size_t>(i)] = HostMatrix(dtype, shapes[i][0], shapes[i][1]);
      w[static_cast<size_t>(i)].fill_random(rng, 2.0);
    }
  }
  s2ft_layer_weights layer() {
    return s2ft_layer_weights{&w[0].t, &w[1].t, &w[2].t, &w[3].t, &w[4].t, &w[5].t, &w[6].t};
  }
};

const char *kNames[7] = {"q", "k", "v", "o", "gate", "up", "down"};

// Device copies of a block in one layout.
enum Layout { kCompact, kPaddedRows, kColumnStrided, kMisaligned, kAlignedPadding };
const char *layout_name(Layout l) {
  switch (l) {
    case kCompact: return "compact";
    case kPaddedRows: return "padded rows";
    case kColumnStrided: return "column-strided";
    case kMisaligned: return "misaligned";
    default: return "16-byte padded rows";
  }
}

struct DeviceBlock {
  std::vector<std::unique_ptr<StridedDevice>> w;
  DeviceBlock(const Block &b, Layout layout) {
    for (const HostMatrix &m : b.w) {
      const int64_t per16 = m.dtype == S2FT_F32 ? 4 : 8;
      switch (layout) {
        case kCompact: w.push_back(std::make_unique<StridedDevice>(m, m.cols, 1, 0)); break;
        case kPaddedRows: w.push_back(std::make_unique<StridedDevice>(m, m.cols + 3, 1, 0)); break;
        case kColumnStrided: w.push_back(std::make_unique<StridedDevice>(m, 2 * m.cols + 1, 2, 0)); break;
        case kMisaligned: w.push_back(std::make_unique<StridedDevice>(m, m.cols, 1, m.elem())); break;
        case kAlignedPadding: w.push_back(std::make_unique<StridedDevice>(m, m.cols + per16, 1, 0)); break;
      }
    }
  }
  s2ft_layer_weights layer() {
    return s2ft_layer_weights{&w[0]->t, &w[1]->t, &w[2]->t, &w[3]->t, &w[4]->t, &w[5]->t, &w[6]->t};
  }
  // Every weight equals `want` byte for byte.
  void expect_equals(const Block &want, const std::string &what) const {
    for (size_t i = 0; i < 7; ++i) {
      const HostMatrix got = w[i]->download((what + " " + kNames[i]).c_str());
      EXPECT_TRUE(s2ft_gpu::bit_equal(got, want.w[i])) << what << ": weight " << kNames[i] << " differs";
    }
  }
};

struct Case {
  const char *name;
  int32_t n_heads, n_kv, head_dim, d_model, d_ff;
  int32_t granularity;
  int64_t count[S2FT_NUM_TARGETS];
};

const Case kCases[] = {
    {"mha_by_group", 4, 4, 4, 12, 10, S2FT_HEADS_BY_GROUP, {2, 0, 3, 0}},
    {"mha_single_v_up", 4, 4, 6, 9, 11, S2FT_HEADS_SINGLE, {1, 2, 4, 5}},
    {"gqa3_by_group_v_up", 6, 2, 4, 10, 13, S2FT_HEADS_BY_GROUP, {1, 1, 4, 5}},
    {"gqa2_single_v_up", 8, 4, 6, 11, 9, S2FT_HEADS_SINGLE, {3, 2, 5, 2}},
    {"gqa4_single_k_all", 8, 2, 2, 7, 6, S2FT_HEADS_SINGLE, {3, 0, 6, 1}},
    {"gqa2_by_group_k1", 8, 4, 4, 8, 5, S2FT_HEADS_BY_GROUP, {1, 1, 1, 1}},
    // Rows of 16-byte multiples (the vectorised path for f32, bf16 and f16).
    {"gqa4_aligned", 8, 2, 8, 64, 40, S2FT_HEADS_BY_GROUP, {1, 1, 9, 7}},
};

struct Param {
  Case c;
  int32_t dtype;
};

void PrintTo(const Param &p, std::ostream *os) { *os << p.c.name << " " << dtype_label(p.dtype); }

std::vector<Param> all_params() {
  std::vector<Param> p;
  for (const Case &c : kCases)
    for (int32_t dt : {S2FT_F32, S2FT_BF16, S2FT_F16}) p.push_back(Param{c, dt});
  return p;
}

class GpuPermute : public ::testing::TestWithParam<Param> {};

TEST_P(GpuPermute, ForwardEqualsCpuAndInverseRestores) {
  S2FT_REQUIRE_GPU();
  const Param prm = GetParam();
  const Case &c = prm.c;
  GpuContext g;
  Context cpu;
  const s2ft_model_shape shape{2, c.d_model, c.n_heads, c.n_kv, c.head_dim, c.d_ff};
  s2ft_select_options opts = count_options(c.count, c.granularity);
  for (uint64_t seed : {1u, 2u}) {
    opts.seed = seed;
    Selection s;
    ASSERT_S2FT_OK(s2ft_select(cpu.ctx, &shape, &opts, nullptr, &s.sel));
    const int32_t layer = static_cast<int32_t>(seed % 2);
    const Block base(shape, prm.dtype, 100 + seed);
    Block want = base;
    s2ft_layer_weights wl = want.layer();
    ASSERT_S2FT_OK(s2ft_permute(cpu.ctx, s.sel, layer, &wl, S2FT_PERMUTE_FORWARD));
    for (Layout layout : {kCompact, kPaddedRows, kColumnStrided, kMisaligned, kAlignedPadding}) {
      const std::string what = std::string(dtype_label(prm.dtype)) + " seed " + std::to_string(seed) + " " +
                               layout_name(layout);
      SCOPED_TRACE(what);
      DeviceBlock d(base, layout);
      s2ft_layer_weights dl = d.layer();
      ASSERT_S2FT_OK(s2ft_permute(g.ctx, s.sel, layer, &dl, S2FT_PERMUTE_FORWARD));
      g.sync();
      d.expect_equals(want, what + " forward");
      ASSERT_S2FT_OK(s2ft_permute(g.ctx, s.sel, layer, &dl, S2FT_PERMUTE_INVERSE));
      g.sync();
      d.expect_equals(base, what + " inverse");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GpuPermute, ::testing::ValuesIn(all_params()),
                         [](const ::testing::TestParamInfo<Param> &i) {
                           return std::string(i.param.c.name) + "_" + dtype_label(i.param.dtype);
                         });

// Enough elements per weight that the kernels' grid-stride loops go round
// more than once; rows of 16-byte multiples.
TEST(GpuPermuteLarge, ForwardEqualsCpuAndInverseRestores) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  Context cpu;
  const s2ft_model_shape shape{1, 512, 8, 2, 64, 2752};
  s2ft_select_options opts;
  ASSERT_S2FT_OK(s2ft_select_options_init(&opts, S2FT_SELECT_OPTIONS_VERSION));
  opts.targets = 0xF;
  opts.head_granularity = S2FT_HEADS_SINGLE;
  opts.ratio[S2FT_TARGET_O] = 0.25;
  opts.ratio[S2FT_TARGET_V] = 0.5;
  opts.ratio[S2FT_TARGET_DOWN] = 0.1;
  opts.ratio[S2FT_TARGET_UP] = 0.05;
  opts.seed = 9;
  Selection s;
  ASSERT_S2FT_OK(s2ft_select(cpu.ctx, &shape, &opts, nullptr, &s.sel));
  for (int32_t dtype : {S2FT_BF16, S2FT_F32}) {
    SCOPED_TRACE(dtype_label(dtype));
    const Block base(shape, dtype, 5);
    Block want = base;
    s2ft_layer_weights wl = want.layer();
    ASSERT_S2FT_OK(s2ft_permute(cpu.ctx, s.sel, 0, &wl, S2FT_PERMUTE_FORWARD));
    for (Layout layout : {kCompact, kColumnStrided}) {
      DeviceBlock d(base, layout);
      s2ft_layer_weights dl = d.layer();
      ASSERT_S2FT_OK(s2ft_permute(g.ctx, s.sel, 0, &dl, S2FT_PERMUTE_FORWARD));
      g.sync();
      d.expect_equals(want, std::string(layout_name(layout)) + " forward");
      ASSERT_S2FT_OK(s2ft_permute(g.ctx, s.sel, 0, &dl, S2FT_PERMUTE_INVERSE));
      g.sync();
      d.expect_equals(base, std::string(layout_name(layout)) + " inverse");
    }
  }
}

// Only some weights given: those move, the rest are not touched.
TEST(GpuPermuteSubset, OnlyGivenWeightsMove) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  Context cpu;
  const s2ft_model_shape shape{1, 10, 6, 2, 4, 9};
  const int64_t o_units[] = {1, 4}, v_units[] = {0}, down_units[] = {2, 8, 5}, up_units[] = {5, 0};
  const int64_t *units[S2FT_NUM_TARGETS] = {o_units, v_units, down_units, up_units};
  const int64_t n[S2FT_NUM_TARGETS] = {2, 1, 3, 2};
  Selection s;
  ASSERT_S2FT_OK(s2ft_selection_create(&shape, S2FT_HEADS_SINGLE, units, n, &s.sel));
  const Block base(shape, S2FT_BF16, 31);
  Block want = base;
  s2ft_layer_weights wl{};
  wl.o = &want.w[3].t;
  wl.gate = &want.w[4].t;
  ASSERT_S2FT_OK(s2ft_permute(cpu.ctx, s.sel, 0, &wl, S2FT_PERMUTE_FORWARD));
  DeviceBlock d(base, kCompact);
  s2ft_layer_weights dl{};
  dl.o = &d.w[3]->t;
  dl.gate = &d.w[4]->t;
  ASSERT_S2FT_OK(s2ft_permute(g.ctx, s.sel, 0, &dl, S2FT_PERMUTE_FORWARD));
  g.sync();
  d.expect_equals(want, "subset");
  const s2ft_layer_weights none{};
  EXPECT_EQ(s2ft_permute(g.ctx, s.sel, 0, &none, S2FT_PERMUTE_FORWARD), S2FT_OK);
}

// ---- error paths ---------------------------------------------------------------------

const s2ft_model_shape kErrShape{2, 8, 4, 2, 2, 5};

void error_selection(Selection &s) {
  const int64_t o_units[] = {1, 0}, d[] = {4, 1, 0, 3};  // per layer
  const int64_t *units[S2FT_NUM_TARGETS] = {o_units, nullptr, d, nullptr};
  const int64_t n[S2FT_NUM_TARGETS] = {1, 0, 2, 0};
  ASSERT_S2FT_OK(s2ft_selection_create(&kErrShape, S2FT_HEADS_BY_GROUP, units, n, &s.sel));
}

TEST(GpuPermuteErrors, HostTensorOnACudaContext) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  Selection s;
  error_selection(s);
  Block host(kErrShape, S2FT_F32, 3);
  DeviceBlock d(host, kCompact);
  s2ft_layer_weights w = d.layer();
  w.q = &host.w[0].t;  // a CPU tensor
  EXPECT_S2FT_ERROR(s2ft_permute(g.ctx, s.sel, 0, &w, S2FT_PERMUTE_FORWARD), S2FT_ERR_DEVICE, "weights->q");
  s2ft_tensor lying = host.w[6].t;  // claims the GPU, points at host memory
  lying.device = s2ft_device{S2FT_DEVICE_CUDA, 0};
  w = d.layer();
  w.down = &lying;
  EXPECT_S2FT_ERROR(s2ft_permute(g.ctx, s.sel, 0, &w, S2FT_PERMUTE_FORWARD), S2FT_ERR_DEVICE, "weights->down");
  g.sync();
  d.expect_equals(host, "after refused calls");
}

TEST(GpuPermuteErrors, BadShapeMovesNothing) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  Selection s;
  error_selection(s);
  const Block host(kErrShape, S2FT_BF16, 4);
  DeviceBlock d(host, kCompact);
  s2ft_layer_weights w = d.layer();
  s2ft_tensor bad = d.w[6]->t;
  bad.shape[1] -= 1;  // down one channel short, checked after q..up
  w.down = &bad;
  EXPECT_S2FT_ERROR(s2ft_permute(g.ctx, s.sel, 0, &w, S2FT_PERMUTE_FORWARD), S2FT_ERR_SHAPE, "weights->down");
  EXPECT_S2FT_ERROR(s2ft_permute(g.ctx, s.sel, 0, &w, 7), S2FT_ERR_INVALID_ARGUMENT, "direction");
  g.sync();
  d.expect_equals(host, "after refused calls");
}

}  // namespace
