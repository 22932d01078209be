// Unstructured sparse entries of adapters (s2ft_adapter_set_sparse and
// everything that reads them): set/get round trips and every error path,
// the file format (version 3, byte-identical version 2 without sparse
// entries, hostile files), apply/remove/switch bit-exact against a float64
// reference rounded once in f32, bf16 and f16 on base-order and permuted
// GQA models, fingerprints, overflow refusal, fusion (exact union, folding
// into lines, apply(fused) against sequential applies), the mixed forward
// and sparse deltas against float64 dense references, and PEFT export's
// refusal. References are computed in float64 by the tests' own code.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"
#include "support/sparse_adapter.hpp"
#include "support/target_geometry.hpp"
#include "support/adapter_file_spec.hpp"
#include "support/test_util.hpp"

using namespace s2ft_test;

namespace {

// GQA and odd sizes: 4 query heads over 2 KV heads of 3, d_model 13, d_ff 11.
const s2ft_model_shape kShape{2, 13, 4, 2, 3, 11};

std::string temp_path(const std::string &name) {
  return ::testing::TempDir() + "s2ft_sparse_adapter_" + std::to_string(getpid()) + "_" + name;
}

std::vector<uint8_t> read_bytes(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string &path, const std::vector<uint8_t> &bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char *>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

s2ft_tensor vec_f32(std::vector<float> &v) {
  s2ft_tensor t{};
  const int64_t shape[1] = {static_cast<int64_t>(v.size())};
  EXPECT_EQ(s2ft_tensor_init(&t, v.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 1, shape), S2FT_OK);
  return t;
}

// An element of (l, w) that adapter `a` does not change, and its first line.
int64_t ta_free_element(const TestAdapter &a, int32_t l, int32_t w) {
  const TestEntry &te = a.at(l, w);
  for (int64_t n = 0; n < te.rows * te.cols; ++n)
    if (!te.touched[static_cast<size_t>(n)]) return n;
  ADD_FAILURE() << "no free element";
  return 0;
}
int64_t ta_line(const TestAdapter &a, int32_t l, int32_t w) { return a.at(l, w).lines.at(0); }

// What s2ft_adapter_save wrote for the structured adapter of
// StructuredOnlyFileIsByteIdenticalToVersion2 before sparse entries existed
// (the library at commit e365855).
constexpr size_t kGoldenV2Size = 1352;
constexpr uint64_t kGoldenV2Hash = 0x99b49bdd21a5edb9ull;

using Model = s2ft_test::ModelOwner;

// Every sparse entry the adapter holds, read back through the public API.
struct ReadBack {
  std::vector<int64_t> indices;
  std::vector<float> deltas;
  uint64_t fingerprint = 0;
};
ReadBack read_sparse(const s2ft_adapter *a, int32_t l, int32_t w) {
  ReadBack r;
  int64_t n = -1;
  EXPECT_EQ(s2ft_adapter_sparse(a, l, w, nullptr, nullptr, 0, &n, &r.fingerprint), S2FT_OK) << s2ft_last_error();
  r.indices.resize(static_cast<size_t>(n));
  r.deltas.resize(static_cast<size_t>(n));
  int64_t n2 = -1;
  EXPECT_EQ(s2ft_adapter_sparse(a, l, w, r.indices.data(), r.deltas.data(), n, &n2, nullptr), S2FT_OK);
  EXPECT_EQ(n2, n);
  return r;
}

// ---- set and get ----------------------------------------------------------------------

TEST(SparseAdapter, SetGetRoundTripOnEveryWeight) {
  const AllWeights base(kShape, S2FT_BF16, 1);
  std::array<WeightSpec, 7> specs;
  for (int32_t w : kWeights) specs[static_cast<size_t>(w)].density = 0.2;
  specs[S2FT_WEIGHT_O].lines = {1, 5};  // mixed with lines on O and UP
  specs[S2FT_WEIGHT_UP].lines = {3};
  TestAdapter ta;
  make_test_adapter(ta, kShape, specs, &base, 2, "rt");
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t w : kWeights) {
      const TestEntry &te = ta.at(l, w);
      const ReadBack r = read_sparse(ta.a, l, w);
      EXPECT_EQ(r.indices, te.indices) << "layer " << l << " weight " << w;
      EXPECT_EQ(r.deltas, te.values);
      EXPECT_EQ(r.fingerprint, te.fingerprint);
      EXPECT_NE(r.fingerprint, 0u);
    }
  uint32_t mask = 0;
  int64_t total = 0;
  ASSERT_S2FT_OK(s2ft_adapter_sparse_info(ta.a, &mask, &total));
  EXPECT_EQ(mask, (1u << S2FT_NUM_WEIGHTS) - 1u);
  int64_t want_total = 0;
  for (const auto &l : ta.e)
    for (const TestEntry &te : l) want_total += static_cast<int64_t>(te.indices.size());
  EXPECT_EQ(total, want_total);
  ASSERT_S2FT_OK(s2ft_adapter_sparse_info(ta.a, nullptr, nullptr));
  // The target mask stays the structured one.
  uint32_t targets = 0;
  ASSERT_S2FT_OK(s2ft_adapter_info(ta.a, nullptr, nullptr, &targets));
  EXPECT_EQ(targets, S2FT_TARGET_BIT(S2FT_TARGET_O) | S2FT_TARGET_BIT(S2FT_TARGET_UP));

  // Deltas in 16-bit dtypes and [1, count] tensors are copied to f32; no
  // base means fingerprint 0; count 0 removes.
  const int64_t idx[3] = {0, 7, 12};
  for (int32_t dt : {S2FT_F16, S2FT_BF16}) {
    HostMatrix d(dt, 1, 3);
    d.set(0, 0, 0.5f), d.set(0, 1, -1.25f), d.set(0, 2, 3.0f);
    ASSERT_S2FT_OK(s2ft_adapter_set_sparse(ta.a, 1, S2FT_WEIGHT_Q, idx, 3, &d.t, nullptr));
    const ReadBack r = read_sparse(ta.a, 1, S2FT_WEIGHT_Q);
    EXPECT_EQ(r.indices, std::vector<int64_t>(idx, idx + 3));
    EXPECT_EQ(r.deltas, (std::vector<float>{0.5f, -1.25f, 3.0f}));
    EXPECT_EQ(r.fingerprint, 0u);
  }
  ASSERT_S2FT_OK(s2ft_adapter_set_sparse(ta.a, 1, S2FT_WEIGHT_Q, nullptr, 0, nullptr, nullptr));
  EXPECT_TRUE(read_sparse(ta.a, 1, S2FT_WEIGHT_Q).indices.empty());
  EXPECT_EQ(read_sparse(ta.a, 1, S2FT_WEIGHT_Q).fingerprint, 0u);
  // Learning the count with only one of the arrays.
  int64_t n = 0;
  std::vector<int64_t> only(200);
  ASSERT_S2FT_OK(s2ft_adapter_sparse(ta.a, 0, S2FT_WEIGHT_K, only.data(), nullptr, 200, &n, nullptr));
  EXPECT_EQ(std::vector<int64_t>(only.begin(), only.begin() + n), ta.at(0, S2FT_WEIGHT_K).indices);
}

TEST(SparseAdapter, FingerprintIsTheSameForAnF32BaseAndItsBf16Copy) {
  AllWeights f32(kShape, S2FT_F32, 3);
  AllWeights bf16(kShape, S2FT_BF16, 3);  // the same values rounded to bf16 (HostMatrix::set rounds to nearest even)
  std::vector<float> v{1.0f};
  const s2ft_tensor d = vec_f32(v);
  const int64_t idx[1] = {4};
  s2ft_adapter *a = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "fp", 1.0, &a));
  uint64_t f1 = 0, f2 = 0;
  int64_t n = 0;
  ASSERT_S2FT_OK(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_GATE, idx, 1, &d, &f32.at(0, S2FT_WEIGHT_GATE).t));
  ASSERT_S2FT_OK(s2ft_adapter_sparse(a, 0, S2FT_WEIGHT_GATE, nullptr, nullptr, 0, &n, &f1));
  ASSERT_S2FT_OK(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_GATE, idx, 1, &d, &bf16.at(0, S2FT_WEIGHT_GATE).t));
  ASSERT_S2FT_OK(s2ft_adapter_sparse(a, 0, S2FT_WEIGHT_GATE, nullptr, nullptr, 0, &n, &f2));
  EXPECT_EQ(f1, f2);
  EXPECT_EQ(f1, weight_fingerprint(f32.at(0, S2FT_WEIGHT_GATE)));
  s2ft_adapter_destroy(a);
}

TEST(SparseAdapter, SetErrors) {
  s2ft_adapter *a = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "err", 1.0, &a));
  std::vector<float> v{1.0f, 2.0f, 3.0f};
  const s2ft_tensor d = vec_f32(v);
  const int64_t ok[3] = {1, 5, 9};
  int64_t rows = 0, cols = 0;
  full_shape(kShape, S2FT_WEIGHT_K, &rows, &cols);  // [6, 13]
  const int64_t size = rows * cols;
  ASSERT_S2FT_OK(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_K, ok, 3, &d, nullptr));
  const ReadBack before = read_sparse(a, 0, S2FT_WEIGHT_K);

  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(nullptr, 0, S2FT_WEIGHT_K, ok, 3, &d, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "adapter");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 2, S2FT_WEIGHT_K, ok, 3, &d, nullptr), S2FT_ERR_INVALID_ARGUMENT, "layer");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, -1, S2FT_WEIGHT_K, ok, 3, &d, nullptr), S2FT_ERR_INVALID_ARGUMENT, "layer");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, 7, ok, 3, &d, nullptr), S2FT_ERR_INVALID_ARGUMENT, "weight");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, -1, ok, 3, &d, nullptr), S2FT_ERR_INVALID_ARGUMENT, "weight");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_K, ok, -1, &d, nullptr), S2FT_ERR_INVALID_ARGUMENT, "count");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_K, ok, size + 1, &d, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "count");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_K, nullptr, 3, &d, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "indices");
  const int64_t unsorted[3] = {5, 1, 9}, repeated[3] = {1, 5, 5}, negative[3] = {-1, 5, 9}, beyond[3] = {1, 5, size};
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_K, unsorted, 3, &d, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "indices[1] = 1 is below indices[0] = 5");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_K, repeated, 3, &d, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "indices[2] = 5 repeats");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_K, negative, 3, &d, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "indices[0] = -1 is out of range");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_K, beyond, 3, &d, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "indices[2] = 78 is out of range [0, rows * cols = 78)");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_K, ok, 3, nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "delta");
  std::vector<float> four{1, 2, 3, 4};
  const s2ft_tensor d4 = vec_f32(four);
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_K, ok, 3, &d4, nullptr), S2FT_ERR_SHAPE, "delta");
  HostMatrix d31(S2FT_F32, 3, 1);
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_K, ok, 3, &d31.t, nullptr), S2FT_ERR_SHAPE, "delta");
  std::vector<float> nan{1.0f, NAN, 3.0f};
  const s2ft_tensor dn = vec_f32(nan);
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_K, ok, 3, &dn, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "non-finite value at element 1");
  std::vector<float> inf{1.0f, 2.0f, -INFINITY};
  const s2ft_tensor di = vec_f32(inf);
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_K, ok, 3, &di, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "non-finite");
  s2ft_tensor on_gpu = d;
  on_gpu.device.type = S2FT_DEVICE_CUDA;
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_K, ok, 3, &on_gpu, nullptr), S2FT_ERR_DEVICE, "delta");
  HostMatrix wrong_base(S2FT_F32, rows + 1, cols);
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_K, ok, 3, &d, &wrong_base.t), S2FT_ERR_SHAPE, "base");
  // Nothing of the above changed the entries.
  const ReadBack after = read_sparse(a, 0, S2FT_WEIGHT_K);
  EXPECT_EQ(after.indices, before.indices);
  EXPECT_EQ(after.deltas, before.deltas);

  // Get errors.
  int64_t n = 0;
  std::vector<int64_t> small(2);
  EXPECT_S2FT_ERROR(s2ft_adapter_sparse(a, 0, S2FT_WEIGHT_K, small.data(), nullptr, 2, &n, nullptr),
                    S2FT_ERR_INVALID_ARGUMENT, "capacity 2 is below the 3");
  std::vector<float> small_f(2);
  EXPECT_S2FT_ERROR(s2ft_adapter_sparse(a, 0, S2FT_WEIGHT_K, nullptr, small_f.data(), 2, &n, nullptr),
                    S2FT_ERR_INVALID_ARGUMENT, "capacity");
  EXPECT_S2FT_ERROR(s2ft_adapter_sparse(a, 0, S2FT_WEIGHT_K, nullptr, nullptr, 0, nullptr, nullptr),
                    S2FT_ERR_INVALID_ARGUMENT, "count");
  EXPECT_S2FT_ERROR(s2ft_adapter_sparse(a, 0, 9, nullptr, nullptr, 0, &n, nullptr), S2FT_ERR_INVALID_ARGUMENT, "weight");
  EXPECT_S2FT_ERROR(s2ft_adapter_sparse(nullptr, 0, 0, nullptr, nullptr, 0, &n, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "adapter");
  EXPECT_S2FT_ERROR(s2ft_adapter_sparse_info(nullptr, nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT, "adapter");
  s2ft_adapter_destroy(a);
}

// No sparse entry may lie on a structured line of the same (layer, weight):
// both set calls refuse, naming the element, and change nothing.
TEST(SparseAdapter, LinesAndSparseEntriesMayNotOverlap) {
  s2ft_adapter *a = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "overlap", 1.0, &a));
  // DOWN [13, 11]: columns are lines. Line 4.
  HostMatrix dd(S2FT_F32, kShape.d_model, 1);
  const int64_t line4[1] = {4};
  ASSERT_S2FT_OK(s2ft_adapter_set(a, 0, S2FT_TARGET_DOWN, line4, 1, &dd.t, nullptr));
  std::vector<float> v{1.0f, 2.0f};
  const s2ft_tensor d = vec_f32(v);
  const int64_t on_line[2] = {3, 2 * 11 + 4};  // (0, 3) is free, (2, 4) lies on column 4
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_DOWN, on_line, 2, &d, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "indices[1] = 26 (row 2, column 4) lies on line 4");
  int64_t n = -1;
  ASSERT_S2FT_OK(s2ft_adapter_sparse(a, 0, S2FT_WEIGHT_DOWN, nullptr, nullptr, 0, &n, nullptr));
  EXPECT_EQ(n, 0);
  // The same element in another layer or another weight is fine.
  ASSERT_S2FT_OK(s2ft_adapter_set_sparse(a, 1, S2FT_WEIGHT_DOWN, on_line, 2, &d, nullptr));
  ASSERT_S2FT_OK(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_GATE, on_line, 2, &d, nullptr));
  // And the other way round: a line over a sparse entry.
  const int64_t line3[1] = {3};
  const int64_t lines_0_4[1] = {0};
  ASSERT_S2FT_OK(s2ft_adapter_set(a, 1, S2FT_TARGET_DOWN, lines_0_4, 1, &dd.t, nullptr));  // column 0: free
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a, 1, S2FT_TARGET_DOWN, line3, 1, &dd.t, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "line 3 of layer 1 target DOWN holds the adapter's sparse entry 3 (row 0, column 3)");
  int64_t lines[2];
  ASSERT_S2FT_OK(s2ft_adapter_lines(a, 1, S2FT_TARGET_DOWN, lines, nullptr, 2, &n));
  ASSERT_EQ(n, 1);
  EXPECT_EQ(lines[0], 0);
  // Row targets: UP [11, 13], rows are lines.
  HostMatrix du(S2FT_F32, 1, kShape.d_model);
  const int64_t row2[1] = {2};
  ASSERT_S2FT_OK(s2ft_adapter_set(a, 0, S2FT_TARGET_UP, row2, 1, &du.t, nullptr));
  const int64_t in_row2[1] = {2 * 13 + 5};
  std::vector<float> one{1.0f};
  const s2ft_tensor d1 = vec_f32(one);
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_UP, in_row2, 1, &d1, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "(row 2, column 5) lies on line 2");
  // Removing the lines frees the elements.
  ASSERT_S2FT_OK(s2ft_adapter_set(a, 0, S2FT_TARGET_UP, nullptr, 0, nullptr, nullptr));
  ASSERT_S2FT_OK(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_UP, in_row2, 1, &d1, nullptr));
  s2ft_adapter_destroy(a);
}

// ---- files ---------------------------------------------------------------------------------

// A mixed adapter: lines on O and DOWN, sparse entries on every weight.
void make_mixed(TestAdapter &ta, const AllWeights &base, uint64_t seed, const char *name) {
  std::array<WeightSpec, 7> specs;
  for (int32_t w : kWeights) specs[static_cast<size_t>(w)].density = 0.15;
  specs[S2FT_WEIGHT_O].lines = {0, 7};
  specs[S2FT_WEIGHT_DOWN].lines = {2, 3, 9};
  specs[S2FT_WEIGHT_V].lines = {4};
  make_test_adapter(ta, kShape, specs, &base, seed, name);
}

void expect_same_adapter(const s2ft_adapter *a, const s2ft_adapter *b) {
  for (int32_t l = 0; l < kShape.n_layers; ++l) {
    for (int32_t t : kTargets) {
      int64_t na = 0, nb = 0;
      ASSERT_S2FT_OK(s2ft_adapter_lines(a, l, t, nullptr, nullptr, 0, &na));
      ASSERT_S2FT_OK(s2ft_adapter_lines(b, l, t, nullptr, nullptr, 0, &nb));
      ASSERT_EQ(na, nb);
      if (na == 0) continue;
      std::vector<int64_t> la(static_cast<size_t>(na)), lb(static_cast<size_t>(nb));
      std::vector<uint64_t> fa(static_cast<size_t>(na)), fb(static_cast<size_t>(nb));
      ASSERT_S2FT_OK(s2ft_adapter_lines(a, l, t, la.data(), fa.data(), na, &na));
      ASSERT_S2FT_OK(s2ft_adapter_lines(b, l, t, lb.data(), fb.data(), nb, &nb));
      EXPECT_EQ(la, lb);
      EXPECT_EQ(fa, fb);
      const int64_t len = line_length(kShape, t);
      HostMatrix da = by_columns(t) ? HostMatrix(S2FT_F32, len, na) : HostMatrix(S2FT_F32, na, len);
      HostMatrix db = da;
      ASSERT_S2FT_OK(s2ft_adapter_delta(a, l, t, &da.t));
      ASSERT_S2FT_OK(s2ft_adapter_delta(b, l, t, &db.t));
      EXPECT_EQ(da.bytes, db.bytes);
    }
    for (int32_t w : kWeights) {
      const ReadBack ra = read_sparse(a, l, w), rb = read_sparse(b, l, w);
      EXPECT_EQ(ra.indices, rb.indices);
      EXPECT_EQ(ra.fingerprint, rb.fingerprint);
      ASSERT_EQ(ra.deltas.size(), rb.deltas.size());
      EXPECT_EQ(0, std::memcmp(ra.deltas.data(), rb.deltas.data(), ra.deltas.size() * sizeof(float)));
    }
  }
}

TEST(SparseAdapterFile, MixedAdapterRoundTripsBitExactly) {
  const AllWeights base(kShape, S2FT_F32, 10);
  TestAdapter ta;
  make_mixed(ta, base, 11, "mixed");
  ASSERT_S2FT_OK(s2ft_adapter_set_meta(ta.a, "base_model", "tiny"));
  const std::string path = temp_path("mixed.safetensors"), again = temp_path("mixed2.safetensors");
  ASSERT_S2FT_OK(s2ft_adapter_save(ta.a, path.c_str()));
  s2ft_adapter *b = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_load(path.c_str(), &b));
  expect_same_adapter(ta.a, b);
  const char *meta = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_meta(b, "base_model", &meta));
  EXPECT_STREQ(meta, "tiny");
  ASSERT_S2FT_OK(s2ft_adapter_save(b, again.c_str()));
  EXPECT_EQ(read_bytes(path), read_bytes(again));
  s2ft_adapter_destroy(b);

  const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(path);
  EXPECT_EQ(f.metadata().at("format_version"), "3");
  EXPECT_EQ(f.metadata().at("targets"), "O,V,DOWN");
  const auto sparse = nlohmann::json::parse(f.metadata().at("sparse"));
  ASSERT_EQ(sparse.size(), 14u);  // 2 layers x 7 weights
  EXPECT_EQ(sparse[0]["tensor"], "model.layers.0.self_attn.o_proj");
  EXPECT_EQ(sparse[0]["weight"], "O");
  EXPECT_EQ(sparse[4]["tensor"], "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(sparse[4]["weight"], "Q");
  EXPECT_EQ(sparse[4]["count"], static_cast<int64_t>(ta.at(0, S2FT_WEIGHT_Q).indices.size()));
  char hex[20];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(ta.at(0, S2FT_WEIGHT_Q).fingerprint));
  EXPECT_EQ(sparse[4]["fingerprint"], hex);
  bool found = false;
  for (const auto &t : f.tensors())
    if (t.name == "model.layers.1.mlp.gate_proj.s2ft_sparse_indices") {
      found = true;
      EXPECT_EQ(t.dtype, "I64");
      EXPECT_EQ(t.shape, std::vector<int64_t>{static_cast<int64_t>(ta.at(1, S2FT_WEIGHT_GATE).indices.size())});
    }
  EXPECT_TRUE(found);
  std::remove(path.c_str());
  std::remove(again.c_str());

  // Removing every sparse entry makes the file version 2 again.
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t w : kWeights) ASSERT_S2FT_OK(s2ft_adapter_set_sparse(ta.a, l, w, nullptr, 0, nullptr, nullptr));
  ASSERT_S2FT_OK(s2ft_adapter_save(ta.a, path.c_str()));
  const s2ft::io::SafetensorsFile g = s2ft::io::SafetensorsFile::read(path);
  EXPECT_EQ(g.metadata().at("format_version"), "2");
  EXPECT_EQ(g.metadata().count("sparse"), 0u);
  std::remove(path.c_str());
}

// An adapter without sparse entries is written exactly as before sparse
// entries existed: the adapter of test_adapter_file.cpp's valid_spec (DOWN
// in layer 0, V in layer 1, fingerprinted), whose file the library at
// commit e365855 wrote with the FNV-1a 64 hash below.
TEST(SparseAdapterFile, StructuredOnlyFileIsByteIdenticalToVersion2) {
  const s2ft_model_shape shape{2, 5, 4, 2, 3, 7};
  s2ft_adapter *a = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_create(&shape, "valid", 0.5, &a));
  Random rng(1);
  HostMatrix down_base(S2FT_BF16, shape.d_model, shape.d_ff), v_base(S2FT_BF16, 6, shape.d_model);
  down_base.fill_random(rng);
  v_base.fill_random(rng);
  HostMatrix dd(S2FT_F32, shape.d_model, 3), dv(S2FT_F32, 3, shape.d_model);
  dd.fill_random(rng);
  dv.fill_random(rng);
  const int64_t down_lines[] = {6, 1, 4}, v_lines[] = {3, 4, 5};
  ASSERT_S2FT_OK(s2ft_adapter_set(a, 0, S2FT_TARGET_DOWN, down_lines, 3, &dd.t, &down_base.t));
  ASSERT_S2FT_OK(s2ft_adapter_set(a, 1, S2FT_TARGET_V, v_lines, 3, &dv.t, &v_base.t));
  const std::string path = temp_path("v2.safetensors");
  ASSERT_S2FT_OK(s2ft_adapter_save(a, path.c_str()));
  const std::vector<uint8_t> bytes = read_bytes(path);
  EXPECT_EQ(bytes.size(), kGoldenV2Size);
  EXPECT_EQ(fnv_bytes(bytes), kGoldenV2Hash) << std::hex << fnv_bytes(bytes);
  const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(path);
  EXPECT_EQ(f.metadata().at("format_version"), "2");
  EXPECT_EQ(f.metadata().count("sparse"), 0u);
  // Setting and removing sparse entries leaves no trace.
  const int64_t idx[1] = {2};
  std::vector<float> v{1.0f};
  const s2ft_tensor d = vec_f32(v);
  ASSERT_S2FT_OK(s2ft_adapter_set_sparse(a, 1, S2FT_WEIGHT_Q, idx, 1, &d, nullptr));
  ASSERT_S2FT_OK(s2ft_adapter_set_sparse(a, 1, S2FT_WEIGHT_Q, nullptr, 0, nullptr, nullptr));
  ASSERT_S2FT_OK(s2ft_adapter_save(a, path.c_str()));
  EXPECT_EQ(read_bytes(path), bytes);
  s2ft_adapter_destroy(a);
  std::remove(path.c_str());
}

// ---- hostile files ---------------------------------------------------------------------------

const std::string kGate0 = "model.layers.0.mlp.gate_proj";  // sparse {3, 20, 40}
const std::string kDown1 = "model.layers.1.mlp.down_proj";  // line 5 and sparse {0, 12, 100}

Spec valid_sparse_spec() {
  s2ft_adapter *a = nullptr;
  EXPECT_EQ(s2ft_adapter_create(&kShape, "hostile", 1.0, &a), S2FT_OK);
  const AllWeights base(kShape, S2FT_F32, 21);
  const int64_t g[3] = {3, 20, 40}, dn[3] = {0, 12, 100};
  std::vector<float> v{0.5f, -0.25f, 2.0f};
  const s2ft_tensor d = vec_f32(v);
  EXPECT_EQ(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_GATE, g, 3, &d, &base.at(0, S2FT_WEIGHT_GATE).t), S2FT_OK);
  HostMatrix line(S2FT_F32, kShape.d_model, 1);
  const int64_t l5[1] = {5};
  EXPECT_EQ(s2ft_adapter_set(a, 1, S2FT_TARGET_DOWN, l5, 1, &line.t, &base.at(1, S2FT_WEIGHT_DOWN).t), S2FT_OK);
  EXPECT_EQ(s2ft_adapter_set_sparse(a, 1, S2FT_WEIGHT_DOWN, dn, 3, &d, &base.at(1, S2FT_WEIGHT_DOWN).t), S2FT_OK)
      << s2ft_last_error();
  Spec s = saved_spec(a, temp_path("hostile-valid.safetensors"));
  s2ft_adapter_destroy(a);
  return s;
}

void expect_rejected(const std::vector<uint8_t> &bytes, const std::string &case_name, const std::string &needle) {
  SCOPED_TRACE(case_name);
  const std::string path = temp_path(case_name + ".safetensors");
  write_bytes(path, bytes);
  s2ft_adapter *a = reinterpret_cast<s2ft_adapter *>(0x1);
  EXPECT_S2FT_ERROR(s2ft_adapter_load(path.c_str(), &a), S2FT_ERR_FORMAT, needle);
  EXPECT_EQ(a, nullptr);
  std::remove(path.c_str());
}
void expect_rejected(const Spec &s, const std::string &case_name, const std::string &needle) {
  expect_rejected(s.serialize(), case_name, needle);
}

template <typename T>
std::vector<uint8_t> bytes_of(const std::vector<T> &v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

TEST(SparseAdapterFile, TheValidFileLoads) {
  const Spec s = valid_sparse_spec();
  const std::string path = temp_path("valid-sparse.safetensors");
  write_bytes(path, s.serialize());
  s2ft_adapter *a = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_load(path.c_str(), &a));
  EXPECT_EQ(read_sparse(a, 1, S2FT_WEIGHT_DOWN).indices, (std::vector<int64_t>{0, 12, 100}));
  s2ft_adapter_destroy(a);
  std::remove(path.c_str());
}

TEST(SparseAdapterFile, HostileTensors) {
  const Spec good = valid_sparse_spec();
  const std::string ind = kGate0 + ".s2ft_sparse_indices", del = kGate0 + ".s2ft_sparse_delta",
                    fp = kGate0 + ".s2ft_sparse_base_fingerprint";
  auto edit = [&](const std::function<void(Spec &)> &f) {
    Spec s = good;
    f(s);
    return s;
  };
  // Missing parts.
  expect_rejected(edit([&](Spec &s) { s.erase(fp); }), "missing_fingerprint", "s2ft_sparse_base_fingerprint\" is missing");
  expect_rejected(edit([&](Spec &s) { s.erase(del); }), "missing_delta", "s2ft_sparse_delta\" is missing");
  expect_rejected(edit([&](Spec &s) {
                    s.erase(ind);
                    s.erase(del);
                    s.erase(fp);
                  }),
                  "missing_all", "metadata \"sparse\" lists 2 weights but the file stores sparse entries of 1");
  // Dtypes.
  expect_rejected(edit([&](Spec &s) { s.find(ind).dtype = "F64"; }), "indices_f64", "has dtype \"F64\", expected I64");
  expect_rejected(edit([&](Spec &s) {
                    Tensor &t = s.find(del);
                    t.dtype = "F16";
                    t.bytes.resize(6);
                  }),
                  "delta_f16", "expected F32");
  expect_rejected(edit([&](Spec &s) { s.find(fp).dtype = "I64"; }), "fingerprint_i64", "expected U64");
  // Shapes and counts.
  expect_rejected(edit([&](Spec &s) {
                    Tensor &t = s.find(del);
                    t.shape = {4};
                    t.bytes.resize(16);
                  }),
                  "delta_longer", "must have shape [3]");
  expect_rejected(edit([&](Spec &s) {
                    Tensor &t = s.find(del);
                    t.shape = {1, 3};
                  }),
                  "delta_rank2", "must have shape [3]");
  expect_rejected(edit([&](Spec &s) {
                    Tensor &t = s.find(fp);
                    t.shape = {2};
                    t.bytes.resize(16);
                  }),
                  "fingerprint_two", "must have shape [1]");
  expect_rejected(edit([&](Spec &s) {
                    Tensor &t = s.find(ind);
                    t.shape = {1, 3};
                  }),
                  "indices_rank2", "must have rank 1");
  expect_rejected(edit([&](Spec &s) {
                    s.find(ind) = Tensor{ind, "I64", {0}, {}};
                    s.find(del) = Tensor{del, "F32", {0}, {}};
                  }),
                  "empty", "is empty");
  expect_rejected(edit([&](Spec &s) {
                    std::vector<int64_t> many(200);
                    for (int64_t i = 0; i < 200; ++i) many[static_cast<size_t>(i)] = i;
                    s.find(ind) = Tensor{ind, "I64", {200}, bytes_of(many)};
                    s.find(del) = Tensor{del, "F32", {200}, std::vector<uint8_t>(800, 0)};
                  }),
                  "more_than_the_weight", "more than the 143 elements");
  // Index values.
  expect_rejected(edit([&](Spec &s) { s.find(ind).bytes = bytes_of(std::vector<int64_t>{3, 40, 20}); }), "unsorted",
                  "is not ascending at element 2");
  expect_rejected(edit([&](Spec &s) { s.find(ind).bytes = bytes_of(std::vector<int64_t>{3, 20, 20}); }), "duplicate",
                  "holds index 20 twice");
  expect_rejected(edit([&](Spec &s) { s.find(ind).bytes = bytes_of(std::vector<int64_t>{-1, 20, 40}); }), "negative",
                  "element 0 = -1 is out of range [0, 143)");
  expect_rejected(edit([&](Spec &s) { s.find(ind).bytes = bytes_of(std::vector<int64_t>{3, 20, 143}); }), "beyond",
                  "element 2 = 143 is out of range");
  expect_rejected(edit([&](Spec &s) { s.find(del).bytes = bytes_of(std::vector<float>{1.0f, NAN, 2.0f}); }), "nan",
                  "non-finite value (NaN or Inf) at element 1");
  // A sparse entry on a stored line: DOWN of layer 1 has line 5; index 16 = (1, 5).
  expect_rejected(edit([&](Spec &s) {
                    s.find(kDown1 + ".s2ft_sparse_indices").bytes = bytes_of(std::vector<int64_t>{0, 16, 100});
                  }),
                  "overlap", "element 1 = 16 lies on line 5");
  // Names: structured suffixes on a weight that has no lines, layers beyond the shape.
  expect_rejected(edit([&](Spec &s) { s.find(fp).name = "model.layers.0.mlp.gate_proj.s2ft_base_fingerprint"; }),
                  "structured_suffix_on_gate", "is not an adapter tensor");
  expect_rejected(edit([&](Spec &s) { s.find(fp).name = "model.layers.2.mlp.gate_proj.s2ft_sparse_base_fingerprint"; }),
                  "layer_beyond", "is not an adapter tensor");
  // Truncated files.
  const std::vector<uint8_t> bytes = good.serialize();
  for (size_t cut : {size_t{8}, bytes.size() / 2, bytes.size() - 1}) {
    std::vector<uint8_t> t(bytes.begin(), bytes.begin() + static_cast<long>(cut));
    expect_rejected(t, "truncated_" + std::to_string(cut), "not a valid safetensors file");
  }
}

TEST(SparseAdapterFile, HostileMetadata) {
  const Spec good = valid_sparse_spec();
  auto with = [&](const std::string &key, const std::string &value) {
    Spec s = good;
    s.meta[key] = value;
    return s;
  };
  // Sparse tensors need version 3; version 3 needs the summary.
  expect_rejected(with("format_version", "2"), "sparse_in_v2", "holds sparse entries, which format version 2 does not have");
  Spec no_summary = good;
  no_summary.meta.erase("sparse");
  expect_rejected(no_summary, "no_summary", "has no \"sparse\"");
  nlohmann::json sparse = nlohmann::json::parse(good.meta.at("sparse"));
  auto with_sparse = [&](const std::function<void(nlohmann::json &)> &f) {
    nlohmann::json j = sparse;
    f(j);
    return with("sparse", j.dump());
  };
  expect_rejected(with("sparse", "{}"), "not_array", "must be a JSON array");
  expect_rejected(with("sparse", "[1,2"), "bad_json", "metadata \"sparse\"");
  expect_rejected(with_sparse([](nlohmann::json &j) { j[0]["count"] = 4; }), "wrong_count",
                  "gives count = 4 but the tensors hold 3 entries");
  expect_rejected(with_sparse([](nlohmann::json &j) { j[0]["weight"] = "UP"; }), "wrong_weight", "gives weight \"UP\"");
  expect_rejected(with_sparse([](nlohmann::json &j) { j[0]["fingerprint"] = "0000000000000001"; }), "wrong_fingerprint",
                  "inconsistent sparse metadata");
  expect_rejected(with_sparse([](nlohmann::json &j) { j[1] = j[0]; }), "listed_twice", "a second time");
  expect_rejected(with_sparse([](nlohmann::json &j) { j[0]["extra"] = 1; }), "extra_member",
                  "must be an object with tensor, weight, count, fingerprint");
  expect_rejected(with_sparse([](nlohmann::json &j) { j[0]["tensor"] = "model.layers.0.mlp.up_proj"; }), "not_stored",
                  "which has no stored sparse entries");
  // A version-3 file without sparse entries still loads (another writer may make one).
  Spec empty;
  empty.meta = good.meta;
  empty.meta["sparse"] = "[]";
  empty.meta["targets"] = "";
  empty.meta["slices"] = "[]";
  const std::string path = temp_path("v3-empty.safetensors");
  write_bytes(path, empty.serialize());
  s2ft_adapter *a = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_load(path.c_str(), &a));
  s2ft_adapter_destroy(a);
  std::remove(path.c_str());
}

// ---- apply, remove, switch -----------------------------------------------------------------

struct Case {
  int32_t dtype;
  bool permuted;
  double density;  // < 0: one entry per weight
};
void PrintTo(const Case &c, std::ostream *os) {
  *os << dtype_label(c.dtype) << (c.permuted ? " permuted" : " base order") << " density " << c.density;
}
std::string case_name(const ::testing::TestParamInfo<Case> &i) {
  const std::string d = i.param.density < 0 ? "one" : i.param.density >= 1 ? "all" : "1pct";
  return std::string(dtype_label(i.param.dtype)) + (i.param.permuted ? "_permuted_" : "_base_") + d;
}

class SparseApply : public ::testing::TestWithParam<Case> {
 protected:
  Context cx;
  s2ft_selection *sel = nullptr;
  void SetUp() override {
    if (GetParam().permuted) make_moving_selection(kShape, &sel);
  }
  void TearDown() override { s2ft_selection_destroy(sel); }
  void to_model_order(AllWeights &w) {
    if (sel != nullptr) w.permute(cx.ctx, sel, S2FT_PERMUTE_FORWARD);
  }
  // Specs at the case's density: sparse entries on every weight, lines on some.
  std::array<WeightSpec, 7> specs(bool lines_a) const {
    std::array<WeightSpec, 7> s;
    for (int32_t w : kWeights) s[static_cast<size_t>(w)].density = GetParam().density;
    if (lines_a) {
      s[S2FT_WEIGHT_O].lines = {0, 4, 5, 11};
      s[S2FT_WEIGHT_DOWN].lines = {3, 7, 10};
      s[S2FT_WEIGHT_V].lines = {1};
    } else {
      s[S2FT_WEIGHT_O].lines = {5, 9};
      s[S2FT_WEIGHT_UP].lines = {2, 8, 6};
    }
    return s;
  }
};

TEST_P(SparseApply, ApplyMatchesRoundedFloat64AndRemoveRestoresBytes) {
  const Case c = GetParam();
  const AllWeights base(kShape, c.dtype, 40);
  TestAdapter a;
  make_test_adapter(a, kShape, specs(true), &base, 41, "a");
  AllWeights work(base);
  to_model_order(work);
  const AllWeights before(work);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), sel, &m.m));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, 0.75, 0));
  AllWeights want = merged(base, {&a}, {0.75});
  to_model_order(want);
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t w : kWeights)
      for (int64_t i = 0; i < want.at(l, w).rows; ++i)
        for (int64_t j = 0; j < want.at(l, w).cols; ++j)
          ASSERT_EQ(work.at(l, w).get(i, j), want.at(l, w).get(i, j))
              << "layer " << l << " weight " << w << " (" << i << ", " << j << ")";
  EXPECT_TRUE(work.same_bytes(want));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  EXPECT_TRUE(work.same_bytes(before));
  // Again at the default scale (NaN), then removed again.
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, NAN, 0));
  AllWeights want1 = merged(base, {&a}, {1.0});
  to_model_order(want1);
  EXPECT_TRUE(work.same_bytes(want1));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  EXPECT_TRUE(work.same_bytes(before));
}

// A -> B touches the union; lines of one meet sparse entries of the other.
TEST_P(SparseApply, SwitchIsBitIdenticalToRemoveThenApply) {
  const Case c = GetParam();
  const AllWeights base(kShape, c.dtype, 50);
  TestAdapter a, b;
  make_test_adapter(a, kShape, specs(true), &base, 51, "a");
  make_test_adapter(b, kShape, specs(false), &base, 52, "b");
  AllWeights w1(base), w2(base);
  to_model_order(w1);
  to_model_order(w2);
  const AllWeights original(w1);
  Model m1, m2;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, w1.layers.data(), sel, &m1.m));
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, w2.layers.data(), sel, &m2.m));
  ASSERT_S2FT_OK(s2ft_adapter_switch(m1.m, a.a, 0.5, 0));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m2.m, a.a, 0.5, 0));
  ASSERT_TRUE(w1.same_bytes(w2));
  for (int round = 0; round < 2; ++round) {
    ASSERT_S2FT_OK(s2ft_adapter_switch(m1.m, b.a, -2.0, 0));
    ASSERT_S2FT_OK(s2ft_adapter_remove(m2.m));
    ASSERT_S2FT_OK(s2ft_adapter_apply(m2.m, b.a, -2.0, 0));
    EXPECT_TRUE(w1.same_bytes(w2));
    AllWeights want = merged(base, {&b}, {-2.0});
    to_model_order(want);
    EXPECT_TRUE(w1.same_bytes(want));
    ASSERT_S2FT_OK(s2ft_adapter_switch(m1.m, a.a, 0.5, 0));
    ASSERT_S2FT_OK(s2ft_adapter_remove(m2.m));
    ASSERT_S2FT_OK(s2ft_adapter_apply(m2.m, a.a, 0.5, 0));
    EXPECT_TRUE(w1.same_bytes(w2));
  }
  ASSERT_S2FT_OK(s2ft_adapter_switch(m1.m, a.a, 3.0, 0));  // the same adapter at another scale
  AllWeights want3 = merged(base, {&a}, {3.0});
  to_model_order(want3);
  EXPECT_TRUE(w1.same_bytes(want3));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m1.m));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m2.m));
  EXPECT_TRUE(w1.same_bytes(original));
  EXPECT_TRUE(w2.same_bytes(original));
}

INSTANTIATE_TEST_SUITE_P(DtypesOrdersDensities, SparseApply,
                         ::testing::Values(Case{S2FT_F32, false, -1}, Case{S2FT_F32, false, 0.01},
                                           Case{S2FT_F32, false, 1.0}, Case{S2FT_F32, true, -1},
                                           Case{S2FT_F32, true, 0.01}, Case{S2FT_F32, true, 1.0},
                                           Case{S2FT_BF16, false, 0.01}, Case{S2FT_BF16, false, 1.0},
                                           Case{S2FT_BF16, true, -1}, Case{S2FT_BF16, true, 1.0},
                                           Case{S2FT_F16, false, -1}, Case{S2FT_F16, false, 1.0},
                                           Case{S2FT_F16, true, 0.01}, Case{S2FT_F16, true, 1.0}),
                         case_name);

// Random odd shapes (MHA and GQA), every dtype, base order and permuted,
// one entry / 1% / every free element: apply matches the reference, remove
// restores the bytes, switch equals remove-then-apply.
TEST(SparseApplyShapes, RandomOddShapes) {
  Random rng(500);
  Context cx;
  for (int round = 0; round < 6; ++round) {
    const int32_t n_kv = static_cast<int32_t>(1 + rng.below(3)), group = static_cast<int32_t>(1 + rng.below(3));
    const s2ft_model_shape shape{1 + static_cast<int32_t>(rng.below(2)), 3 + 2 * static_cast<int32_t>(rng.below(5)),
                                 n_kv * group, n_kv, 1 + 2 * static_cast<int32_t>(rng.below(2)),
                                 3 + 2 * static_cast<int32_t>(rng.below(6))};
    const int32_t dtype = round % 3 == 0 ? S2FT_F32 : round % 3 == 1 ? S2FT_BF16 : S2FT_F16;
    const double density = round % 3 == 0 ? -1.0 : round % 3 == 1 ? 0.01 : 1.0;
    SCOPED_TRACE("round " + std::to_string(round) + " dtype " + dtype_label(dtype));
    s2ft_selection *sel = nullptr;
    if (round % 2 == 1) {
      // Per layer: units[t] holds n_layers * n_units[t] indices.
      std::vector<int64_t> o, v, down, up;
      for (int32_t l = 0; l < shape.n_layers; ++l) {
        o.push_back(n_kv - 1);
        v.push_back(n_kv - 1);
        down.insert(down.end(), {int64_t{shape.d_ff} - 1, 0});
        up.push_back(1);
      }
      const int64_t *units[4] = {o.data(), v.data(), down.data(), up.data()};
      const int64_t n_units[4] = {1, 1, 2, 1};
      ASSERT_S2FT_OK(s2ft_selection_create(&shape, S2FT_HEADS_BY_GROUP, units, n_units, &sel));
    }
    const AllWeights base(shape, dtype, 501 + static_cast<uint64_t>(round));
    std::array<WeightSpec, 7> sa, sb;
    for (int32_t w : kWeights) {
      sa[static_cast<size_t>(w)].density = density;
      sb[static_cast<size_t>(w)].density = density;
    }
    sa[S2FT_WEIGHT_O].lines = {0};
    sa[S2FT_WEIGHT_DOWN].lines = {1};
    sb[S2FT_WEIGHT_UP].lines = {0, 2};
    sb[S2FT_WEIGHT_V].lines = {0};
    TestAdapter a, b;
    make_test_adapter(a, shape, sa, &base, 600 + static_cast<uint64_t>(round), "a");
    make_test_adapter(b, shape, sb, &base, 700 + static_cast<uint64_t>(round), "b");
    AllWeights w1(base), w2(base);
    if (sel != nullptr) {
      w1.permute(cx.ctx, sel, S2FT_PERMUTE_FORWARD);
      w2.permute(cx.ctx, sel, S2FT_PERMUTE_FORWARD);
    }
    const AllWeights original(w1);
    Model m1, m2;
    ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &shape, w1.layers.data(), sel, &m1.m));
    ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &shape, w2.layers.data(), sel, &m2.m));
    ASSERT_S2FT_OK(s2ft_adapter_apply(m1.m, a.a, 1.5, 0));
    AllWeights want = merged(base, {&a}, {1.5});
    if (sel != nullptr) want.permute(cx.ctx, sel, S2FT_PERMUTE_FORWARD);
    EXPECT_TRUE(w1.same_bytes(want));
    ASSERT_S2FT_OK(s2ft_adapter_switch(m1.m, b.a, -0.5, 0));
    ASSERT_S2FT_OK(s2ft_adapter_apply(m2.m, b.a, -0.5, 0));
    EXPECT_TRUE(w1.same_bytes(w2));
    ASSERT_S2FT_OK(s2ft_adapter_remove(m1.m));
    ASSERT_S2FT_OK(s2ft_adapter_remove(m2.m));
    EXPECT_TRUE(w1.same_bytes(original));
    EXPECT_TRUE(w2.same_bytes(original));
    s2ft_selection_destroy(sel);
  }
}

class SparseApplyChecks : public ::testing::TestWithParam<bool> {
 protected:
  Context cx;
  s2ft_selection *sel = nullptr;
  void SetUp() override {
    if (GetParam()) make_moving_selection(kShape, &sel);
  }
  void TearDown() override { s2ft_selection_destroy(sel); }
  void to_model_order(AllWeights &w) {
    if (sel != nullptr) w.permute(cx.ctx, sel, S2FT_PERMUTE_FORWARD);
  }
};

// The whole-weight fingerprint guards the base; FORCE applies anyway. It is
// checked against the base also while another adapter's lines and entries
// sit in the same weight (the CPU rebuilds the base from the saved bytes).
TEST_P(SparseApplyChecks, FingerprintMismatchIsFormatErrorUnlessForced) {
  const AllWeights base(kShape, S2FT_BF16, 60);
  std::array<WeightSpec, 7> s;
  s[S2FT_WEIGHT_K].density = 0.1;
  TestAdapter a;
  make_test_adapter(a, kShape, s, &base, 61, "a");
  AllWeights other(base);  // one element of layer 1's K differs (not one the adapter changes)
  const int64_t n = ta_free_element(a, 1, S2FT_WEIGHT_K);
  other.at(1, S2FT_WEIGHT_K).set(n / 13, n % 13, other.at(1, S2FT_WEIGHT_K).get(n / 13, n % 13) + 0.5f);
  AllWeights work(other);
  to_model_order(work);
  const AllWeights before(work);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), sel, &m.m));
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, 1.0, 0), S2FT_ERR_FORMAT, "fingerprint mismatch at layer 1 weight K");
  EXPECT_TRUE(work.same_bytes(before));
  EXPECT_S2FT_ERROR(s2ft_adapter_switch(m.m, a.a, 1.0, 0), S2FT_ERR_FORMAT, "S2FT_APPLY_FORCE");
  EXPECT_TRUE(work.same_bytes(before));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, 1.0, S2FT_APPLY_FORCE));
  AllWeights want = merged(other, {&a}, {1.0});
  to_model_order(want);
  EXPECT_TRUE(work.same_bytes(want));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  EXPECT_TRUE(work.same_bytes(before));
}

// The first fingerprint check of a weight happens while lines and sparse
// entries of another adapter are applied to it: the base is rebuilt from
// the saved bytes, so the check passes on the right base and fails on a
// wrong one.
TEST_P(SparseApplyChecks, FingerprintIsOfTheBaseWhileOtherEntriesAreApplied) {
  const AllWeights base(kShape, S2FT_F32, 70);
  std::array<WeightSpec, 7> sa, sb;
  sa[S2FT_WEIGHT_O].lines = {1, 6};
  sa[S2FT_WEIGHT_UP].lines = {0, 5};
  sa[S2FT_WEIGHT_DOWN].density = 0.3;
  sb[S2FT_WEIGHT_O].density = 0.3;
  sb[S2FT_WEIGHT_UP].density = 0.3;
  sb[S2FT_WEIGHT_DOWN].density = 0.3;
  TestAdapter a, b;
  make_test_adapter(a, kShape, sa, nullptr, 71, "a");  // no fingerprints: nothing computed on apply
  make_test_adapter(b, kShape, sb, &base, 72, "b");
  AllWeights work(base);
  to_model_order(work);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), sel, &m.m));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, 2.0, 0));
  ASSERT_S2FT_OK(s2ft_adapter_switch(m.m, b.a, 1.0, 0));
  AllWeights want = merged(base, {&b}, {1.0});
  to_model_order(want);
  EXPECT_TRUE(work.same_bytes(want));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));

  // The same on a base that differs where adapter A's line sits: refused.
  AllWeights other(base);
  const int64_t line = ta_line(a, 0, S2FT_WEIGHT_O);
  other.at(0, S2FT_WEIGHT_O).set(3, line, other.at(0, S2FT_WEIGHT_O).get(3, line) + 1.0f);
  AllWeights work2(other);
  to_model_order(work2);
  Model m2;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work2.layers.data(), sel, &m2.m));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m2.m, a.a, 2.0, 0));
  const AllWeights with_a(work2);
  EXPECT_S2FT_ERROR(s2ft_adapter_switch(m2.m, b.a, 1.0, 0), S2FT_ERR_FORMAT, "layer 0 weight O");
  EXPECT_TRUE(work2.same_bytes(with_a));
}

// A merge that could overflow the dtype is refused, forced or not, and
// nothing is written; the bound is max|W0| of the entry's row + |scale * delta|.
TEST_P(SparseApplyChecks, OverflowIsRefused) {
  const AllWeights base(kShape, S2FT_F16, 80);  // |W| <= 2
  std::array<WeightSpec, 7> s;
  s[S2FT_WEIGHT_GATE].density = 0.2;
  s[S2FT_WEIGHT_DOWN].lines = {2};
  TestAdapter a;
  make_test_adapter(a, kShape, s, &base, 81, "a", 0.5);
  AllWeights work(base);
  to_model_order(work);
  const AllWeights before(work);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), sel, &m.m));
  // |delta| <= 0.5: a scale of 2e5 reaches 1e5 > 65504.
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, 2e5, 0), S2FT_ERR_INVALID_ARGUMENT, "could overflow");
  EXPECT_TRUE(work.same_bytes(before));
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, 2e5, S2FT_APPLY_FORCE), S2FT_ERR_INVALID_ARGUMENT, "nothing was changed");
  EXPECT_TRUE(work.same_bytes(before));
  // Only sparse entries: the message names the entry.
  TestAdapter g;
  std::array<WeightSpec, 7> sg;
  sg[S2FT_WEIGHT_GATE].density = -1;
  make_test_adapter(g, kShape, sg, &base, 82, "g", 0.5);
  const TestEntry &te = g.at(0, S2FT_WEIGHT_GATE);
  const double scale = 70000.0 / std::fabs(te.values[0]);
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, g.a, scale, 0), S2FT_ERR_INVALID_ARGUMENT,
                    "layer 0 weight GATE sparse entry " + std::to_string(te.indices[0]));
  EXPECT_TRUE(work.same_bytes(before));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, 100.0, 0));  // in range
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  EXPECT_TRUE(work.same_bytes(before));
}

TEST_P(SparseApplyChecks, MissingWeightIsRefused) {
  AllWeights base(kShape, S2FT_F32, 90);
  std::array<WeightSpec, 7> s;
  s[S2FT_WEIGHT_Q].density = 0.1;
  TestAdapter a;
  make_test_adapter(a, kShape, s, &base, 91, "a");
  AllWeights work(base);
  to_model_order(work);
  std::vector<s2ft_layer_weights> layers = work.layers;
  layers[1].q = nullptr;
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, layers.data(), sel, &m.m));
  const AllWeights before(work);
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, 1.0, 0), S2FT_ERR_INVALID_ARGUMENT,
                    "sparse entries on layer 1 weight Q but the model was created without that weight (layers[1].q");
  EXPECT_TRUE(work.same_bytes(before));
  // The model hands back every weight it holds.
  s2ft_layer_weights got{};
  ASSERT_S2FT_OK(s2ft_model_layer(m.m, 0, &got));
  EXPECT_EQ(got.q->data, work.layers[0].q->data);
  EXPECT_EQ(got.gate->data, work.layers[0].gate->data);
  ASSERT_S2FT_OK(s2ft_model_layer(m.m, 1, &got));
  EXPECT_EQ(got.q, nullptr);
  // A model checks the weights it is given.
  std::vector<s2ft_layer_weights> bad = work.layers;
  HostMatrix wrong(S2FT_F32, 3, 3);
  bad[0].gate = &wrong.t;
  Model m2;
  EXPECT_S2FT_ERROR(s2ft_model_create(cx.ctx, &kShape, bad.data(), sel, &m2.m), S2FT_ERR_SHAPE, "layers[0].gate");
}

INSTANTIATE_TEST_SUITE_P(Orders, SparseApplyChecks, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool> &i) { return i.param ? "permuted" : "base_order"; });

// ---- fusion ---------------------------------------------------------------------------------

// Fusing: exact union per (layer, weight), sums in double rounded once, a
// sparse entry on a fused line folded into the line; fingerprints agree.
TEST(SparseFuse, ExactUnionFoldingAndFingerprints) {
  const AllWeights base(kShape, S2FT_F32, 100);
  std::array<WeightSpec, 7> sa, sb, sc;
  sa[S2FT_WEIGHT_DOWN].lines = {3};
  sa[S2FT_WEIGHT_DOWN].density = 0.3;
  sa[S2FT_WEIGHT_Q].density = 0.3;
  sa[S2FT_WEIGHT_UP].density = 0.2;
  sb[S2FT_WEIGHT_DOWN].density = 0.6;  // many on A's line 3 + layer
  sb[S2FT_WEIGHT_Q].density = 0.3;
  sb[S2FT_WEIGHT_UP].lines = {1, 4};
  sc[S2FT_WEIGHT_DOWN].lines = {5};
  sc[S2FT_WEIGHT_GATE].density = 0.1;
  TestAdapter a, b, c;
  make_test_adapter(a, kShape, sa, &base, 101, "a");
  make_test_adapter(b, kShape, sb, nullptr, 102, "b");  // fingerprint 0 defers to A's
  make_test_adapter(c, kShape, sc, &base, 103, "c");
  const double weights[3] = {0.5, -1.25, 2.0};
  const s2ft_adapter *ins[3] = {a.a, b.a, c.a};
  s2ft_adapter *fused = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_fuse(ins, weights, 3, &fused));
  const TestAdapter *tas[3] = {&a, &b, &c};
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t w : kWeights) {
      const int64_t rows = a.at(l, w).rows, cols = a.at(l, w).cols;
      // The union of lines, and the double sums of line and sparse contributions (as the library sums them).
      std::vector<int64_t> lines;
      std::vector<double> s_lines(static_cast<size_t>(rows * cols), 0.0), s_sparse(s_lines.size(), 0.0);
      std::vector<char> sparse_touched(s_lines.size(), 0);
      uint64_t fp = 0;
      for (int i = 0; i < 3; ++i) {
        const TestEntry &te = tas[i]->at(l, w);
        lines.insert(lines.end(), te.lines.begin(), te.lines.end());
        for (int64_t n = 0; n < rows * cols; ++n) {
          if (!te.touched[static_cast<size_t>(n)]) continue;
          const bool on_line = w < 4 && std::binary_search(te.lines.begin(), te.lines.end(), line_of(w, cols, n));
          (on_line ? s_lines : s_sparse)[static_cast<size_t>(n)] += weights[i] * te.dense[static_cast<size_t>(n)];
          if (!on_line) sparse_touched[static_cast<size_t>(n)] = 1;
        }
        if (!te.indices.empty() && te.fingerprint != 0) fp = te.fingerprint;
      }
      std::sort(lines.begin(), lines.end());
      lines.erase(std::unique(lines.begin(), lines.end()), lines.end());
      std::vector<int64_t> want_idx;
      std::vector<float> want_val;
      for (int64_t n = 0; n < rows * cols; ++n) {
        if (!sparse_touched[static_cast<size_t>(n)]) continue;
        if (w < 4 && std::binary_search(lines.begin(), lines.end(), line_of(w, cols, n))) continue;  // folded
        want_idx.push_back(n);
        want_val.push_back(static_cast<float>(s_sparse[static_cast<size_t>(n)]));
      }
      const ReadBack got = read_sparse(fused, l, w);
      EXPECT_EQ(got.indices, want_idx) << "layer " << l << " weight " << w;
      EXPECT_EQ(got.deltas, want_val) << "layer " << l << " weight " << w;
      EXPECT_EQ(got.fingerprint, want_idx.empty() ? 0u : fp);
      if (w >= 4) continue;
      int64_t k = 0;
      ASSERT_S2FT_OK(s2ft_adapter_lines(fused, l, w, nullptr, nullptr, 0, &k));
      ASSERT_EQ(k, static_cast<int64_t>(lines.size()));
      if (k == 0) continue;
      std::vector<int64_t> got_lines(static_cast<size_t>(k));
      ASSERT_S2FT_OK(s2ft_adapter_lines(fused, l, w, got_lines.data(), nullptr, k, &k));
      EXPECT_EQ(got_lines, lines);
      const int64_t len = line_length(kShape, w);
      HostMatrix d = by_columns(w) ? HostMatrix(S2FT_F32, len, k) : HostMatrix(S2FT_F32, k, len);
      ASSERT_S2FT_OK(s2ft_adapter_delta(fused, l, w, &d.t));
      for (int64_t j = 0; j < k; ++j)
        for (int64_t i = 0; i < len; ++i) {
          const int64_t r = by_columns(w) ? i : lines[static_cast<size_t>(j)], cc = by_columns(w) ? lines[static_cast<size_t>(j)] : i;
          const size_t n = static_cast<size_t>(r * cols + cc);
          EXPECT_EQ(by_columns(w) ? d.get(i, j) : d.get(j, i), static_cast<float>(s_lines[n] + s_sparse[n]))
              << "layer " << l << " weight " << w << " (" << r << ", " << cc << ")";
        }
    }
  // Folding happened: B has sparse entries on A's DOWN line in some layer.
  bool folded = false;
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int64_t n : b.at(l, S2FT_WEIGHT_DOWN).indices)
      folded = folded || line_of(S2FT_WEIGHT_DOWN, 11, n) == a.at(l, S2FT_WEIGHT_DOWN).lines[0];
  EXPECT_TRUE(folded);

  // Applying the fused adapter equals applying the inputs one after another
  // (in f32, up to the rounding of the sums).
  AllWeights w1(base), w2(base);
  Context cx;
  Model m1;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, w1.layers.data(), nullptr, &m1.m));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m1.m, fused, 1.0, 0));
  for (int i = 0; i < 3; ++i) {
    Model m;  // the previous result is this model's base: fingerprints differ, so FORCE
    ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, w2.layers.data(), nullptr, &m.m));
    ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, ins[i], weights[i], S2FT_APPLY_FORCE));
  }
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t w : kWeights)
      for (int64_t i = 0; i < w1.at(l, w).rows; ++i)
        for (int64_t j = 0; j < w1.at(l, w).cols; ++j) {
          const double x = w1.at(l, w).get(i, j), y = w2.at(l, w).get(i, j);
          EXPECT_NEAR(x, y, 4e-7 * std::max(1.0, std::fabs(y))) << "layer " << l << " weight " << w;
        }
  s2ft_adapter_destroy(fused);

  // Different nonzero fingerprints of one weight's sparse entries are refused.
  const AllWeights other(kShape, S2FT_F32, 104);
  TestAdapter d;
  make_test_adapter(d, kShape, sa, &other, 105, "d");
  const s2ft_adapter *bad[2] = {a.a, d.a};
  s2ft_adapter *out = reinterpret_cast<s2ft_adapter *>(0x1);
  EXPECT_S2FT_ERROR(s2ft_adapter_fuse(bad, nullptr, 2, &out), S2FT_ERR_INVALID_ARGUMENT, "different base");
  EXPECT_EQ(out, nullptr);
  // A fused sparse delta that overflows f32 is refused.
  TestAdapter big;
  std::array<WeightSpec, 7> sq;
  sq[S2FT_WEIGHT_Q].density = -1;
  make_test_adapter(big, kShape, sq, nullptr, 106, "big", 1.0);
  const s2ft_adapter *bigs[2] = {big.a, big.a};
  const double w_big = 2e38 / std::fabs(big.at(0, S2FT_WEIGHT_Q).values[0]);
  const double sign[2] = {w_big, w_big};
  EXPECT_S2FT_ERROR(s2ft_adapter_fuse(bigs, sign, 2, &out), S2FT_ERR_INVALID_ARGUMENT, "weight Q overflows f32");
}

// ---- the mixed forward and sparse deltas ------------------------------------------------------

// The f32 dense delta of test adapter `a` on (l, w), in base order.
HostMatrix dense_delta(const TestAdapter &a, int32_t l, int32_t w) {
  const TestEntry &te = a.at(l, w);
  HostMatrix d(S2FT_F32, te.rows, te.cols);
  for (int64_t n = 0; n < te.rows * te.cols; ++n) d.set(n / te.cols, n % te.cols, static_cast<float>(te.dense[static_cast<size_t>(n)]));
  return d;
}

// m permuted in place as weight w of a layer (s2ft_permute moves the bytes).
void permute_as(s2ft_context *ctx, const s2ft_selection *sel, int32_t layer, int32_t w, HostMatrix &m) {
  if (sel == nullptr) return;
  s2ft_layer_weights lw{};
  field(lw, w) = &m.t;
  ASSERT_S2FT_OK(s2ft_permute(ctx, sel, layer, &lw, S2FT_PERMUTE_FORWARD));
}

struct MixedCase {
  int32_t weight;
  bool permuted;
  int32_t dtype;
};

class SparseForwardMixed : public ::testing::TestWithParam<MixedCase> {};

TEST_P(SparseForwardMixed, MatchesFloat64DenseReference) {
  const MixedCase c = GetParam();
  Context cx;
  s2ft_selection *sel = nullptr;
  if (c.permuted) make_moving_selection(kShape, &sel);
  const int32_t layer = 1, w = c.weight;
  const AllWeights base(kShape, c.dtype, 200);
  std::array<WeightSpec, 7> sa, sb;
  sa[static_cast<size_t>(w)].density = 0.2;  // sparse only
  sb[static_cast<size_t>(w)].density = 0.1;  // mixed where the weight has lines
  if (w < 4) sb[static_cast<size_t>(w)].lines = {0, 2};
  TestAdapter a, b, none;
  make_test_adapter(a, kShape, sa, &base, 201, "a", 0.5, 0.5);
  make_test_adapter(b, kShape, sb, &base, 202, "b");
  make_test_adapter(none, kShape, std::array<WeightSpec, 7>{}, nullptr, 203, "none");
  HostMatrix W = base.at(layer, w);
  permute_as(cx.ctx, sel, layer, w, W);
  HostMatrix Da = dense_delta(a, layer, w), Db = dense_delta(b, layer, w);
  permute_as(cx.ctx, sel, layer, w, Da);
  permute_as(cx.ctx, sel, layer, w, Db);
  const int64_t T = 9, in = W.cols, out = W.rows;
  HostMatrix x(c.dtype, T, in), y(c.dtype, T, out);
  Random rng(204);
  x.fill_random(rng);
  y.poison();
  const s2ft_adapter *ads[3] = {a.a, b.a, none.a};
  const double scales[3] = {NAN, -2.0, 1.0};  // NaN: a's default scale 0.5
  const int64_t offsets[6] = {0, 2, 3, 5, 8, 9};
  const int32_t seg[5] = {0, -1, 1, 2, 0};
  ASSERT_S2FT_OK(s2ft_adapter_forward_mixed(cx.ctx, layer, w, &x.t, &W.t, sel, ads, scales, 3, offsets, seg, 5, &y.t));
  // float64 reference: y_t = x_t (W + s D)^T for the segment's adapter.
  const HostMatrix *D[3] = {&Da, &Db, nullptr};
  const double S[3] = {0.5, -2.0, 0.0};
  std::vector<double> want(static_cast<size_t>(T * out)), got(want.size());
  for (int j = 0; j < 5; ++j)
    for (int64_t t = offsets[j]; t < offsets[j + 1]; ++t)
      for (int64_t o = 0; o < out; ++o) {
        double acc = 0.0;
        for (int64_t i = 0; i < in; ++i) {
          double wv = W.get(o, i);
          if (seg[j] >= 0 && D[seg[j]] != nullptr) wv += S[seg[j]] * D[seg[j]]->get(o, i);
          acc += static_cast<double>(x.get(t, i)) * wv;
        }
        want[static_cast<size_t>(t * out + o)] = acc;
        got[static_cast<size_t>(t * out + o)] = y.get(t, o);
      }
  EXPECT_LT(rel_error(got, want), tolerance(c.dtype)) << "weight " << w;
  for (double v : got) ASSERT_TRUE(std::isfinite(v));
  // Each segment by itself (the sparse part is not lost among the others).
  for (int j = 0; j < 5; ++j) {
    std::vector<double> g, wv;
    for (int64_t t = offsets[j]; t < offsets[j + 1]; ++t)
      for (int64_t o = 0; o < out; ++o) {
        g.push_back(got[static_cast<size_t>(t * out + o)]);
        wv.push_back(want[static_cast<size_t>(t * out + o)]);
      }
    EXPECT_LT(rel_error(g, wv), tolerance(c.dtype)) << "segment " << j;
  }

  // The adapter's sparse delta (lines and sparse entries) gives the same term.
  for (int k = 0; k < 2; ++k) {
    s2ft_sparse_delta *sd = nullptr;
    ASSERT_S2FT_OK(s2ft_sparse_delta_from_adapter(cx.ctx, k == 0 ? a.a : b.a, layer, w, sel, &sd));
    int64_t r = 0, cc = 0, nnz = 0;
    ASSERT_S2FT_OK(s2ft_sparse_delta_info(sd, &r, &cc, &nnz));
    EXPECT_EQ(r, out);
    EXPECT_EQ(cc, in);
    int64_t want_nnz = 0;
    for (char t : (k == 0 ? a : b).at(layer, w).touched) want_nnz += t;
    EXPECT_EQ(nnz, want_nnz);
    HostMatrix y2(c.dtype, T, out);
    ASSERT_S2FT_OK(s2ft_sparse_delta_forward(cx.ctx, sd, 1.0, &x.t, &y2.t));
    std::vector<double> g2, w2;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t o = 0; o < out; ++o) {
        double acc = 0.0;
        for (int64_t i = 0; i < in; ++i) acc += static_cast<double>(x.get(t, i)) * (k == 0 ? Da : Db).get(o, i);
        w2.push_back(acc);
        g2.push_back(y2.get(t, o));
      }
    EXPECT_LT(rel_error(g2, w2), tolerance(c.dtype));
    s2ft_sparse_delta_destroy(sd);
  }
  s2ft_selection_destroy(sel);
}

std::vector<MixedCase> mixed_cases() {
  std::vector<MixedCase> out;
  for (int32_t w : kWeights)
    for (bool p : {false, true}) out.push_back(MixedCase{w, p, S2FT_F32});
  out.push_back(MixedCase{S2FT_WEIGHT_DOWN, true, S2FT_BF16});
  out.push_back(MixedCase{S2FT_WEIGHT_Q, false, S2FT_BF16});
  out.push_back(MixedCase{S2FT_WEIGHT_V, true, S2FT_F16});
  return out;
}

std::string mixed_name(const ::testing::TestParamInfo<MixedCase> &i) {
  static const char *const names[7] = {"O", "V", "DOWN", "UP", "Q", "K", "GATE"};
  return std::string(names[i.param.weight]) + (i.param.permuted ? "_permuted_" : "_base_") + dtype_label(i.param.dtype);
}

INSTANTIATE_TEST_SUITE_P(Weights, SparseForwardMixed, ::testing::ValuesIn(mixed_cases()), mixed_name);

// ---- PEFT export --------------------------------------------------------------------------------

TEST(SparseExportPeft, AdaptersWithSparseEntriesAreUnsupported) {
  std::array<WeightSpec, 7> s;
  s[S2FT_WEIGHT_O].lines = {1};
  s[S2FT_WEIGHT_GATE].density = 0.05;
  TestAdapter a;
  make_test_adapter(a, kShape, s, nullptr, 300, "mixed");
  const std::string dir = temp_path("peft");
  EXPECT_S2FT_ERROR(s2ft_adapter_export_peft(a.a, dir.c_str(), nullptr), S2FT_ERR_UNSUPPORTED,
                    "unstructured sparse entries (weights GATE)");
  EXPECT_NE(std::string(s2ft_last_error()).find("low-rank"), std::string::npos);
  std::ifstream probe(dir + "/adapter_config.json");
  EXPECT_FALSE(probe.good());  // nothing written
  // Without the sparse entries it exports.
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    ASSERT_S2FT_OK(s2ft_adapter_set_sparse(a.a, l, S2FT_WEIGHT_GATE, nullptr, 0, nullptr, nullptr));
  ASSERT_S2FT_OK(s2ft_adapter_export_peft(a.a, dir.c_str(), nullptr));
  std::remove((dir + "/adapter_config.json").c_str());
  std::remove((dir + "/adapter_model.safetensors").c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
