// The CLI on unstructured sparse adapters (LIFT, SpIEL): `diff --sparse`
// turns every changed projection element into a sparse entry; `inspect`
// shows them; `merge` (base order and permuted) and `fuse` (also with an
// S2FT adapter) reproduce the tuned weights bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <set>

#include "cli/cli_test_util.hpp"
#include "cli/tiny_model.hpp"
#include "support/test_util.hpp"

using namespace cli_test;

namespace {

// Multiplies `n` distinct random elements of an F32 tensor by (1 + ~1e-3);
// returns how many changed.
int64_t perturb_entries(RawTensor &t, int64_t n, s2ft_test::Random &rng) {
  const int64_t total = t.shape[0] * t.shape[1];
  std::set<int64_t> picked;
  while (static_cast<int64_t>(picked.size()) < std::min(n, total))
    picked.insert(static_cast<int64_t>(rng.uniform(0.0, static_cast<double>(total))) % total);
  for (int64_t i : picked) {
    float v;
    std::memcpy(&v, &t.bytes[static_cast<size_t>(i) * 4], 4);
    v *= static_cast<float>(1.0 + 1e-3 * rng.uniform(0.5, 1.0));
    std::memcpy(&t.bytes[static_cast<size_t>(i) * 4], &v, 4);
  }
  return static_cast<int64_t>(picked.size());
}

// A tiny F32 checkpoint and a tuned copy with a few entries of every
// projection of every layer changed; returns the number of changed entries.
int64_t write_sparse_pair(const std::string &base, const std::string &tuned) {
  write_tiny(base, Layout{"F32", 1, false}, 3);
  std::vector<RawTensor> t = tiny_tensors("F32", 3, false);
  s2ft_test::Random rng(21);
  int64_t changed = 0;
  for (RawTensor &x : t)
    if (x.name.find("_proj.weight") != std::string::npos) changed += perturb_entries(x, 5, rng);
  write_checkpoint(tuned, tiny_config("float32"), t, 1);
  return changed;
}

TEST(CliSparse, DiffInspectMergeFuseReproduceTheTunedWeights) {
  TempDir tmp;
  const std::string base = tmp / "base", tuned = tmp / "tuned", adapter = tmp / "a.safetensors";
  const int64_t changed = write_sparse_pair(base, tuned);
  ASSERT_EQ(changed, 5 * 7 * kLayers);

  RunResult r = run_cli("diff " + quote(base) + " " + quote(tuned) + " --sparse -o " + quote(adapter));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("sparse entries: " + std::to_string(changed) + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("not reproduced exactly: 0\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("changed outside the selection: 0 elements in 0 weights, 0 other tensors"), std::string::npos)
      << r.out;
  EXPECT_TRUE(r.err.empty()) << r.err;

  r = run_cli("inspect " + quote(adapter));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("sparse entries: " + std::to_string(changed)), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("selection_strategy: sparse"), std::string::npos) << r.out;

  const std::string merged = tmp / "merged";
  r = run_cli("merge " + quote(base) + " " + quote(adapter) + " -o " + quote(merged));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(map_diff(folder_tensors(merged), folder_tensors(tuned)), "");

  // Two halves fused give the whole difference.
  const std::string fused = tmp / "fused.safetensors", merged2 = tmp / "merged2";
  r = run_cli("fuse " + quote(adapter + ":0.5") + " " + quote(adapter + ":0.5") + " -o " + quote(fused));
  ASSERT_EQ(r.rc, 0) << r.err;
  r = run_cli("merge " + quote(base) + " " + quote(fused) + " -o " + quote(merged2));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(map_diff(folder_tensors(merged2), folder_tensors(tuned)), "");

  // Merged into a permuted checkpoint, then un-permuted: the same weights.
  const std::string perm = tmp / "perm", pmerged = tmp / "pmerged", back = tmp / "back";
  ASSERT_EQ(run_cli("permute " + quote(base) + " --strategy random --seed 9 --targets o,down,v,up --count-o 2 "
                    "--count-down 4 --count-v 1 --count-up 3 -o " + quote(perm)).rc, 0);
  r = run_cli("merge " + quote(perm) + " " + quote(adapter) + " -o " + quote(pmerged));
  ASSERT_EQ(r.rc, 0) << r.err;
  r = run_cli("permute --inverse " + quote(pmerged) + " -o " + quote(back));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(map_diff(folder_tensors(back), folder_tensors(tuned)), "");

  // Another base is refused (its weights' fingerprints differ), unless forced.
  const std::string other = tmp / "other";
  write_tiny(other, Layout{"F32", 1, false}, 4);
  expect_one_line_error(run_cli("merge " + quote(other) + " " + quote(adapter) + " -o " + quote(tmp / "no")), "merge",
                        "--force");
}

TEST(CliSparse, SparseAndS2ftAdaptersFuseIntoOne) {
  TempDir tmp;
  const std::string base = tmp / "base", tuned = tmp / "tuned", sel = tmp / "sel.json";
  write_sparse_pair(base, tuned);
  const std::string sparse = tmp / "sparse.safetensors";
  ASSERT_EQ(run_cli("diff " + quote(base) + " " + quote(tuned) + " --sparse -o " + quote(sparse)).rc, 0);
  // An S2FT adapter of the same base: the selected lines of the tuned model.
  ASSERT_EQ(run_cli("select " + quote(base) + " -o " + quote(sel) + " --count-o 1 --count-down 3").rc, 0);
  const std::string lines = tmp / "lines.safetensors";
  RunResult r = run_cli("diff " + quote(base) + " " + quote(tuned) + " --selection " + quote(sel) + " -o " +
                        quote(lines));
  ASSERT_EQ(r.rc, 0) << r.err;
  // Sequential merges and the merge of the fused adapter agree.
  const std::string fused = tmp / "fused.safetensors", one = tmp / "one", two = tmp / "two", step = tmp / "step";
  r = run_cli("fuse " + quote(sparse) + " " + quote(lines) + " -o " + quote(fused));
  ASSERT_EQ(r.rc, 0) << r.err;
  r = run_cli("inspect " + quote(fused));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("sparse entries:"), std::string::npos) << r.out;
  ASSERT_EQ(run_cli("merge " + quote(base) + " " + quote(fused) + " -o " + quote(one)).rc, 0);
  ASSERT_EQ(run_cli("merge " + quote(base) + " " + quote(sparse) + " -o " + quote(step)).rc, 0);
  r = run_cli("merge " + quote(step) + " " + quote(lines) + " --force -o " + quote(two));
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto a = folder_tensors(one), b = folder_tensors(two);
  ASSERT_EQ(a.size(), b.size());
  for (const auto &[name, bytes] : a) {
    const std::string &other = b.at(name);
    ASSERT_EQ(bytes.size(), other.size()) << name;
    for (size_t i = 0; i + 4 <= bytes.size(); i += 4)
      EXPECT_LE(f32_ulps(f32_at(bytes, i / 4), f32_at(other, i / 4)), 2u) << name << " element " << i / 4;
  }
}

TEST(CliSparse, DiffArgumentsAreChecked) {
  TempDir tmp;
  const std::string base = tmp / "base", tuned = tmp / "tuned";
  write_sparse_pair(base, tuned);
  expect_one_line_error(run_cli("diff " + quote(base) + " " + quote(tuned) + " -o " + quote(tmp / "a.safetensors")),
                        "diff", "--sparse");
  expect_one_line_error(run_cli("diff " + quote(base) + " " + quote(tuned) + " --sparse --selection x.json -o " +
                                quote(tmp / "a.safetensors")),
                        "diff", "exclude");
  EXPECT_FALSE(fs::exists(tmp / "a.safetensors"));
}

}  // namespace
