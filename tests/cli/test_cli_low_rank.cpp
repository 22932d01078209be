// The CLI on low-rank (SORSA) adapters made through the C API: `inspect`
// lists their ranks, `merge` writes base + b a rounded once (checked
// against the test's own float64 sums), another base is refused unless
// forced, and `export --format peft` writes one module of rank 2r per SORSA
// entry with lora_B = b and lora_A = a.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli/cli_test_util.hpp"
#include "cli/tiny_model.hpp"
#include "io/safetensors.hpp"
#include "support/test_util.hpp"

using namespace cli_test;

namespace {

const s2ft_model_shape kTinyShape{static_cast<int32_t>(kLayers), static_cast<int32_t>(kD), static_cast<int32_t>(kHeads),
                                  static_cast<int32_t>(kKv),     static_cast<int32_t>(kHd), static_cast<int32_t>(kFf)};

// The F32 values of a tensor of the tiny model written with `seed`.
s2ft_test::HostMatrix tiny_weight(const std::string &name, uint64_t seed, int64_t rows, int64_t cols) {
  for (const RawTensor &t : tiny_tensors("F32", seed, false))
    if (t.name == name) {
      s2ft_test::HostMatrix m(S2FT_F32, rows, cols);
      std::memcpy(m.bytes.data(), t.bytes.data(), t.bytes.size());
      return m;
    }
  ADD_FAILURE() << "no tensor " << name;
  return s2ft_test::HostMatrix(S2FT_F32, rows, cols);
}

struct Sorsa {
  s2ft_test::HostMatrix u0, s0, vt0, u, s, vt;
};

// Random SORSA factors of rank r for a [rows, cols] weight.
Sorsa random_sorsa(int64_t rows, int64_t cols, int64_t r, uint64_t seed) {
  s2ft_test::Random rng(seed);
  Sorsa f{s2ft_test::HostMatrix(S2FT_F32, rows, r), s2ft_test::HostMatrix(S2FT_F32, 1, r),
          s2ft_test::HostMatrix(S2FT_F32, r, cols), s2ft_test::HostMatrix(S2FT_F32, rows, r),
          s2ft_test::HostMatrix(S2FT_F32, 1, r),    s2ft_test::HostMatrix(S2FT_F32, r, cols)};
  for (s2ft_test::HostMatrix *m : {&f.u0, &f.s0, &f.vt0, &f.u, &f.s, &f.vt}) m->fill_random(rng, 0.5);
  return f;
}

TEST(CliLowRank, InspectMergeAndExportSorsaAdapters) {
  TempDir tmp;
  const std::string base = tmp / "base", adapter = tmp / "sorsa.safetensors";
  write_tiny(base, Layout{"F32", 1, false}, 3);
  const std::string q1 = "model.layers.1.self_attn.q_proj.weight", d0 = "model.layers.0.mlp.down_proj.weight";
  const s2ft_test::HostMatrix wq = tiny_weight(q1, 3, kHeads * kHd, kD), wd = tiny_weight(d0, 3, kD, kFf);
  const Sorsa fq = random_sorsa(kHeads * kHd, kD, 2, 5), fd = random_sorsa(kD, kFf, 3, 6);
  {
    s2ft_test::AdapterOwner a;
    ASSERT_S2FT_OK(s2ft_adapter_create(&kTinyShape, "sorsa", 1.0, &a.a));
    ASSERT_S2FT_OK(s2ft_adapter_set_sorsa(a.a, 1, S2FT_WEIGHT_Q, &fq.u0.t, &fq.s0.t, &fq.vt0.t, &fq.u.t, &fq.s.t,
                                          &fq.vt.t, &wq.t));
    ASSERT_S2FT_OK(s2ft_adapter_set_sorsa(a.a, 0, S2FT_WEIGHT_DOWN, &fd.u0.t, &fd.s0.t, &fd.vt0.t, &fd.u.t, &fd.s.t,
                                          &fd.vt.t, &wd.t));
    ASSERT_S2FT_OK(s2ft_adapter_save(a.a, adapter.c_str()));
  }

  RunResult r = run_cli("inspect " + quote(adapter));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("low-rank entries: 2 (weights down,q), rank per layer:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("    layer 1:  down 0  q 4\n"), std::string::npos) << r.out;
  const int64_t params = 4 * (kHeads * kHd + kD) + 6 * (kD + kFf);
  EXPECT_NE(r.out.find("low-rank factor parameters: " + std::to_string(params) + "\n"), std::string::npos) << r.out;

  // merge: W + (u s vt - u0 s0 vt0) with b = [u s | -u0 s0] rounded to f32,
  // summed in double in the order of b's columns and rounded once.
  const std::string merged = tmp / "merged";
  r = run_cli("merge " + quote(base) + " " + quote(adapter) + " -o " + quote(merged));
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto got = folder_tensors(merged), was = folder_tensors(base);
  for (const auto &[name, bytes] : was)
    if (name != q1 && name != d0) {
      EXPECT_EQ(got.at(name), bytes) << name;
    }
  const auto expect_merged = [&](const std::string &name, const s2ft_test::HostMatrix &w, const Sorsa &f) {
    const int64_t rows = w.rows, cols = w.cols, rk = f.u.cols;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t c = 0; c < cols; ++c) {
        double sum = 0.0;
        for (int64_t j = 0; j < rk; ++j)
          sum += static_cast<double>(static_cast<float>(static_cast<double>(f.u.get(i, j)) * f.s.get(0, j))) * f.vt.get(j, c);
        for (int64_t j = 0; j < rk; ++j)
          sum += static_cast<double>(static_cast<float>(-static_cast<double>(f.u0.get(i, j)) * f.s0.get(0, j))) *
                 f.vt0.get(j, c);
        const float want = static_cast<float>(static_cast<double>(w.get(i, c)) + sum);
        ASSERT_EQ(f32_at(got.at(name), static_cast<size_t>(i * cols + c)), want) << name << " (" << i << ", " << c << ")";
      }
  };
  expect_merged(q1, wq, fq);
  expect_merged(d0, wd, fd);

  // Another base is refused, unless forced.
  const std::string other = tmp / "other";
  write_tiny(other, Layout{"F32", 1, false}, 4);
  expect_one_line_error(run_cli("merge " + quote(other) + " " + quote(adapter) + " -o " + quote(tmp / "no")), "merge",
                        "--force");
  ASSERT_EQ(run_cli("merge " + quote(other) + " " + quote(adapter) + " --force -o " + quote(tmp / "forced")).rc, 0);

  // export: one module of rank 2r per entry, lora_B = b, lora_A = a.
  const std::string peft = tmp / "peft";
  r = run_cli("export --format peft " + quote(adapter) + " --base " + quote(base) + " -o " + quote(peft));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("2 modules of rank 4 to 6"), std::string::npos) << r.out;
  std::ifstream cf(peft + "/adapter_config.json");
  const nlohmann::json config = nlohmann::json::parse(cf);
  EXPECT_EQ(config["rank_pattern"]["layers.1.self_attn.q_proj"], 4);
  EXPECT_EQ(config["rank_pattern"]["layers.0.mlp.down_proj"], 6);
  const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(peft + "/adapter_model.safetensors");
  for (const auto &t : f.tensors())
    if (t.name == "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight") {
      EXPECT_EQ(t.shape, (std::vector<int64_t>{4, kD}));
      const float *a = reinterpret_cast<const float *>(f.data(t));
      EXPECT_EQ(a[1 * kD + 5], fq.vt.get(1, 5));
      EXPECT_EQ(a[3 * kD + 5], fq.vt0.get(1, 5));
    }
}

}  // namespace
