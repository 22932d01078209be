// Low-rank adapter entries (s2ft_adapter_set_low_rank, s2ft_adapter_set_sorsa
// and everything that reads them): set/get round trips and every error path,
// SORSA's update against float64 and end to end from s2ft_sorsa_init, the
// file format (version 4, hostile files), apply/remove/switch bit-exact
// against a float64 reference rounded once in f32, bf16 and f16 on
// base-order and permuted GQA models and beside lines and sparse entries of
// other adapters on the same weights, fingerprints, overflow refusal (the
// model unchanged, also when the refused switch started from a low-rank
// adapter), fusion (concatenated factors, lines folded in, sparse refused),
// PEFT export (rank k, B = scale b, A = a) and the refusals of the mixed
// forward and sparse deltas. References are the tests' own float64 loops.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"
#include "support/adapter_file_spec.hpp"
#include "support/low_rank_adapter.hpp"
#include "support/sparse_adapter.hpp"
#include "support/test_util.hpp"

using namespace s2ft_test;

namespace {

// GQA and odd sizes: 4 query heads over 2 KV heads of 3, d_model 13, d_ff 11.
const s2ft_model_shape kShape{2, 13, 4, 2, 3, 11};

std::string temp_path(const std::string &name) {
  return ::testing::TempDir() + "s2ft_low_rank_" + std::to_string(getpid()) + "_" + name;
}

void write_bytes(const std::string &path, const std::vector<uint8_t> &bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char *>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

using Model = s2ft_test::ModelOwner;

// Reads an entry back through the public API.
Factors read_low_rank(const s2ft_adapter *a, int32_t l, int32_t w, uint64_t *fingerprint = nullptr) {
  int64_t rank = -1;
  EXPECT_EQ(s2ft_adapter_low_rank(a, l, w, &rank, nullptr, nullptr, nullptr), S2FT_OK) << s2ft_last_error();
  int64_t rows, cols;
  full_shape(kShape, w, &rows, &cols);
  Factors f{HostMatrix(S2FT_F32, rows, rank), HostMatrix(S2FT_F32, rank, cols)};
  f.b.poison();
  f.a.poison();
  int64_t rank2 = -1;
  EXPECT_EQ(s2ft_adapter_low_rank(a, l, w, &rank2, &f.b.t, &f.a.t, fingerprint), S2FT_OK) << s2ft_last_error();
  EXPECT_EQ(rank2, rank);
  return f;
}

// ---- set and get ----------------------------------------------------------------------

TEST(LowRankAdapter, SetGetRoundTripOnEveryWeight) {
  const AllWeights base(kShape, S2FT_BF16, 1);
  TestAdapter ta;
  make_test_adapter(ta, kShape, {}, nullptr, 2, "rt");
  std::vector<std::vector<Factors>> made(static_cast<size_t>(kShape.n_layers));
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t w : kWeights) made[static_cast<size_t>(l)].push_back(add_low_rank(ta, l, w, 1 + (l + w) % 4, 10 + w, &base));
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (size_t i = 0; i < 7; ++i) {
      const int32_t w = kWeights[i];
      uint64_t fp = 0;
      const Factors got = read_low_rank(ta.a, l, w, &fp);
      EXPECT_EQ(got.b.bytes, made[static_cast<size_t>(l)][i].b.bytes) << "layer " << l << " weight " << w;
      EXPECT_EQ(got.a.bytes, made[static_cast<size_t>(l)][i].a.bytes);
      EXPECT_EQ(fp, weight_fingerprint(base.at(l, w)));
    }
  uint32_t mask = 0;
  int64_t entries = 0;
  ASSERT_S2FT_OK(s2ft_adapter_low_rank_info(ta.a, &mask, &entries));
  EXPECT_EQ(mask, 0x7fu);
  EXPECT_EQ(entries, 14);
  // Read back into bf16 (rounded); remove one entry; NULL base: fingerprint 0.
  HostMatrix b16(S2FT_BF16, 11, 1 + (1 + S2FT_WEIGHT_GATE) % 4);
  int64_t rank = 0;
  ASSERT_S2FT_OK(s2ft_adapter_low_rank(ta.a, 1, S2FT_WEIGHT_GATE, &rank, &b16.t, nullptr, nullptr));
  EXPECT_EQ(b16.get(3, 0), from_bf16(to_bf16(made[1][6].b.get(3, 0))));
  ASSERT_S2FT_OK(s2ft_adapter_set_low_rank(ta.a, 1, S2FT_WEIGHT_GATE, nullptr, nullptr, nullptr));
  ASSERT_S2FT_OK(s2ft_adapter_low_rank(ta.a, 1, S2FT_WEIGHT_GATE, &rank, nullptr, nullptr, nullptr));
  EXPECT_EQ(rank, 0);
  ASSERT_S2FT_OK(s2ft_adapter_low_rank_info(ta.a, &mask, &entries));
  EXPECT_EQ(entries, 13);
  HostMatrix b(S2FT_F32, 13, 2), a(S2FT_F32, 2, 12);
  Random rng(3);
  b.fill_random(rng);
  a.fill_random(rng);
  ASSERT_S2FT_OK(s2ft_adapter_set_low_rank(ta.a, 0, S2FT_WEIGHT_O, &b.t, &a.t, nullptr));
  uint64_t fp = 7;
  const Factors got = read_low_rank(ta.a, 0, S2FT_WEIGHT_O, &fp);
  EXPECT_EQ(fp, 0u);
  EXPECT_EQ(got.b.bytes, b.bytes);
}

TEST(LowRankAdapter, SetErrorsChangeNothing) {
  TestAdapter ta;
  make_test_adapter(ta, kShape, {}, nullptr, 2, "err");
  const AllWeights base(kShape, S2FT_F32, 4);
  const Factors keep = add_low_rank(ta, 0, S2FT_WEIGHT_Q, 2, 5, &base);  // [12, 2] x [2, 13]
  HostMatrix b(S2FT_F32, 12, 3), a(S2FT_F32, 3, 13), a_bad(S2FT_F32, 2, 13), b_rows(S2FT_F32, 11, 3);
  Random rng(6);
  b.fill_random(rng);
  a.fill_random(rng);
  a_bad.fill_random(rng);
  b_rows.fill_random(rng);
  s2ft_adapter *A = ta.a;
  EXPECT_S2FT_ERROR(s2ft_adapter_set_low_rank(nullptr, 0, S2FT_WEIGHT_Q, &b.t, &a.t, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "adapter");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_low_rank(A, 0, S2FT_WEIGHT_Q, &b.t, nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "a is NULL");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_low_rank(A, 0, S2FT_WEIGHT_Q, nullptr, &a.t, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "b is NULL");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_low_rank(A, 2, S2FT_WEIGHT_Q, &b.t, &a.t, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "layer");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_low_rank(A, 0, 7, &b.t, &a.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "weight");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_low_rank(A, 0, S2FT_WEIGHT_Q, &b.t, &a_bad.t, nullptr), S2FT_ERR_SHAPE, "a");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_low_rank(A, 0, S2FT_WEIGHT_Q, &b_rows.t, &a.t, nullptr), S2FT_ERR_SHAPE, "b");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_low_rank(A, 0, S2FT_WEIGHT_Q, &b.t, &a.t, &base.at(0, S2FT_WEIGHT_K).t),
                    S2FT_ERR_SHAPE, "base");
  HostMatrix b0(S2FT_F32, 12, 0), a0(S2FT_F32, 0, 13);
  EXPECT_S2FT_ERROR(s2ft_adapter_set_low_rank(A, 0, S2FT_WEIGHT_Q, &b0.t, &a0.t, nullptr), S2FT_ERR_SHAPE,
                    "at least 1");
  HostMatrix nan_b = b;
  nan_b.set(4, 1, NAN);
  EXPECT_S2FT_ERROR(s2ft_adapter_set_low_rank(A, 0, S2FT_WEIGHT_Q, &nan_b.t, &a.t, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "non-finite value at (row 4, column 1)");
  s2ft_tensor gpu = b.t;
  gpu.device.type = S2FT_DEVICE_CUDA;
  EXPECT_S2FT_ERROR(s2ft_adapter_set_low_rank(A, 0, S2FT_WEIGHT_Q, &gpu, &a.t, nullptr), S2FT_ERR_DEVICE, "CPU");
  int64_t rank = 0;
  EXPECT_S2FT_ERROR(s2ft_adapter_low_rank(A, 0, S2FT_WEIGHT_Q, nullptr, nullptr, nullptr, nullptr),
                    S2FT_ERR_INVALID_ARGUMENT, "rank");
  EXPECT_S2FT_ERROR(s2ft_adapter_low_rank(A, 0, S2FT_WEIGHT_K, &rank, &b.t, nullptr, nullptr), S2FT_ERR_STATE,
                    "no low-rank entry");
  EXPECT_S2FT_ERROR(s2ft_adapter_low_rank(A, 0, S2FT_WEIGHT_Q, &rank, &b.t, nullptr, nullptr), S2FT_ERR_SHAPE, "b");
  EXPECT_S2FT_ERROR(s2ft_adapter_low_rank_info(nullptr, nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT, "adapter");
  // Every failed call left the entry as it was.
  const Factors got = read_low_rank(A, 0, S2FT_WEIGHT_Q);
  EXPECT_EQ(got.b.bytes, keep.b.bytes);
  EXPECT_EQ(got.a.bytes, keep.a.bytes);

  // A low-rank entry owns its weight: no lines or sparse entries beside it, either way round.
  HostMatrix bo(S2FT_F32, 13, 1), ao(S2FT_F32, 1, 12), d(S2FT_F32, 13, 1);
  bo.fill_random(rng);
  ao.fill_random(rng);
  d.fill_random(rng);
  const int64_t line = 2, idx = 5;
  ASSERT_S2FT_OK(s2ft_adapter_set(A, 1, S2FT_TARGET_O, &line, 1, &d.t, nullptr));
  EXPECT_S2FT_ERROR(s2ft_adapter_set_low_rank(A, 1, S2FT_WEIGHT_O, &bo.t, &ao.t, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "structured entry");
  std::vector<float> v{0.5f};
  const int64_t shape1[1] = {1};
  s2ft_tensor vt{};
  ASSERT_S2FT_OK(s2ft_tensor_init(&vt, v.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 1, shape1));
  ASSERT_S2FT_OK(s2ft_adapter_set_sparse(A, 1, S2FT_WEIGHT_GATE, &idx, 1, &vt, nullptr));
  HostMatrix bg(S2FT_F32, 11, 1), ag(S2FT_F32, 1, 13);
  bg.fill_random(rng);
  ag.fill_random(rng);
  EXPECT_S2FT_ERROR(s2ft_adapter_set_low_rank(A, 1, S2FT_WEIGHT_GATE, &bg.t, &ag.t, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "sparse entries");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sparse(A, 0, S2FT_WEIGHT_Q, &idx, 1, &vt, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "low-rank entry");
  ASSERT_S2FT_OK(s2ft_adapter_set_low_rank(A, 0, S2FT_WEIGHT_O, &bo.t, &ao.t, nullptr));
  EXPECT_S2FT_ERROR(s2ft_adapter_set(A, 0, S2FT_TARGET_O, &line, 1, &d.t, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "low-rank entry");
}

// ---- SORSA ---------------------------------------------------------------------------------

TEST(LowRankSorsa, FactorsAreTheUpdateOfThePrincipalPart) {
  TestAdapter ta;
  make_test_adapter(ta, kShape, {}, nullptr, 2, "sorsa");
  const int64_t rows = 11, cols = 13, r = 3;  // gate_proj
  Random rng(9);
  HostMatrix u0(S2FT_F32, rows, r), u(S2FT_F32, rows, r), vt0(S2FT_F32, r, cols), vt(S2FT_F32, r, cols);
  HostMatrix s0(S2FT_F32, 1, r), s(S2FT_F32, 1, r);
  for (HostMatrix *m : {&u0, &u, &vt0, &vt}) m->fill_random(rng);
  for (HostMatrix *m : {&s0, &s}) m->fill_random(rng, 3.0);
  ASSERT_S2FT_OK(s2ft_adapter_set_sorsa(ta.a, 1, S2FT_WEIGHT_GATE, &u0.t, &s0.t, &vt0.t, &u.t, &s.t, &vt.t, nullptr));
  const Factors f = read_low_rank(ta.a, 1, S2FT_WEIGHT_GATE);
  ASSERT_EQ(f.b.cols, 2 * r);
  std::vector<double> got, want;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t c = 0; c < cols; ++c) {
      double g = 0.0, w = 0.0;
      for (int64_t j = 0; j < 2 * r; ++j) g += static_cast<double>(f.b.get(i, j)) * f.a.get(j, c);
      for (int64_t j = 0; j < r; ++j)
        w += static_cast<double>(u.get(i, j)) * s.get(0, j) * vt.get(j, c) -
             static_cast<double>(u0.get(i, j)) * s0.get(0, j) * vt0.get(j, c);
      got.push_back(g);
      want.push_back(w);
    }
  EXPECT_LT(rel_error(got, want), 1e-6);
  // b's columns are u s and -u0 s0 rounded once; a is [vt ; vt0] exactly.
  EXPECT_EQ(f.b.get(4, 1), static_cast<float>(static_cast<double>(u.get(4, 1)) * s.get(0, 1)));
  EXPECT_EQ(f.b.get(4, r + 2), static_cast<float>(-static_cast<double>(u0.get(4, 2)) * s0.get(0, 2)));
  EXPECT_EQ(f.a.get(2, 7), vt.get(2, 7));
  EXPECT_EQ(f.a.get(r + 2, 7), vt0.get(2, 7));
  // Errors: factor dtypes, ranks, lengths of s.
  HostMatrix u16(S2FT_BF16, rows, r), u_r(S2FT_F32, rows, r + 1), s_r(S2FT_F32, 1, r + 1);
  u16.fill_random(rng);
  u_r.fill_random(rng);
  s_r.fill_random(rng);
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sorsa(ta.a, 1, S2FT_WEIGHT_GATE, &u16.t, &s0.t, &vt0.t, &u.t, &s.t, &vt.t, nullptr),
                    S2FT_ERR_DTYPE, "u0 must be f32");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sorsa(ta.a, 1, S2FT_WEIGHT_GATE, &u0.t, &s0.t, &vt0.t, &u_r.t, &s.t, &vt.t, nullptr),
                    S2FT_ERR_SHAPE, "u0");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sorsa(ta.a, 1, S2FT_WEIGHT_GATE, &u0.t, &s_r.t, &vt0.t, &u.t, &s.t, &vt.t, nullptr),
                    S2FT_ERR_SHAPE, "s0");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sorsa(ta.a, 1, S2FT_WEIGHT_GATE, &u0.t, &s0.t, &vt0.t, &u.t, &s.t, &u.t, nullptr),
                    S2FT_ERR_SHAPE, "vt");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sorsa(ta.a, 1, S2FT_WEIGHT_GATE, nullptr, &s0.t, &vt0.t, &u.t, &s.t, &vt.t, nullptr),
                    S2FT_ERR_INVALID_ARGUMENT, "u0");
  // u diag(s) beyond f32's range: refused, and the entry set above is kept.
  HostMatrix s_big = s, u_big = u;
  s_big.set(0, 1, 3e38f);
  u_big.set(4, 1, 10.0f);
  EXPECT_S2FT_ERROR(s2ft_adapter_set_sorsa(ta.a, 1, S2FT_WEIGHT_GATE, &u0.t, &s0.t, &vt0.t, &u_big.t, &s_big.t, &vt.t,
                                           nullptr),
                    S2FT_ERR_INVALID_ARGUMENT, "not finite in f32 at row 4, column 1");
  EXPECT_EQ(read_low_rank(ta.a, 1, S2FT_WEIGHT_GATE).b.bytes, f.b.bytes);
}

// s2ft_sorsa_init splits W; "training" moves the factors; the SORSA adapter
// applied to the untouched W gives W_res + u diag(s) vt (up to f32
// rounding), and remove restores W bit-exactly.
TEST(LowRankSorsa, AppliedToTheBaseGivesTheTrainedLayer) {
  Context cx;
  const AllWeights base(kShape, S2FT_F32, 20);
  const int32_t l = 1, w = S2FT_WEIGHT_DOWN;  // [13, 11]
  const int64_t rows = 13, cols = 11, r = 4;
  HostMatrix res = base.at(l, w);
  HostMatrix u0(S2FT_F32, rows, r), s0(S2FT_F32, 1, r), vt0(S2FT_F32, r, cols);
  for (HostMatrix *m : {&u0, &s0, &vt0}) m->poison();
  ASSERT_S2FT_OK(s2ft_sorsa_init(cx.ctx, &res.t, static_cast<int32_t>(r), &u0.t, &s0.t, &vt0.t));
  HostMatrix u = u0, s = s0, vt = vt0;
  Random rng(21);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < r; ++j) u.set(i, j, u.get(i, j) + static_cast<float>(0.05 * rng.uniform()));
  for (int64_t j = 0; j < r; ++j) s.set(0, j, s.get(0, j) * static_cast<float>(1.0 + 0.1 * rng.uniform()));
  for (int64_t j = 0; j < r; ++j)
    for (int64_t c = 0; c < cols; ++c) vt.set(j, c, vt.get(j, c) + static_cast<float>(0.05 * rng.uniform()));
  AdapterOwner ad;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "sorsa", 1.0, &ad.a));
  ASSERT_S2FT_OK(s2ft_adapter_set_sorsa(ad.a, l, w, &u0.t, &s0.t, &vt0.t, &u.t, &s.t, &vt.t, &base.at(l, w).t));
  AllWeights work(base);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), nullptr, &m.m));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, ad.a, NAN, 0));
  std::vector<double> got, want;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t c = 0; c < cols; ++c) {
      double t = res.get(i, c);
      for (int64_t j = 0; j < r; ++j) t += static_cast<double>(u.get(i, j)) * s.get(0, j) * vt.get(j, c);
      got.push_back(work.at(l, w).get(i, c));
      want.push_back(t);
    }
  EXPECT_LT(rel_error(got, want), 1e-6);
  EXPECT_TRUE(work.at(l, S2FT_WEIGHT_O).bytes == base.at(l, S2FT_WEIGHT_O).bytes);  // nothing else moved
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  EXPECT_TRUE(work.same_bytes(base));
}

// ---- files ---------------------------------------------------------------------------------

TEST(LowRankFile, MixedAdapterRoundTripsBitExactly) {
  const AllWeights base(kShape, S2FT_F32, 30);
  TestAdapter ta;
  make_low_rank_adapter(ta, base, 31, "mixed");
  const std::string path = temp_path("mixed.safetensors");
  ASSERT_S2FT_OK(s2ft_adapter_save(ta.a, path.c_str()));
  AdapterOwner back;
  ASSERT_S2FT_OK(s2ft_adapter_load(path.c_str(), &back.a));
  const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(path);
  EXPECT_EQ(f.metadata().at("format_version"), "4");
  const nlohmann::json summary = nlohmann::json::parse(f.metadata().at("low_rank"));
  EXPECT_EQ(summary.size(), 8u);
  std::remove(path.c_str());
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t w : kWeights) {
      int64_t r1 = -1, r2 = -1;
      ASSERT_S2FT_OK(s2ft_adapter_low_rank(ta.a, l, w, &r1, nullptr, nullptr, nullptr));
      ASSERT_S2FT_OK(s2ft_adapter_low_rank(back.a, l, w, &r2, nullptr, nullptr, nullptr));
      ASSERT_EQ(r1, r2);
      if (r1 == 0) continue;
      uint64_t f1 = 0, f2 = 0;
      const Factors a1 = read_low_rank(ta.a, l, w, &f1), a2 = read_low_rank(back.a, l, w, &f2);
      EXPECT_EQ(a1.b.bytes, a2.b.bytes);
      EXPECT_EQ(a1.a.bytes, a2.a.bytes);
      EXPECT_EQ(f1, f2);
      EXPECT_NE(f1, 0u);
    }
  // Structured and sparse entries came back too.
  int64_t k = 0, count = 0;
  ASSERT_S2FT_OK(s2ft_adapter_lines(back.a, 0, S2FT_TARGET_UP, nullptr, nullptr, 0, &k));
  EXPECT_EQ(k, 3);
  ASSERT_S2FT_OK(s2ft_adapter_sparse(back.a, 1, S2FT_WEIGHT_K, nullptr, nullptr, 0, &count, nullptr));
  EXPECT_EQ(count, static_cast<int64_t>(ta.at(1, S2FT_WEIGHT_K).indices.size()));
}

TEST(LowRankFile, HostileFilesAreFormatErrors) {
  const AllWeights base(kShape, S2FT_F32, 32);
  TestAdapter ta;
  make_low_rank_adapter(ta, base, 33, "h");
  const Spec good = saved_spec(ta.a, temp_path("good.safetensors"));
  const std::string stem = "model.layers.1.mlp.down_proj", q = "model.layers.0.self_attn.q_proj";
  const auto expect_bad = [&](const Spec &s, const std::string &needle) {
    const std::string path = temp_path("bad.safetensors");
    write_bytes(path, s.serialize());
    s2ft_adapter *a = nullptr;
    EXPECT_S2FT_ERROR(s2ft_adapter_load(path.c_str(), &a), S2FT_ERR_FORMAT, needle);
    EXPECT_EQ(a, nullptr);
    s2ft_adapter_destroy(a);
    std::remove(path.c_str());
  };
  {
    const std::string path = temp_path("good2.safetensors");
    write_bytes(path, good.serialize());
    s2ft_adapter *a = nullptr;
    ASSERT_S2FT_OK(s2ft_adapter_load(path.c_str(), &a));
    s2ft_adapter_destroy(a);
    std::remove(path.c_str());
  }
  Spec s = good;
  s.find(stem + ".s2ft_low_rank_b").dtype = "F16";
  s.find(stem + ".s2ft_low_rank_b").bytes.resize(s.find(stem + ".s2ft_low_rank_b").bytes.size() / 2);
  expect_bad(s, "expected F32");
  s = good;
  s.erase(stem + ".s2ft_low_rank_a");
  expect_bad(s, "is missing");
  s = good;
  {
    Tensor &b = s.find(stem + ".s2ft_low_rank_b");  // [13, 2] -> [26, 1]
    b.shape = {26, 1};
  }
  expect_bad(s, "must have shape [13, k]");
  s = good;
  {
    Tensor &a = s.find(stem + ".s2ft_low_rank_a");  // [2, 11] -> [1, 22]
    a.shape = {1, 22};
  }
  expect_bad(s, "must have shape [2, 11]");
  s = good;
  {
    Tensor &a = s.find(q + ".s2ft_low_rank_a");
    const float inf = INFINITY;
    std::memcpy(a.bytes.data() + 4, &inf, 4);
  }
  expect_bad(s, "non-finite");
  s = good;
  s.meta["format_version"] = "3";
  expect_bad(s, "needs format version 4");
  s = good;
  s.meta["low_rank"] = "[]";
  expect_bad(s, "lists 0 entries but the file stores 8");
  s = good;
  {
    nlohmann::json j = nlohmann::json::parse(good.meta.at("low_rank"));
    j[0]["rank"] = 9;
    s.meta["low_rank"] = j.dump();
  }
  expect_bad(s, "gives rank = 9");
  s = good;
  {
    nlohmann::json j = nlohmann::json::parse(good.meta.at("low_rank"));
    j[1]["fingerprint"] = "0000000000000000";
    s.meta["low_rank"] = j.dump();
  }
  expect_bad(s, "inconsistent low_rank metadata");
  s = good;
  s.meta.erase("low_rank");
  expect_bad(s, "\"low_rank\"");
  // A low-rank entry beside the same weight's sparse entries or lines.
  s = good;
  {
    Tensor b = s.find(q + ".s2ft_low_rank_b"), a = s.find(q + ".s2ft_low_rank_a"),
           fp = s.find(q + ".s2ft_low_rank_base_fingerprint");
    const std::string k = "model.layers.0.self_attn.k_proj";
    for (Tensor *t : {&b, &a, &fp}) t->name.replace(0, q.size(), k);
    b.shape[0] = 6;
    b.bytes.resize(static_cast<size_t>(6 * b.shape[1] * 4));
    s.tensors.push_back(b);
    s.tensors.push_back(a);
    s.tensors.push_back(fp);
    nlohmann::json j = nlohmann::json::parse(good.meta.at("low_rank"));
    j.push_back({{"tensor", k}, {"weight", "K"}, {"rank", b.shape[1]}, {"fingerprint", j[0]["fingerprint"]}});
    s.meta["low_rank"] = j.dump();
  }
  expect_bad(s, "also stores sparse entries");
}

// ---- apply, remove, switch -----------------------------------------------------------------

struct Case {
  int32_t dtype;
  bool permuted;
};
std::string case_name(const ::testing::TestParamInfo<Case> &i) {
  return std::string(dtype_label(i.param.dtype)) + (i.param.permuted ? "_permuted" : "_base");
}

class LowRankApply : public ::testing::TestWithParam<Case> {
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
  AllWeights want(const AllWeights &base, const TestAdapter &a, double scale) {
    AllWeights w = merged(base, {&a}, {scale});
    to_model_order(w);
    return w;
  }
};

TEST_P(LowRankApply, ApplyMatchesRoundedFloat64AndRemoveRestoresBytes) {
  const AllWeights base(kShape, GetParam().dtype, 40);
  TestAdapter a;
  make_low_rank_adapter(a, base, 41, "a");
  AllWeights work(base);
  to_model_order(work);
  const AllWeights before(work);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), sel, &m.m));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, 0.75, 0));
  const AllWeights w75 = want(base, a, 0.75);
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t w : kWeights)
      for (int64_t i = 0; i < w75.at(l, w).rows; ++i)
        for (int64_t j = 0; j < w75.at(l, w).cols; ++j)
          ASSERT_EQ(work.at(l, w).get(i, j), w75.at(l, w).get(i, j))
              << "layer " << l << " weight " << w << " (" << i << ", " << j << ")";
  EXPECT_TRUE(work.same_bytes(w75));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  EXPECT_TRUE(work.same_bytes(before));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, NAN, 0));
  EXPECT_TRUE(work.same_bytes(want(base, a, 1.0)));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  EXPECT_TRUE(work.same_bytes(before));
}

// Switching between a low-rank adapter and adapters with lines or sparse
// entries on the same weights (and back, and to itself at another scale)
// equals remove-then-apply byte for byte.
TEST_P(LowRankApply, SwitchIsBitIdenticalToRemoveThenApply) {
  const AllWeights base(kShape, GetParam().dtype, 50);
  TestAdapter a, b, c;
  make_low_rank_adapter(a, base, 51, "a");
  std::array<WeightSpec, 7> sb;  // lines on O and DOWN, sparse on Q and GATE: a's low-rank weights
  sb[S2FT_WEIGHT_O].lines = {0, 4, 5, 11};
  sb[S2FT_WEIGHT_DOWN].lines = {3, 7};
  sb[S2FT_WEIGHT_Q].density = 0.1;
  sb[S2FT_WEIGHT_GATE].density = -1;
  make_test_adapter(b, kShape, sb, &base, 52, "b");
  std::array<WeightSpec, 7> sc;  // another low-rank adapter with lines on V
  sc[S2FT_WEIGHT_V].lines = {3};
  make_test_adapter(c, kShape, sc, &base, 53, "c");
  for (int32_t l = 0; l < kShape.n_layers; ++l) {
    add_low_rank(c, l, S2FT_WEIGHT_O, 2, 530 + static_cast<uint64_t>(l), &base);
    add_low_rank(c, l, S2FT_WEIGHT_K, 1, 540 + static_cast<uint64_t>(l), &base);
  }
  AllWeights w1(base), w2(base);
  to_model_order(w1);
  to_model_order(w2);
  const AllWeights original(w1);
  Model m1, m2;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, w1.layers.data(), sel, &m1.m));
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, w2.layers.data(), sel, &m2.m));
  const TestAdapter *order[] = {&a, &b, &a, &c, &b, &c, &a, &a};
  const double scales[] = {0.5, -2.0, 1.5, 0.25, 1.0, -1.0, 0.5, 3.0};
  for (size_t i = 0; i < 8; ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    ASSERT_S2FT_OK(s2ft_adapter_switch(m1.m, order[i]->a, scales[i], 0));
    if (i > 0) ASSERT_S2FT_OK(s2ft_adapter_remove(m2.m));
    ASSERT_S2FT_OK(s2ft_adapter_apply(m2.m, order[i]->a, scales[i], 0));
    EXPECT_TRUE(w1.same_bytes(w2));
    EXPECT_TRUE(w1.same_bytes(want(base, *order[i], scales[i])));
  }
  ASSERT_S2FT_OK(s2ft_adapter_remove(m1.m));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m2.m));
  EXPECT_TRUE(w1.same_bytes(original));
  EXPECT_TRUE(w2.same_bytes(original));
}

INSTANTIATE_TEST_SUITE_P(DtypesOrders, LowRankApply,
                         ::testing::Values(Case{S2FT_F32, false}, Case{S2FT_F32, true}, Case{S2FT_BF16, false},
                                           Case{S2FT_BF16, true}, Case{S2FT_F16, false}, Case{S2FT_F16, true}),
                         case_name);

TEST(LowRankApplyChecks, FingerprintMismatchIsFormatErrorUnlessForced) {
  Context cx;
  const AllWeights base(kShape, S2FT_BF16, 60), other(kShape, S2FT_BF16, 61);
  TestAdapter a;
  make_test_adapter(a, kShape, {}, &base, 62, "a");
  add_low_rank(a, 1, S2FT_WEIGHT_GATE, 2, 63, &other);  // made against another base
  AllWeights work(base);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), nullptr, &m.m));
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, 1.0, 0), S2FT_ERR_FORMAT, "layer 1 weight GATE");
  EXPECT_TRUE(work.same_bytes(base));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, 1.0, S2FT_APPLY_FORCE));
  EXPECT_TRUE(work.same_bytes(merged(base, {&a}, {1.0})));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  EXPECT_TRUE(work.same_bytes(base));
}

// A refused switch leaves the model exactly as it was, also when the old
// adapter's low-rank weights had been put back to base for planning.
TEST(LowRankApplyChecks, OverflowIsRefusedAndTheModelIsUnchanged) {
  Context cx;
  const AllWeights base(kShape, S2FT_F16, 70, 1000.0);
  TestAdapter small, big, lines;
  make_test_adapter(small, kShape, {}, &base, 71, "small");
  for (int32_t l = 0; l < kShape.n_layers; ++l) add_low_rank(small, l, S2FT_WEIGHT_O, 2, 72 + static_cast<uint64_t>(l), &base);
  make_test_adapter(big, kShape, {}, &base, 73, "big");
  add_low_rank(big, 1, S2FT_WEIGHT_UP, 3, 74, &base, 1e6);
  std::array<WeightSpec, 7> so;  // lines on O (where small has its low-rank entries) and a huge sparse entry
  so[S2FT_WEIGHT_O].lines = {2};
  so[S2FT_WEIGHT_Q].density = -1;
  make_test_adapter(lines, kShape, so, &base, 75, "lines", 1e6);
  AllWeights work(base);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), nullptr, &m.m));
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, big.a, 1.0, 0), S2FT_ERR_INVALID_ARGUMENT, "low-rank entry, base row");
  EXPECT_TRUE(work.same_bytes(base));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, small.a, 1.0, 0));
  const AllWeights applied(work);
  EXPECT_TRUE(applied.same_bytes(merged(base, {&small}, {1.0})));
  EXPECT_S2FT_ERROR(s2ft_adapter_switch(m.m, big.a, 1.0, 0), S2FT_ERR_INVALID_ARGUMENT, "could overflow");
  EXPECT_TRUE(work.same_bytes(applied));
  EXPECT_S2FT_ERROR(s2ft_adapter_switch(m.m, lines.a, 1.0, 0), S2FT_ERR_INVALID_ARGUMENT, "could overflow");
  EXPECT_TRUE(work.same_bytes(applied));
  const s2ft_adapter *now = nullptr;
  ASSERT_S2FT_OK(s2ft_model_applied(m.m, &now, nullptr));
  EXPECT_EQ(now, small.a);
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  EXPECT_TRUE(work.same_bytes(base));
}

TEST(LowRankApplyChecks, MissingWeightIsRefused) {
  Context cx;
  const AllWeights base(kShape, S2FT_F32, 80);
  TestAdapter a;
  make_test_adapter(a, kShape, {}, &base, 81, "a");
  add_low_rank(a, 0, S2FT_WEIGHT_K, 1, 82, &base);
  AllWeights work(base);
  work.layers[0].k = nullptr;
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), nullptr, &m.m));
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, 1.0, 0), S2FT_ERR_INVALID_ARGUMENT, "layers[0].k was NULL");
}

// ---- fuse ----------------------------------------------------------------------------------

TEST(LowRankFuse, ConcatenatesFactorsAndFoldsLines) {
  const AllWeights base(kShape, S2FT_F32, 90);
  TestAdapter a, b;
  make_test_adapter(a, kShape, {}, &base, 91, "a");
  const Factors fa = add_low_rank(a, 0, S2FT_WEIGHT_O, 2, 92, &base);
  add_low_rank(a, 1, S2FT_WEIGHT_Q, 3, 93, &base);
  std::array<WeightSpec, 7> sb;
  sb[S2FT_WEIGHT_O].lines = {1, 6};  // folded into a's low-rank entry on layer 0 O
  sb[S2FT_WEIGHT_UP].lines = {4};    // no low-rank entry on UP: stays a line
  make_test_adapter(b, kShape, sb, &base, 94, "b");
  const Factors fb = add_low_rank(b, 1, S2FT_WEIGHT_Q, 1, 95, &base);
  AdapterOwner fused;
  const s2ft_adapter *in[2] = {a.a, b.a};
  const double weights[2] = {0.5, -2.0};
  ASSERT_S2FT_OK(s2ft_adapter_fuse(in, weights, 2, &fused.a));
  int64_t k = 0;
  ASSERT_S2FT_OK(s2ft_adapter_low_rank(fused.a, 0, S2FT_WEIGHT_O, &k, nullptr, nullptr, nullptr));
  EXPECT_EQ(k, 2 + 2);  // a's rank 2 and b's two lines
  ASSERT_S2FT_OK(s2ft_adapter_lines(fused.a, 0, S2FT_TARGET_O, nullptr, nullptr, 0, &k));
  EXPECT_EQ(k, 0);
  ASSERT_S2FT_OK(s2ft_adapter_lines(fused.a, 1, S2FT_TARGET_O, nullptr, nullptr, 0, &k));
  EXPECT_EQ(k, 2);  // no low-rank entry on layer 1 O: b's lines stay lines
  ASSERT_S2FT_OK(s2ft_adapter_lines(fused.a, 0, S2FT_TARGET_UP, nullptr, nullptr, 0, &k));
  EXPECT_EQ(k, 1);
  const Factors q = read_low_rank(fused.a, 1, S2FT_WEIGHT_Q);
  ASSERT_EQ(q.b.cols, 4);
  EXPECT_EQ(q.b.get(5, 3), static_cast<float>(-2.0 * fb.b.get(5, 0)));
  EXPECT_EQ(q.a.get(3, 7), fb.a.get(0, 7));
  const Factors o = read_low_rank(fused.a, 0, S2FT_WEIGHT_O);
  EXPECT_EQ(o.b.get(2, 1), static_cast<float>(0.5 * fa.b.get(2, 1)));
  // The fused delta is 0.5 a + (-2) b everywhere, to f32 rounding.
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t w : kWeights) {
      const TestEntry &ea = a.at(l, w), &eb = b.at(l, w);
      std::vector<double> want(ea.dense.size());
      for (size_t n = 0; n < want.size(); ++n) want[n] = 0.5 * ea.dense[n] - 2.0 * eb.dense[n];
      int64_t rank = 0;
      ASSERT_S2FT_OK(s2ft_adapter_low_rank(fused.a, l, w, &rank, nullptr, nullptr, nullptr));
      if (rank == 0) continue;
      const Factors f = read_low_rank(fused.a, l, w);
      std::vector<double> got(want.size());
      for (int64_t r = 0; r < ea.rows; ++r)
        for (int64_t c = 0; c < ea.cols; ++c)
          for (int64_t j = 0; j < rank; ++j)
            got[static_cast<size_t>(r * ea.cols + c)] += static_cast<double>(f.b.get(r, j)) * f.a.get(j, c);
      EXPECT_LT(rel_error(got, want), 1e-6) << "layer " << l << " weight " << w;
    }
  // Applying the fused adapter equals applying the two in turn, to rounding.
  Context cx;
  AllWeights work(base);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), nullptr, &m.m));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, fused.a, NAN, 0));
  const AllWeights seq = merged(base, {&a, &b}, {0.5, -2.0});
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t w : kWeights) {
      const std::vector<double> g = work.at(l, w).to_double(), s = seq.at(l, w).to_double();
      EXPECT_LT(rel_error(g, s), 1e-6);
    }
}

TEST(LowRankFuse, RefusesSparseBesideLowRankAndConflictingBases) {
  const AllWeights base(kShape, S2FT_F32, 100), other(kShape, S2FT_F32, 101);
  TestAdapter a, b, c;
  make_test_adapter(a, kShape, {}, &base, 102, "a");
  add_low_rank(a, 0, S2FT_WEIGHT_GATE, 2, 103, &base);
  std::array<WeightSpec, 7> sb;
  sb[S2FT_WEIGHT_GATE].density = -1;
  make_test_adapter(b, kShape, sb, &base, 104, "b");
  make_test_adapter(c, kShape, {}, &other, 105, "c");
  add_low_rank(c, 0, S2FT_WEIGHT_GATE, 1, 106, &other);
  s2ft_adapter *out = nullptr;
  const s2ft_adapter *ab[2] = {a.a, b.a}, *ac[2] = {a.a, c.a};
  EXPECT_S2FT_ERROR(s2ft_adapter_fuse(ab, nullptr, 2, &out), S2FT_ERR_UNSUPPORTED, "no exact factored form");
  EXPECT_EQ(out, nullptr);
  EXPECT_S2FT_ERROR(s2ft_adapter_fuse(ac, nullptr, 2, &out), S2FT_ERR_INVALID_ARGUMENT, "different base");
  EXPECT_EQ(out, nullptr);
  // A weight that takes w b out of f32's range.
  const s2ft_adapter *aa[1] = {a.a};
  const double huge[1] = {1e39};
  EXPECT_S2FT_ERROR(s2ft_adapter_fuse(aa, huge, 1, &out), S2FT_ERR_INVALID_ARGUMENT, "overflows f32");
  EXPECT_EQ(out, nullptr);
}

// ---- export and the paths that do not take low-rank entries --------------------------------

TEST(LowRankExportPeft, ModulesOfRankKWithScaledB) {
  const AllWeights base(kShape, S2FT_F32, 110);
  TestAdapter a;
  std::array<WeightSpec, 7> s;
  s[S2FT_WEIGHT_V].lines = {1, 4};
  make_test_adapter(a, kShape, s, &base, 111, "exp");
  const Factors fq = add_low_rank(a, 1, S2FT_WEIGHT_Q, 3, 112, &base);
  const Factors fg = add_low_rank(a, 0, S2FT_WEIGHT_GATE, 1, 113, &base);
  const std::string dir = temp_path("peft");
  s2ft_peft_export_options o;
  ASSERT_S2FT_OK(s2ft_peft_export_options_init(&o, S2FT_PEFT_EXPORT_OPTIONS_VERSION));
  o.scale = 0.75;
  ASSERT_S2FT_OK(s2ft_adapter_export_peft(a.a, dir.c_str(), &o));
  const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(dir + "/adapter_model.safetensors");
  const auto tensor = [&](const std::string &name) -> const s2ft::io::TensorInfo & {
    for (const auto &t : f.tensors())
      if (t.name == name) return t;
    ADD_FAILURE() << "no " << name;
    return f.tensors()[0];
  };
  const std::string pq = "base_model.model.model.layers.1.self_attn.q_proj";
  const auto &bq = tensor(pq + ".lora_B.weight"), &aq = tensor(pq + ".lora_A.weight");
  EXPECT_EQ(bq.shape, (std::vector<int64_t>{12, 3}));
  EXPECT_EQ(aq.shape, (std::vector<int64_t>{3, 13}));
  const float *b = reinterpret_cast<const float *>(f.data(bq));
  const float *av = reinterpret_cast<const float *>(f.data(aq));
  for (int64_t r = 0; r < 12; ++r)
    for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(b[r * 3 + j], static_cast<float>(0.75 * fq.b.get(r, j)));
  for (int64_t j = 0; j < 3; ++j)
    for (int64_t c = 0; c < 13; ++c) EXPECT_EQ(av[j * 13 + c], fq.a.get(j, c));
  const auto &ag = tensor("base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight");
  EXPECT_EQ(ag.shape, (std::vector<int64_t>{1, 13}));
  EXPECT_EQ(reinterpret_cast<const float *>(f.data(ag))[5], fg.a.get(0, 5));
  std::ifstream cf(dir + "/adapter_config.json");
  const nlohmann::json config = nlohmann::json::parse(cf);
  EXPECT_EQ(config["rank_pattern"]["layers.1.self_attn.q_proj"], 3);
  EXPECT_EQ(config["alpha_pattern"]["layers.0.mlp.gate_proj"], 1);
  EXPECT_EQ(config["rank_pattern"]["layers.0.self_attn.v_proj"], 2);
  EXPECT_EQ(config["target_modules"].size(), 2u * 1 + 2);  // v on both layers, q, gate
  std::remove((dir + "/adapter_model.safetensors").c_str());
  std::remove((dir + "/adapter_config.json").c_str());
  ::rmdir(dir.c_str());
  // A scale that takes scale * b out of f32's range: refused, nothing written.
  for (int32_t l = 0; l < kShape.n_layers; ++l)  // only the low-rank entries left
    ASSERT_S2FT_OK(s2ft_adapter_set(a.a, l, S2FT_TARGET_V, nullptr, 0, nullptr, nullptr));
  o.scale = 1e39;
  EXPECT_S2FT_ERROR(s2ft_adapter_export_peft(a.a, dir.c_str(), &o), S2FT_ERR_INVALID_ARGUMENT,
                    "the delta of model.layers.0.mlp.gate_proj overflows f32");
  std::ifstream none(dir + "/adapter_model.safetensors");
  EXPECT_FALSE(none.good());
  std::remove((dir + "/adapter_config.json").c_str());
  ::rmdir(dir.c_str());
}

TEST(LowRankUnsupported, MixedForwardAndSparseDeltaRefuse) {
  Context cx;
  const AllWeights base(kShape, S2FT_F32, 120);
  TestAdapter a;
  make_test_adapter(a, kShape, {}, &base, 121, "a");
  add_low_rank(a, 0, S2FT_WEIGHT_DOWN, 2, 122, &base);
  s2ft_sparse_delta *d = nullptr;
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_from_adapter(cx.ctx, a.a, 0, S2FT_WEIGHT_DOWN, nullptr, &d), S2FT_ERR_UNSUPPORTED,
                    "low-rank");
  EXPECT_EQ(d, nullptr);
  HostMatrix x(S2FT_F32, 2, 11), y(S2FT_F32, 2, 13);
  Random rng(123);
  x.fill_random(rng);
  const int64_t offsets[2] = {0, 2};
  const int32_t seg[1] = {0};
  const s2ft_adapter *ads[1] = {a.a};
  EXPECT_S2FT_ERROR(s2ft_adapter_forward_mixed(cx.ctx, 0, S2FT_WEIGHT_DOWN, &x.t, &base.at(0, S2FT_WEIGHT_DOWN).t, nullptr,
                                               ads, nullptr, 1, offsets, seg, 1, &y.t),
                    S2FT_ERR_UNSUPPORTED, "low-rank entry");
}

}  // namespace
