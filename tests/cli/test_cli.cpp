// The s2ft command-line tool on small made-up checkpoints (f32 single file,
// bf16 sharded into two files with an index): every --help, select ->
// permute -> permute --inverse restoring the input byte for byte, diff ->
// merge reproducing fine-tuned weights (what --scale means, when the round
// trip is bit-exact), fuse, inspect from headers only, progress on a
// terminal, control characters printed escaped, and one test per error path
// (non-zero exit, exactly one line on stderr, in the tool's terms). Broken
// inputs and failing outputs in bulk are tests/hostile's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <utility>

#include "cli/cli_test_util.hpp"
#include "cli/tiny_model.hpp"
#include "support/adapter_meta.hpp"
#include "support/test_util.hpp"

using namespace cli_test;

namespace {

// Column c of a row-major [rows, cols] matrix of `elem`-byte elements.
std::string column(const std::string &m, int64_t rows, int64_t cols, int64_t c, size_t elem) {
  std::string out;
  for (int64_t r = 0; r < rows; ++r) out += m.substr(static_cast<size_t>(r * cols + c) * elem, elem);
  return out;
}

TEST(CliHelp, EveryCommandHelpExitsZero) {
  for (const char *cmd : {"inspect", "select", "permute", "merge", "fuse", "diff", "export"}) {
    const RunResult r = run_cli(std::string(cmd) + " --help");
    EXPECT_EQ(r.rc, 0) << cmd;
    EXPECT_NE(r.out.find(std::string("usage: s2ft ") + cmd), std::string::npos) << r.out;
    EXPECT_TRUE(r.err.empty()) << r.err;
  }
  const RunResult top = run_cli("--help");
  EXPECT_EQ(top.rc, 0);
  EXPECT_NE(top.out.find("permute"), std::string::npos);
  const RunResult v = run_cli("--version");
  EXPECT_EQ(v.rc, 0);
  EXPECT_EQ(v.out, std::string("s2ft ") + s2ft_version_string() + "\n");
}

class CliRoundTrip : public ::testing::TestWithParam<Layout> {};

TEST_P(CliRoundTrip, SelectPermuteInverseIsByteIdentical) {
  const Layout lay = GetParam();
  TempDir tmp;
  const std::string in = tmp / "base", sel = tmp / "sel.json", perm = tmp / "perm", back = tmp / "back";
  write_tiny(in, lay);

  RunResult r = run_cli("inspect " + quote(in));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("layers 2, d_model 12, heads 4 (kv heads 2, head_dim 3), d_ff 10"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(lay.shards > 1 ? "sharded: 2 files" : "single file"), std::string::npos) << r.out;

  r = run_cli("select " + quote(in) + " -o " + quote(sel) +
              " --targets o,down,v,up --count-o 1 --count-down 3 --count-v 1 --ratio-up 0.2 --order smallest");
  ASSERT_EQ(r.rc, 0) << r.err;
  r = run_cli("inspect " + quote(sel));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("targets: o,v,down,up"), std::string::npos) << r.out;

  r = run_cli("permute " + quote(in) + " --selection " + quote(sel) + " -o " + quote(perm));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;  // no progress when stderr is not a terminal
  ASSERT_TRUE(fs::exists(perm + "/s2ft-selection.json"));

  // The permuted folder has the same files; projections moved as the
  // selection's permutation says, every other tensor is untouched.
  const auto base_t = folder_tensors(in), perm_t = folder_tensors(perm);
  ASSERT_EQ(base_t.size(), perm_t.size());
  const nlohmann::json sj = nlohmann::json::parse(read_text(perm + "/s2ft-selection.json"));
  const size_t elem = std::string(lay.dtype) == "F32" ? 4 : 2;
  bool any_moved = false;
  for (int64_t l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const std::vector<int64_t> perm_ch = sj["layers"][static_cast<size_t>(l)]["perm_channels"].get<std::vector<int64_t>>();
    const std::string &bd = base_t.at(p + "mlp.down_proj.weight"), &pd = perm_t.at(p + "mlp.down_proj.weight");
    for (int64_t c = 0; c < kFf; ++c) {
      EXPECT_TRUE(column(pd, kD, kFf, c, elem) == column(bd, kD, kFf, perm_ch[static_cast<size_t>(c)], elem)) << c;
      any_moved = any_moved || perm_ch[static_cast<size_t>(c)] != c;
    }
    const std::vector<int64_t> perm_h = sj["layers"][static_cast<size_t>(l)]["perm_heads"].get<std::vector<int64_t>>();
    const std::string &bo = base_t.at(p + "self_attn.o_proj.weight"), &po = perm_t.at(p + "self_attn.o_proj.weight");
    for (int64_t h = 0; h < kHeads; ++h)
      for (int64_t j = 0; j < kHd; ++j)
        EXPECT_TRUE(column(po, kD, kHeads * kHd, h * kHd + j, elem) ==
                    column(bo, kD, kHeads * kHd, perm_h[static_cast<size_t>(h)] * kHd + j, elem));
  }
  EXPECT_TRUE(any_moved);
  for (const auto &kv : base_t)
    if (kv.first.find("_proj") == std::string::npos) {
      EXPECT_TRUE(kv.second == perm_t.at(kv.first)) << kv.first;
    }

  r = run_cli("inspect " + quote(perm));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("permuted: yes"), std::string::npos) << r.out;

  // The inverse (selection from the folder) restores every input file byte for byte.
  r = run_cli("permute --inverse " + quote(perm) + " -o " + quote(back));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(map_diff(folder_files(back), folder_files(in)), "");
}

TEST_P(CliRoundTrip, PermuteWithInlineOptionsAndExplicitInverse) {
  const Layout lay = GetParam();
  TempDir tmp;
  const std::string in = tmp / "base", perm = tmp / "perm", back = tmp / "back";
  write_tiny(in, lay, 7);
  RunResult r = run_cli("permute " + quote(in) + " -o " + quote(perm) +
                        " --strategy random --seed 5 --heads single --count-o 3 --ratio-down 0.5");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(map_diff(folder_tensors(perm), folder_tensors(in)), "");
  r = run_cli("permute " + quote(perm) + " --inverse --selection " + quote(perm + "/s2ft-selection.json") + " -o " +
              quote(back));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(map_diff(folder_files(back), folder_files(in)), "");
}

INSTANTIATE_TEST_SUITE_P(Layouts, CliRoundTrip,
                         ::testing::Values(Layout{"F32", 1, true}, Layout{"BF16", 2, false}, Layout{"F32", 2, false}),
                         [](const ::testing::TestParamInfo<Layout> &i) {
                           return std::string(i.param.dtype) + "_" + std::to_string(i.param.shards) + "files" +
                                  (i.param.misalign ? "_misaligned" : "");
                         });

// The trained lines (base order) of a selection file, per layer: O and DOWN columns.
std::vector<int64_t> selected_columns(const nlohmann::json &sj, int64_t layer, const char *target, int64_t width) {
  std::vector<int64_t> cols;
  for (int64_t u : sj["layers"][static_cast<size_t>(layer)][target].get<std::vector<int64_t>>()) {
    if (width == 1) {
      cols.push_back(u);
    } else {  // O under by_group: KV group u holds query heads [u*r, (u+1)*r)
      const int64_t r = kHeads / kKv;
      for (int64_t h = u * r; h < (u + 1) * r; ++h)
        for (int64_t j = 0; j < width; ++j) cols.push_back(h * width + j);
    }
  }
  return cols;
}

// Multiplies the given columns of a [rows, cols] F32 tensor by (1 + 1e-3 u).
void perturb_columns(RawTensor &t, const std::vector<int64_t> &columns, s2ft_test::Random &rng) {
  const int64_t rows = t.shape[0], cols = t.shape[1];
  for (int64_t c : columns)
    for (int64_t r = 0; r < rows; ++r) {
      float v;
      std::memcpy(&v, &t.bytes[static_cast<size_t>(r * cols + c) * 4], 4);
      v *= static_cast<float>(1.0 + 1e-3 * rng.uniform(0.5, 1.0));
      std::memcpy(&t.bytes[static_cast<size_t>(r * cols + c) * 4], &v, 4);
    }
}

TEST(CliAdapters, DiffMergeFuseReproduceTheTunedWeights) {
  TempDir tmp;
  const std::string base = tmp / "base", tuned = tmp / "tuned", sel = tmp / "sel.json";
  write_tiny(base, Layout{"F32", 2, false}, 3);
  RunResult r = run_cli("select " + quote(base) + " -o " + quote(sel) + " --count-o 1 --count-down 3");
  ASSERT_EQ(r.rc, 0) << r.err;
  const nlohmann::json sj = nlohmann::json::parse(read_text(sel));

  std::vector<RawTensor> t = tiny_tensors("F32", 3, false);
  s2ft_test::Random rng(11);
  for (RawTensor &x : t)
    for (int64_t l = 0; l < kLayers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      if (x.name == p + "self_attn.o_proj.weight") perturb_columns(x, selected_columns(sj, l, "O", kHd), rng);
      if (x.name == p + "mlp.down_proj.weight") perturb_columns(x, selected_columns(sj, l, "DOWN", 1), rng);
    }
  write_checkpoint(tuned, tiny_config("float32"), t, 2);

  const std::string adapter = tmp / "a.safetensors";
  r = run_cli("diff " + quote(base) + " " + quote(tuned) + " --selection " + quote(sel) + " -o " + quote(adapter));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("not reproduced exactly: 0\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("changed outside the selection: 0 elements in 0 weights, 0 other tensors"), std::string::npos)
      << r.out;
  EXPECT_TRUE(r.err.empty()) << r.err;

  r = run_cli("inspect " + quote(adapter));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("name: \"tuned\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("layer 0:  o 6  down 3"), std::string::npos) << r.out;

  const std::string merged = tmp / "merged";
  r = run_cli("merge " + quote(base) + " " + quote(adapter) + " -o " + quote(merged));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(map_diff(folder_tensors(merged), folder_tensors(tuned)), "");

  // Two halves fused give the whole difference.
  const std::string fused = tmp / "fused.safetensors", merged2 = tmp / "merged2";
  r = run_cli("fuse " + quote(adapter + ":0.5") + " " + quote(adapter + ":0.5") + " -o " + quote(fused) +
              " --name halves");
  ASSERT_EQ(r.rc, 0) << r.err;
  r = run_cli("inspect " + quote(fused));
  EXPECT_NE(r.out.find("name: \"halves\""), std::string::npos) << r.out;
  r = run_cli("merge " + quote(base) + " " + quote(fused) + " -o " + quote(merged2));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(map_diff(folder_tensors(merged2), folder_tensors(tuned)), "");

  // Merging into the permuted checkpoint, then undoing the permutation, gives the same weights.
  const std::string perm = tmp / "perm", pmerged = tmp / "pmerged", back = tmp / "back";
  ASSERT_EQ(run_cli("permute " + quote(base) + " --strategy random --seed 9 --targets o,down,v --count-o 2 "
                    "--count-down 4 --count-v 1 -o " + quote(perm)).rc, 0);
  r = run_cli("merge " + quote(perm) + " " + quote(adapter) + " -o " + quote(pmerged));
  ASSERT_EQ(r.rc, 0) << r.err;
  r = run_cli("permute --inverse " + quote(pmerged) + " -o " + quote(back));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(map_diff(folder_tensors(back), folder_tensors(tuned)), "");
  // The same with the selection given explicitly (copied into the output).
  const std::string psel = tmp / "psel.json", pmerged2 = tmp / "pmerged2", back2 = tmp / "back2";
  fs::copy_file(perm + "/s2ft-selection.json", psel);
  fs::remove(perm + "/s2ft-selection.json");
  r = run_cli("merge " + quote(perm) + " " + quote(adapter) + " --selection " + quote(psel) + " -o " + quote(pmerged2));
  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_TRUE(fs::exists(pmerged2 + "/s2ft-selection.json"));
  ASSERT_EQ(run_cli("permute --inverse " + quote(pmerged2) + " -o " + quote(back2)).rc, 0);
  EXPECT_EQ(map_diff(folder_tensors(back2), folder_tensors(tuned)), "");
  // Without the selection the permuted weights do not match the adapter's base.
  expect_one_line_error(run_cli("merge " + quote(perm) + " " + quote(adapter) + " -o " + quote(tmp / "nosel")), "merge",
                        "--force");

  // A change outside the selection is reported and warned about.
  t = tiny_tensors("F32", 3, false);
  for (RawTensor &x : t)
    if (x.name == "model.layers.1.mlp.gate_proj.weight" || x.name == "model.norm.weight") x.bytes[0] ^= 1;
  const std::string other = tmp / "other";
  write_checkpoint(other, tiny_config("float32"), t, 1);
  r = run_cli("diff " + quote(base) + " " + quote(other) + " --selection " + quote(sel) + " -o " +
              quote(tmp / "b.safetensors") + " --name other --scale 0.5");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("changed outside the selection: 1 elements in 1 weights, 1 other tensors"), std::string::npos)
      << r.out;
  EXPECT_NE(r.err.find("not in the adapter"), std::string::npos) << r.err;
  r = run_cli("inspect " + quote(tmp / "b.safetensors"));
  EXPECT_NE(r.out.find("default scale: 0.5"), std::string::npos) << r.out;
}

// select --strategy principal: the units the library picks from the same
// weights with s2ft_statistics_add_principal at that rank, and the rank in
// the file's options; the rank must fit every targeted weight.
TEST(CliSelectPrincipal, MatchesTheLibrary) {
  TempDir tmp;
  const std::string ckpt = tmp / "ckpt", sel = tmp / "sel.json";
  write_tiny(ckpt, Layout{"BF16", 2, false}, 5);
  RunResult r = run_cli("select " + quote(ckpt) + " -o " + quote(sel) +
                        " --strategy principal --principal-rank 2 --targets o,down,v,up --heads single"
                        " --count-o 2 --count-down 3 --count-v 1 --count-up 4 --order smallest");
  ASSERT_EQ(r.rc, 0) << r.err;
  const nlohmann::json sj = nlohmann::json::parse(read_text(sel));
  EXPECT_EQ(sj["options"]["strategy"], "principal");
  EXPECT_EQ(sj["options"]["principal_rank"], 2);

  const std::map<std::string, std::string> raw = folder_tensors(ckpt);
  const s2ft_model_shape shape{static_cast<int32_t>(kLayers), static_cast<int32_t>(kD), static_cast<int32_t>(kHeads),
                               static_cast<int32_t>(kKv),     static_cast<int32_t>(kHd), static_cast<int32_t>(kFf)};
  s2ft_test::Context cx;
  s2ft_statistics *st = nullptr;
  ASSERT_EQ(s2ft_statistics_create(cx.ctx, &shape, &st), S2FT_OK);
  const char *names[S2FT_NUM_TARGETS] = {"self_attn.o_proj", "self_attn.v_proj", "mlp.down_proj", "mlp.up_proj"};
  const int64_t dims[S2FT_NUM_TARGETS][2] = {{kD, kHeads * kHd}, {kKv * kHd, kD}, {kD, kFf}, {kFf, kD}};
  std::vector<std::string> keep;
  for (int64_t l = 0; l < kLayers; ++l)
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
      keep.push_back(raw.at("model.layers." + std::to_string(l) + "." + names[t] + ".weight"));
      s2ft_tensor w;
      ASSERT_EQ(s2ft_tensor_init(&w, keep.back().data(), S2FT_BF16, S2FT_DEVICE_CPU, 0, 2, dims[t]), S2FT_OK);
      ASSERT_EQ(s2ft_statistics_add_principal(st, static_cast<int32_t>(l), t, &w, 2), S2FT_OK) << s2ft_last_error();
    }
  s2ft_select_options o;
  ASSERT_EQ(s2ft_select_options_init(&o, S2FT_SELECT_OPTIONS_VERSION), S2FT_OK);
  o.strategy = S2FT_STRATEGY_PRINCIPAL;
  o.order = S2FT_ORDER_SMALLEST;
  o.targets = 0xFu;
  o.head_granularity = S2FT_HEADS_SINGLE;
  const int64_t counts[S2FT_NUM_TARGETS] = {2, 1, 3, 4};
  for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) o.ratio[t] = 0.0, o.count[t] = counts[t];
  s2ft_selection *want = nullptr;
  ASSERT_EQ(s2ft_select(cx.ctx, &shape, &o, st, &want), S2FT_OK) << s2ft_last_error();
  const char *keys[S2FT_NUM_TARGETS] = {"O", "V", "DOWN", "UP"};
  for (int64_t l = 0; l < kLayers; ++l)
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
      int64_t n = 0;
      std::vector<int64_t> units(16);
      ASSERT_EQ(s2ft_selection_indices(want, static_cast<int32_t>(l), t, S2FT_INDEX_UNITS, units.data(), 16, &n),
                S2FT_OK);
      units.resize(static_cast<size_t>(n));
      EXPECT_EQ(sj["layers"][static_cast<size_t>(l)][keys[t]].get<std::vector<int64_t>>(), units)
          << "layer " << l << " " << keys[t];
    }
  s2ft_selection_destroy(want);
  s2ft_statistics_destroy(st);

  // permute takes the same options.
  r = run_cli("permute " + quote(ckpt) + " -o " + quote(tmp / "perm") + " --strategy principal --principal-rank 1");
  ASSERT_EQ(r.rc, 0) << r.err;
  const nlohmann::json pj = nlohmann::json::parse(read_text(tmp / "perm/s2ft-selection.json"));
  EXPECT_EQ(pj["options"]["principal_rank"], 1);

  const std::string out = " -o " + quote(tmp / "s2.json");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --strategy principal"), "select",
                        "--strategy principal needs --principal-rank");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --principal-rank 2"), "select",
                        "--principal-rank is given but --strategy is not principal");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --strategy principal --principal-rank 0"), "select",
                        "--principal-rank must be at least 1");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --strategy principal --principal-rank x"), "select",
                        "--principal-rank");
  // v_proj is [6, 12]: rank 7 fits o and down (min 10) but not v.
  expect_one_line_error(run_cli("select " + quote(ckpt) + out +
                                " --strategy principal --principal-rank 7 --targets o,v --count-v 1"),
                        "select", "--principal-rank 7 is more than min(rows, cols) = 6 of the v weights [6, 12]");
  EXPECT_FALSE(fs::exists(tmp / "s2.json"));
}

// ---- errors: non-zero exit and one line on stderr ----------------------------

class CliErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    write_tiny(ckpt, Layout{"F32", 1, false});
    ASSERT_EQ(run_cli("select " + quote(ckpt) + " -o " + quote(sel)).rc, 0);
  }
  TempDir tmp;
  std::string ckpt = tmp / "ckpt", sel = tmp / "sel.json";
};

TEST_F(CliErrors, MissingInput) {
  expect_one_line_error(run_cli("inspect " + quote(tmp / "nope")), "inspect", "does not exist");
  expect_one_line_error(run_cli("select " + quote(tmp / "nope") + " -o " + quote(tmp / "s.json")), "select",
                        "does not exist");
  expect_one_line_error(run_cli("permute " + quote(ckpt) + " --selection " + quote(tmp / "nope.json") + " -o " +
                                quote(tmp / "out")),
                        "permute", "nope.json");
  EXPECT_FALSE(fs::exists(tmp / "out"));  // a failed command leaves no output behind
  expect_one_line_error(run_cli("merge " + quote(ckpt) + " " + quote(tmp / "nope.safetensors") + " -o " +
                                quote(tmp / "out")),
                        "merge", "nope.safetensors");
}

TEST_F(CliErrors, OutputExistsAndIsNotEmpty) {
  fs::create_directories(tmp / "full");
  write_text(tmp / "full/x", "x");
  expect_one_line_error(run_cli("permute " + quote(ckpt) + " --selection " + quote(sel) + " -o " + quote(tmp / "full")),
                        "permute", "not empty");
  EXPECT_EQ(read_text(tmp / "full/x"), "x");
  write_text(tmp / "file", "y");
  expect_one_line_error(run_cli("permute " + quote(ckpt) + " --selection " + quote(sel) + " -o " + quote(tmp / "file")),
                        "permute", "not a folder");
  // An empty folder is accepted.
  fs::create_directories(tmp / "empty");
  EXPECT_EQ(run_cli("permute " + quote(ckpt) + " --selection " + quote(sel) + " -o " + quote(tmp / "empty")).rc, 0);
}

TEST_F(CliErrors, OutputIsAnInput) {
  const auto before = folder_files(ckpt);
  expect_one_line_error(run_cli("permute " + quote(ckpt) + " --selection " + quote(sel) + " -o " + quote(ckpt)),
                        "permute", "is an input");
  expect_one_line_error(run_cli("permute " + quote(ckpt) + " --selection " + quote(sel) + " -o " +
                                quote(tmp / "x/../ckpt/")),
                        "permute", "is an input");
  expect_one_line_error(run_cli("select " + quote(ckpt) + " -o " + quote(ckpt + "/config.json")), "select",
                        "input folder");
  expect_one_line_error(run_cli("fuse " + quote(tmp / "a.safetensors") + " -o " + quote(tmp / "a.safetensors")),
                        "fuse", "is an input");
  expect_one_line_error(run_cli("diff " + quote(ckpt) + " " + quote(ckpt) + " --selection " + quote(sel) + " -o " +
                                quote(sel)),
                        "diff", "is an input");
  EXPECT_EQ(map_diff(folder_files(ckpt), before), "");
}

TEST_F(CliErrors, BadOptionValues) {
  const std::string out = " -o " + quote(tmp / "s2.json");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --ratio-o 2"), "select", "--ratio-o");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --ratio-o abc"), "select", "--ratio-o");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --strategy fancy"), "select", "--strategy");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --seed -1"), "select", "--seed");
  // strtoull skips blanks and wraps a '-' after them: " -17" was 2^64 - 17.
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --seed ' -17'"), "select", "--seed");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --seed ' 3'"), "select", "--seed");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --count-o ' 1'"), "select", "--count-o");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --ratio-o ' 0.5'"), "select", "--ratio-o");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --targets o,qq"), "select", "--targets");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --targets o,down,v"), "select", "--ratio-v");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --count-o 1 --ratio-o 0.5"), "select", "not both");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --count-o 99"), "select", "count");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --bogus"), "select", "--bogus");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --seed"), "select", "--seed");
  expect_one_line_error(run_cli("select " + quote(ckpt)), "select", "-o");
  expect_one_line_error(run_cli("merge " + quote(ckpt) + " " + quote(sel + ":x") + " -o " + quote(tmp / "m")), "merge",
                        "scale");
  for (const char *args : {"frobnicate", ""}) {
    const RunResult r2 = run_cli(args);
    EXPECT_NE(r2.rc, 0) << args;
    ASSERT_EQ(r2.err_lines().size(), 1u) << r2.err;
    EXPECT_EQ(r2.err_lines()[0].rfind("s2ft: error: ", 0), 0u) << r2.err;
  }
}

TEST_F(CliErrors, CorruptSafetensors) {
  // Truncated shard: the header promises more data than the file has.
  std::string bytes = read_text(ckpt + "/model.safetensors");
  const std::string bad = tmp / "bad";
  fs::create_directories(bad);
  fs::copy_file(ckpt + "/config.json", bad + "/config.json");
  write_text(bad + "/model.safetensors", bytes.substr(0, bytes.size() - 10));
  expect_one_line_error(run_cli("inspect " + quote(bad)), "inspect", "model.safetensors");
  expect_one_line_error(run_cli("permute " + quote(bad) + " --selection " + quote(sel) + " -o " + quote(tmp / "o")),
                        "permute", "model.safetensors");
  // Header length past the end of the file.
  write_text(tmp / "junk.safetensors", std::string("\xff\xff\xff\xff\x00\x00\x00\x00{}", 10));
  expect_one_line_error(run_cli("inspect " + quote(tmp / "junk.safetensors")), "inspect", "junk.safetensors");
  // A selection file that is not JSON.
  write_text(tmp / "junk.json", "{not json");
  expect_one_line_error(run_cli("inspect " + quote(tmp / "junk.json")), "inspect", "junk.json");
  // A config.json without the model shape.
  const std::string nocfg = tmp / "nocfg";
  fs::create_directories(nocfg);
  write_text(nocfg + "/config.json", "{\"hidden_size\": 12}");
  fs::copy_file(ckpt + "/model.safetensors", nocfg + "/model.safetensors");
  expect_one_line_error(run_cli("inspect " + quote(nocfg)), "inspect", "num_hidden_layers");
}

TEST_F(CliErrors, BadShardIndex) {
  const std::string sh = tmp / "sharded";
  write_tiny(sh, Layout{"F32", 2, false});
  const std::string index_path = sh + "/model.safetensors.index.json";
  const nlohmann::json index = nlohmann::json::parse(read_text(index_path));

  nlohmann::json up = index;
  up["weight_map"]["model.norm.weight"] = "../model-00002-of-00002.safetensors";
  write_text(index_path, up.dump());
  expect_one_line_error(run_cli("inspect " + quote(sh)), "inspect", "..");

  nlohmann::json slash = index;
  slash["weight_map"]["model.norm.weight"] = "sub/model-00002-of-00002.safetensors";
  write_text(index_path, slash.dump());
  expect_one_line_error(run_cli("inspect " + quote(sh)), "inspect", "sub/");

  nlohmann::json missing = index;
  missing["weight_map"]["model.norm.weight"] = "model-00009-of-00009.safetensors";
  write_text(index_path, missing.dump());
  expect_one_line_error(run_cli("inspect " + quote(sh)), "inspect", "does not exist");

  // A tensor listed in the wrong shard, and a duplicated key.
  nlohmann::json wrong = index;
  wrong["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
  write_text(index_path, wrong.dump());
  expect_one_line_error(run_cli("inspect " + quote(sh)), "inspect", "model.norm.weight");
  std::string dup = index.dump();
  dup.insert(dup.find("\"weight_map\":{") + 14, "\"lm_head.weight\":\"model-00001-of-00002.safetensors\",");
  write_text(index_path, dup);
  expect_one_line_error(run_cli("inspect " + quote(sh)), "inspect", "more than once");
}

TEST_F(CliErrors, SelectionForAnotherShape) {
  const std::string other = tmp / "other";
  nlohmann::json cfg = tiny_config("float32");
  std::vector<RawTensor> t = tiny_tensors("F32", 1, false);
  // Same tensors, one more layer declared: the config no longer matches.
  cfg["num_hidden_layers"] = 1;
  write_checkpoint(other, cfg, t, 1);
  expect_one_line_error(run_cli("permute " + quote(other) + " --selection " + quote(sel) + " -o " + quote(tmp / "o")),
                        "permute", "another model shape");
  expect_one_line_error(run_cli("permute " + quote(ckpt) + " --selection " + quote(sel) + " --count-o 1 -o " +
                                quote(tmp / "o")),
                        "permute", "not both");
}

// ---- issue 12: what trying the tool on a real checkpoint found ---------------

// Element i of an F32 or BF16 tensor, as a float, and back.
float get_element(const RawTensor &t, size_t i) {
  if (t.dtype == "BF16") return s2ft_test::from_bf16(static_cast<uint16_t>(t.bytes[2 * i] | (t.bytes[2 * i + 1] << 8)));
  float v;
  std::memcpy(&v, &t.bytes[4 * i], 4);
  return v;
}

void set_element(RawTensor &t, size_t i, float v) {
  if (t.dtype == "F32") {
    std::memcpy(&t.bytes[4 * i], &v, 4);
    return;
  }
  const uint16_t h = s2ft_test::to_bf16(v);
  t.bytes[2 * i] = static_cast<uint8_t>(h & 0xff);
  t.bytes[2 * i + 1] = static_cast<uint8_t>(h >> 8);
}

// The tiny model (F32 or BF16) of `seed` with `change` applied to every
// element of the O and DOWN columns the selection `sj` trains, written to
// `dir` (one file).
void write_tuned(const std::string &dir, uint64_t seed, const nlohmann::json &sj,
                 const std::function<float(float)> &change, const char *dtype = "F32") {
  std::vector<RawTensor> t = tiny_tensors(dtype, seed, false);
  for (RawTensor &x : t)
    for (int64_t l = 0; l < kLayers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      std::vector<int64_t> cols;
      if (x.name == p + "self_attn.o_proj.weight") cols = selected_columns(sj, l, "O", kHd);
      if (x.name == p + "mlp.down_proj.weight") cols = selected_columns(sj, l, "DOWN", 1);
      for (int64_t c : cols)
        for (int64_t r = 0; r < x.shape[0]; ++r) {
          const size_t i = static_cast<size_t>(r * x.shape[1] + c);
          set_element(x, i, change(get_element(x, i)));
        }
    }
  write_checkpoint(dir, tiny_config(std::string(dtype) == "F32" ? "float32" : "bfloat16"), t, 1);
}

// A change per element that often moves a weight by more than half its new
// magnitude (factors 2.5, -0.4, 3.7 among small ones), where the f32
// rounding of TUNED - BASE can show in the merged weight.
std::function<float(float)> large_changes() {
  auto n = std::make_shared<int>(0);
  return [n](float v) {
    static const float kFactors[] = {1.001f, 2.5f, 0.999f, -0.4f, 3.7f, 1.0002f, 2.9f};
    return v * kFactors[(*n)++ % 7];
  };
}

// The base, a selection of it and a tuned copy, in a temporary folder.
class CliDiff : public ::testing::Test {
 protected:
  void SetUp() override {
    write_tiny(base, Layout{"F32", 1, false}, 3);
    ASSERT_EQ(run_cli("select " + quote(base) + " -o " + quote(sel) + " --count-o 1 --count-down 3").rc, 0);
    sj = nlohmann::json::parse(read_text(sel));
  }
  // Runs diff base -> tuned with `options`, then merge of the adapter at its
  // default scale; returns diff's result and leaves the merge in `merged`.
  RunResult diff_then_merge(const std::string &options) {
    const std::string adapter = tmp / "a.safetensors";
    fs::remove_all(merged);
    const RunResult r = run_cli("diff " + quote(base) + " " + quote(tuned) + " --selection " + quote(sel) + " -o " +
                                quote(adapter) + " " + options);
    if (r.rc == 0) {
      const RunResult m = run_cli("merge " + quote(base) + " " + quote(adapter) + " -o " + quote(merged));
      EXPECT_EQ(m.rc, 0) << m.err;
      EXPECT_TRUE(m.err.empty()) << m.err;  // no progress when stderr is not a terminal
    }
    return r;
  }
  TempDir tmp;
  std::string base = tmp / "base", tuned = tmp / "tuned", merged = tmp / "merged", sel = tmp / "sel.json";
  nlohmann::json sj;
};

TEST_F(CliDiff, ScaleIsTheDefaultScaleAtWhichMergeGivesTheTunedWeights) {
  s2ft_test::Random rng(5);
  // A multiplicative change keeps TUNED within a factor of two of BASE, so
  // TUNED - BASE is an f32 number (Sterbenz) and the round trip is exact.
  write_tuned(tuned, 3, sj, [&](float v) { return v * static_cast<float>(1.0 + 1e-3 * rng.uniform(0.5, 1.0)); });
  for (const char *scale : {"2", "0.5", "-4", "1"}) {
    SCOPED_TRACE(scale);
    const RunResult r = diff_then_merge(std::string("--scale ") + scale);
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_NE(r.out.find(std::string("default scale ") + scale + ")"), std::string::npos) << r.out;
    EXPECT_EQ(report_value(r.out, "not reproduced exactly"), 0) << r.out;
    EXPECT_TRUE(r.err.empty()) << r.err;
    EXPECT_EQ(map_diff(folder_tensors(merged), folder_tensors(tuned)), "");
    const RunResult info = run_cli("inspect " + quote(tmp / "a.safetensors"));
    EXPECT_NE(info.out.find(std::string("default scale: ") + scale + "\n"), std::string::npos) << info.out;
  }
  // A scale that is not a power of two rounds the quotient, which shows
  // where weights change by more than half their new magnitude: the check
  // reports exactly what merge then does.
  fs::remove_all(tuned);
  write_tuned(tuned, 3, sj, large_changes());
  const RunResult r3 = diff_then_merge("--scale 3");
  ASSERT_EQ(r3.rc, 0) << r3.err;
  const RoundingCount c = count_rounding(folder_tensors(base), folder_tensors(tuned), folder_tensors(merged), 3.0);
  EXPECT_GT(c.not_exact, 0);
  EXPECT_EQ(report_value(r3.out, "not reproduced exactly"), c.not_exact) << r3.out;
  EXPECT_EQ(report_value(r3.out, "more than one unit in the last place off"), c.beyond_one_ulp) << r3.out;

  // Merged at scale 1, an adapter made with --scale 2 applies half the change.
  ASSERT_EQ(diff_then_merge("--scale 2").rc, 0);
  const std::string half = tmp / "half";
  ASSERT_EQ(run_cli("merge " + quote(base) + " " + quote(tmp / "a.safetensors:1") + " -o " + quote(half)).rc, 0);
  const auto b = folder_tensors(base), t = folder_tensors(tuned), h = folder_tensors(half);
  for (const auto &kv : t)
    for (size_t i = 0; i < kv.second.size() / 4; ++i) {
      const double bv = f32_at(b.at(kv.first), i), tv = f32_at(kv.second, i);
      const float expect = static_cast<float>(bv + static_cast<double>(static_cast<float>((tv - bv) / 2)));
      ASSERT_EQ(f32_at(h.at(kv.first), i), expect) << kv.first << " " << i;
    }

  // A scale so small that the stored delta would overflow f32.
  expect_one_line_error(run_cli("diff " + quote(base) + " " + quote(tuned) + " --selection " + quote(sel) + " -o " +
                                quote(tmp / "z.safetensors") + " --scale 1e-40"),
                        "diff", "which an f32 delta cannot hold");
  // Merging at a scale that would overflow the weights writes nothing (it
  // once wrote infinities and exited 0).
  expect_one_line_error(run_cli("merge " + quote(base) + " " + quote(tmp / "a.safetensors:1e308") + " -o " +
                                quote(tmp / "overflowed")),
                        "merge", "could overflow the weights");
  EXPECT_FALSE(fs::exists(tmp / "overflowed"));
  // Fusing with scales whose sum overflows f32 names the file and the remedy.
  expect_one_line_error(run_cli("fuse " + quote(tmp / "a.safetensors:1e300") + " -o " + quote(tmp / "z.safetensors")),
                        "fuse", "fusing " + tmp / "a.safetensors" + " at scale 1e+300: ");
  EXPECT_NE(run_cli("fuse " + quote(tmp / "a.safetensors:1e300") + " -o " + quote(tmp / "z.safetensors")).err.find(
                "use smaller scales"),
            std::string::npos);
  for (const char *bad : {"0", "-0", "nan", "inf"})
    expect_one_line_error(run_cli("diff " + quote(base) + " " + quote(tuned) + " --selection " + quote(sel) + " -o " +
                                  quote(tmp / "z.safetensors") + " --scale " + bad),
                          "diff", "--scale");
  EXPECT_FALSE(fs::exists(tmp / "z.safetensors"));
}

TEST_F(CliDiff, ReportsExactlyWhenTheRoundTripIsBitExact) {
  // Weights that change by more than half their new magnitude, and one that
  // goes from 1 to 3e-8, far more than its new magnitude.
  bool base_planted = false, tuned_planted = false;
  const std::function<float(float)> change = large_changes();
  write_tuned(base, 3, sj, [&](float v) { return std::exchange(base_planted, true) ? v : 1.0f; });
  write_tuned(tuned, 3, sj, [&](float v) { return std::exchange(tuned_planted, true) ? change(v) : 3e-8f; });
  const RunResult r = diff_then_merge("");
  ASSERT_EQ(r.rc, 0) << r.err;
  const RoundingCount c = count_rounding(folder_tensors(base), folder_tensors(tuned), folder_tensors(merged), 1.0);
  EXPECT_GT(c.not_exact, c.beyond_one_ulp);
  EXPECT_GE(c.beyond_one_ulp, 1);
  EXPECT_EQ(report_value(r.out, "not reproduced exactly"), c.not_exact) << r.out;
  EXPECT_EQ(report_value(r.out, "more than one unit in the last place off"), c.beyond_one_ulp) << r.out;
  // One warning per kind of difference, saying why.
  const std::vector<std::string> warnings = r.err_lines();
  ASSERT_EQ(warnings.size(), 2u) << r.err;
  EXPECT_NE(warnings[0].find("one unit in the last place"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("more than half its new magnitude"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[1].find("more than one unit in the last place"), std::string::npos) << warnings[1];
  EXPECT_NE(warnings[1].find("|TUNED - BASE| > |TUNED|"), std::string::npos) << warnings[1];

  // BF16 weights: the f32 delta's rounding is far below their precision, so
  // the same changes (|TUNED - BASE| <= 4096 |TUNED| everywhere) come back exactly.
  for (const std::string &dir : {base, tuned}) fs::remove_all(dir);
  write_tuned(base, 3, sj, [](float v) { return v; }, "BF16");
  write_tuned(tuned, 3, sj, large_changes(), "BF16");
  const RunResult rb = diff_then_merge("--scale 3");
  ASSERT_EQ(rb.rc, 0) << rb.err;
  EXPECT_EQ(report_value(rb.out, "not reproduced exactly"), 0) << rb.out;
  EXPECT_TRUE(rb.err.empty()) << rb.err;
  EXPECT_EQ(map_diff(folder_tensors(merged), folder_tensors(tuned)), "");
}

TEST_F(CliDiff, PermutedCheckpointsAreRefused) {
  write_tuned(tuned, 3, sj, [](float v) { return v * 1.001f; });
  const std::string perm = tmp / "perm", adapter = tmp / "p.safetensors";
  ASSERT_EQ(run_cli("permute " + quote(tuned) + " --selection " + quote(sel) + " -o " + quote(perm)).rc, 0);
  expect_one_line_error(run_cli("diff " + quote(base) + " " + quote(perm) + " --selection " + quote(sel) + " -o " +
                                quote(adapter)),
                        "diff", "un-permute it first with s2ft permute --inverse");
  expect_one_line_error(run_cli("diff " + quote(perm) + " " + quote(tuned) + " --selection " + quote(sel) + " -o " +
                                quote(adapter)),
                        "diff", "is permuted");
  EXPECT_FALSE(fs::exists(adapter));
  // A selection scored on permuted weights would index the wrong units.
  expect_one_line_error(run_cli("select " + quote(perm) + " -o " + quote(tmp / "s2.json")), "select",
                        "permute --inverse");
  EXPECT_FALSE(fs::exists(tmp / "s2.json"));
}

// ---- provenance: the metadata diff and fuse record, inspect shows --------------

// Sets (or, with NULL, unsets) an environment variable for the tool runs of a scope.
class ScopedEnv {
 public:
  ScopedEnv(const char *name, const char *value) : name_(name) {
    const char *old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value != nullptr) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_) ::setenv(name_.c_str(), old_.c_str(), 1);
    else ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv &) = delete;
  ScopedEnv &operator=(const ScopedEnv &) = delete;

 private:
  std::string name_, old_;
  bool had_ = false;
};

// An adapter file's metadata, read through the library.
std::map<std::string, std::string> adapter_meta(const std::string &path) { return s2ft_test::adapter_file_meta(path); }

// 1700000000 seconds after 1970-01-01T00:00:00Z.
const char *const kEpoch = "1700000000";
const char *const kEpochTime = "2023-11-14T22:13:20Z";

TEST_F(CliDiff, RecordsTheDocumentedProvenance) {
  ScopedEnv epoch("SOURCE_DATE_EPOCH", kEpoch);
  const std::string a = tmp / "a.safetensors", again = tmp / "again.safetensors";
  const std::string args = "diff " + quote(base) + " " + quote(base) + " --selection " + quote(sel) + " -o ";
  RunResult r = run_cli(args + quote(a));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  std::map<std::string, std::string> meta = adapter_meta(a);
  const nlohmann::json &opts = sj.at("options");
  ASSERT_TRUE(meta.count("selection_budget")) << r.out;
  EXPECT_EQ(nlohmann::json::parse(meta.at("selection_budget")), opts.at("budget"));
  meta.erase("selection_budget");
  const std::map<std::string, std::string> want = {
      {"base_model", "base"},  // no _name_or_path in config.json: the folder's name
      {"base_dtype", "float32"},
      {"created", kEpochTime},
      {"library_version", s2ft_version_string()},
      {"selection_allocation", opts.at("allocation").get<std::string>()},
      {"selection_head_granularity", opts.at("head_granularity").get<std::string>()},
      {"selection_order", opts.at("order").get<std::string>()},
      {"selection_seed", opts.at("seed").dump()},
      {"selection_strategy", opts.at("strategy").get<std::string>()}};
  EXPECT_EQ(meta, want);
  // The same run at the same SOURCE_DATE_EPOCH writes the same bytes.
  ASSERT_EQ(run_cli(args + quote(again)).rc, 0);
  EXPECT_EQ(read_text(a), read_text(again));

  // The revision, the user's own keys (overriding a recorded one, empty values allowed).
  r = run_cli(args + quote(a) + " --base-revision 0123abc --meta team=nlp --meta base_model=org/override --meta " +
              "note= --meta=dataset.name=caf\xc3\xa9");
  ASSERT_EQ(r.rc, 0) << r.err;
  meta = adapter_meta(a);
  EXPECT_EQ(meta.at("base_model_revision"), "0123abc");
  EXPECT_EQ(meta.at("team"), "nlp");
  EXPECT_EQ(meta.at("base_model"), "org/override");
  EXPECT_EQ(meta.at("note"), "");
  EXPECT_EQ(meta.at("dataset.name"), "caf\xc3\xa9");
  EXPECT_EQ(meta.at("created"), kEpochTime);

  // inspect shows every key, sorted.
  r = run_cli("inspect " + quote(a));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("  metadata (" + std::to_string(meta.size()) + " keys):\n"), std::string::npos) << r.out;
  size_t last = 0;
  for (const auto &kv : meta) {
    const size_t at = r.out.find("\n    " + kv.first + ": " + kv.second + "\n");
    ASSERT_NE(at, std::string::npos) << kv.first << " in: " << r.out;
    EXPECT_GT(at, last) << kv.first << " is out of order in: " << r.out;
    last = at;
  }
}

TEST_F(CliDiff, BaseModelComesFromConfigAndDtypeFromTheWeights) {
  ScopedEnv epoch("SOURCE_DATE_EPOCH", nullptr);  // now
  const std::string named = tmp / "named", a = tmp / "a.safetensors";
  nlohmann::json config = tiny_config("bfloat16");
  config["_name_or_path"] = "org/tiny-llama";
  write_checkpoint(named, config, tiny_tensors("BF16", 3, false), 1);
  // A selection without "options" (made by hand) records no selection keys.
  nlohmann::json bare = sj;
  bare.erase("options");
  const std::string bare_sel = tmp / "bare.json";
  write_text(bare_sel, bare.dump());
  const RunResult r = run_cli("diff " + quote(named) + " " + quote(named) + " --selection " + quote(bare_sel) +
                              " -o " + quote(a));
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::map<std::string, std::string> meta = adapter_meta(a);
  EXPECT_EQ(meta.at("base_model"), "org/tiny-llama");
  EXPECT_EQ(meta.at("base_dtype"), "bfloat16");
  for (const auto &kv : meta) EXPECT_NE(kv.first.rfind("selection_", 0), 0u) << kv.first;
  // created: now, UTC, to the second.
  const std::string created = meta.at("created");
  ASSERT_EQ(created.size(), 20u) << created;
  EXPECT_EQ(created[4], '-');
  EXPECT_EQ(created[10], 'T');
  EXPECT_EQ(created[19], 'Z');
  EXPECT_GE(created.substr(0, 4), "2024");
}

TEST_F(CliDiff, BadMetaRevisionOrEpochIsRefusedBeforeAnyWork) {
  const std::string out = tmp / "a.safetensors";
  const std::string args = "diff " + quote(base) + " " + quote(base) + " --selection " + quote(sel) + " -o " +
                           quote(out) + " ";
  expect_one_line_error(run_cli(args + "--meta nokey"), "diff", "--meta expects KEY=VALUE, got 'nokey'");
  expect_one_line_error(run_cli(args + "--meta 'a b=1'"), "diff", "--meta 'a b=1': key holds ' ' at byte 1");
  expect_one_line_error(run_cli(args + "--meta =1"), "diff", "--meta '=1': key is empty");
  expect_one_line_error(run_cli(args + "--meta " + std::string(256, 'k') + "=1"), "diff",
                        "key is longer than 255 bytes");
  expect_one_line_error(run_cli(args + "--meta " + quote("k=\xff")), "diff", "is not valid UTF-8");
  expect_one_line_error(run_cli(args + "--meta a=1 --meta b=2 --meta a=3"), "diff", "--meta gives the key a twice");
  expect_one_line_error(run_cli(args + "--meta"), "diff", "--meta needs a value");
  expect_one_line_error(run_cli(args + "--base-revision " + quote("\xff")), "diff", "--base-revision: ");
  expect_one_line_error(run_cli(args + "--base-revision a --base-revision b"), "diff", "given twice");
  for (const char *bad : {"abc", "-1", "1.5", " 1", "253402300800", "99999999999999999999"}) {
    ScopedEnv epoch("SOURCE_DATE_EPOCH", bad);
    expect_one_line_error(run_cli(args), "diff", "SOURCE_DATE_EPOCH must be a whole number of seconds");
    expect_one_line_error(run_cli("fuse " + quote(out) + " -o " + quote(tmp / "f.safetensors")), "fuse",
                          "SOURCE_DATE_EPOCH");
  }
  EXPECT_FALSE(fs::exists(out));
  // The last second a four-digit year holds; an empty SOURCE_DATE_EPOCH means now.
  {
    ScopedEnv epoch("SOURCE_DATE_EPOCH", "253402300799");
    ASSERT_EQ(run_cli(args).rc, 0);
    EXPECT_EQ(adapter_meta(out).at("created"), "9999-12-31T23:59:59Z");
  }
  {
    ScopedEnv epoch("SOURCE_DATE_EPOCH", "0");
    ASSERT_EQ(run_cli(args).rc, 0);
    EXPECT_EQ(adapter_meta(out).at("created"), "1970-01-01T00:00:00Z");
  }
  {
    ScopedEnv epoch("SOURCE_DATE_EPOCH", "");
    ASSERT_EQ(run_cli(args).rc, 0);
    EXPECT_NE(adapter_meta(out).at("created").rfind("1970", 0), 0u);
  }
}

TEST_F(CliDiff, FuseKeepsTheInputsProvenance) {
  ScopedEnv epoch("SOURCE_DATE_EPOCH", kEpoch);
  const std::string a = tmp / "a.safetensors", b = tmp / "b.safetensors", f = tmp / "f.safetensors";
  const std::string args = "diff " + quote(base) + " " + quote(base) + " --selection " + quote(sel) + " -o ";
  ASSERT_EQ(run_cli(args + quote(a) + " --name first --meta team=a").rc, 0);
  ASSERT_EQ(run_cli(args + quote(b) + " --name second --meta team=b --scale 2").rc, 0);
  ScopedEnv later("SOURCE_DATE_EPOCH", "1700000060");
  RunResult r = run_cli("fuse " + quote(a + ":0.5") + " " + quote(b) + " -o " + quote(f));
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::map<std::string, std::string> ma = adapter_meta(a), mb = adapter_meta(b), mf = adapter_meta(f);
  std::map<std::string, std::string> want = {{"created", "2023-11-14T22:14:20Z"},
                                             {"library_version", s2ft_version_string()},
                                             {"input.0.name", "first"},
                                             {"input.0.weight", "0.5"},
                                             {"input.1.name", "second"},
                                             {"input.1.weight", "2"}};  // b's default scale
  for (const auto &kv : ma) want["input.0." + kv.first] = kv.second;
  for (const auto &kv : mb) want["input.1." + kv.first] = kv.second;
  EXPECT_EQ(mf, want);
  EXPECT_EQ(mf.at("input.1.team"), "b");
  EXPECT_EQ(mf.at("input.0.created"), kEpochTime);
  r = run_cli("inspect " + quote(f));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("\n    input.1.team: b\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\n    input.0.base_model: base\n"), std::string::npos) << r.out;
}

TEST(CliInspect, AnAdapterWithoutMetadataSaysSo) {
  TempDir tmp;
  const s2ft_model_shape shape{kLayers, kD, kHeads, kKv, kHd, kFf};
  s2ft_adapter *a = nullptr;
  ASSERT_EQ(s2ft_adapter_create(&shape, "bare", 1.0, &a), S2FT_OK) << s2ft_last_error();
  ASSERT_EQ(s2ft_adapter_save(a, (tmp / "a.safetensors").c_str()), S2FT_OK) << s2ft_last_error();
  s2ft_adapter_destroy(a);
  const RunResult r = run_cli("inspect " + quote(tmp / "a.safetensors"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("\n  metadata: none\n"), std::string::npos) << r.out;
}

TEST(CliHelp, SelectAndPermuteListEverySelectionOption) {
  for (const char *cmd : {"select", "permute"}) {
    const RunResult r = run_cli(std::string(cmd) + " --help");
    ASSERT_EQ(r.rc, 0);
    for (const char *option : {"--strategy weight|principal|random", "--principal-rank", "--order", "--targets",
                               "--ratio-o", "--ratio-down", "--ratio-v", "--ratio-up", "--count-o", "--count-down",
                               "--count-v", "--count-up", "--allocation", "--heads", "--seed"})
      EXPECT_NE(r.out.find(option), std::string::npos) << cmd << " --help lacks " << option;
    // Why the other strategies are not offered, and what a unit is.
    EXPECT_NE(r.out.find("calibration data"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("KV groups"), std::string::npos) << r.out;
  }
}

TEST_F(CliErrors, OutputInsideAnInputFolder) {
  const std::string adapter = tmp / "a.safetensors";
  ASSERT_EQ(run_cli("diff " + quote(ckpt) + " " + quote(ckpt) + " --selection " + quote(sel) + " -o " + quote(adapter))
                .rc,
            0);
  const std::vector<fs::path> before = {fs::directory_iterator(ckpt), fs::directory_iterator()};
  const auto bytes_before = folder_files(ckpt);
  expect_one_line_error(run_cli("select " + quote(ckpt) + " -o " + quote(ckpt + "/new.json")), "select",
                        "inside the input folder");
  // The selection file a permuted folder carries would make the base look permuted.
  expect_one_line_error(run_cli("select " + quote(ckpt) + " -o " + quote(ckpt + "/s2ft-selection.json")), "select",
                        "inside the input folder");
  expect_one_line_error(run_cli("permute " + quote(ckpt) + " --selection " + quote(sel) + " -o " + quote(ckpt + "/p")),
                        "permute", "inside the input folder");
  expect_one_line_error(run_cli("merge " + quote(ckpt) + " " + quote(adapter) + " -o " + quote(ckpt + "/m")), "merge",
                        "inside the input folder");
  expect_one_line_error(run_cli("diff " + quote(ckpt) + " " + quote(ckpt) + " --selection " + quote(sel) + " -o " +
                                quote(ckpt + "/d.safetensors")),
                        "diff", "inside the input folder");
  const std::vector<fs::path> after = {fs::directory_iterator(ckpt), fs::directory_iterator()};
  EXPECT_EQ(after.size(), before.size());
  EXPECT_EQ(map_diff(folder_files(ckpt), bytes_before), "");

  // Nor may any command drop an s2ft-selection.json into another checkpoint folder.
  const std::string other = tmp / "other";
  write_tiny(other, Layout{"F32", 1, false}, 2);
  expect_one_line_error(run_cli("select " + quote(ckpt) + " -o " + quote(other + "/s2ft-selection.json")), "select",
                        "as permuted");
  expect_one_line_error(run_cli("fuse " + quote(adapter) + " -o " + quote(other + "/s2ft-selection.json")), "fuse",
                        "as permuted");
  EXPECT_FALSE(fs::exists(other + "/s2ft-selection.json"));
}

// An (empty) adapter for a model with two more FFN channels.
void write_adapter_of_another_shape(const std::string &path) {
  const s2ft_model_shape shape{kLayers, kD, kHeads, kKv, kHd, kFf + 2};
  s2ft_adapter *a = nullptr;
  ASSERT_EQ(s2ft_adapter_create(&shape, "wide", 1.0, &a), S2FT_OK) << s2ft_last_error();
  ASSERT_EQ(s2ft_adapter_save(a, path.c_str()), S2FT_OK) << s2ft_last_error();
  s2ft_adapter_destroy(a);
}

TEST_F(CliErrors, AFileOfTheWrongKindIsNamedForWhatItIs) {
  const std::string adapter = tmp / "a.safetensors", out = " -o " + quote(tmp / "out");
  ASSERT_EQ(run_cli("diff " + quote(ckpt) + " " + quote(ckpt) + " --selection " + quote(sel) + " -o " + quote(adapter))
                .rc,
            0);
  s2ft::io::SafetensorsWriter opt;
  opt.set_metadata("format", "s2ft-optimizer");
  const float zero = 0.0f;
  opt.add("step", "F32", {1}, &zero, 4);
  opt.write(tmp / "opt.safetensors");
  s2ft::io::SafetensorsWriter plain;
  plain.add("x", "F32", {1}, &zero, 4);
  plain.write(tmp / "plain.safetensors");
  write_text(tmp / "notes.txt", "just some text\n");
  fs::create_directories(tmp / "empty");

  const std::string m = "merge " + quote(ckpt) + " ";
  expect_one_line_error(run_cli(m + quote(sel) + out), "merge", "sel.json is a selection file, not an adapter");
  expect_one_line_error(run_cli(m + quote(ckpt + "/model.safetensors") + out), "merge",
                        "is a file of model weights (a checkpoint's safetensors file), not an adapter");
  expect_one_line_error(run_cli(m + quote(tmp / "opt.safetensors") + out), "merge",
                        "is an optimizer state file, not an adapter");
  expect_one_line_error(run_cli(m + quote(tmp / "plain.safetensors") + out), "merge",
                        "is a safetensors file without s2ft metadata, not an adapter");
  expect_one_line_error(run_cli(m + quote(tmp / "notes.txt") + out), "merge",
                        "is neither a safetensors nor a JSON file, not an adapter");
  expect_one_line_error(run_cli("fuse " + quote(adapter) + " " + quote(sel) + " -o " + quote(tmp / "f.safetensors")),
                        "fuse", "is a selection file, not an adapter");
  const std::string p = "permute " + quote(ckpt) + " --selection ";
  expect_one_line_error(run_cli(p + quote(adapter) + out), "permute", "is an adapter, not a selection file");
  expect_one_line_error(run_cli(p + quote(ckpt + "/config.json") + out), "permute",
                        "is a checkpoint's config.json, not a selection file");
  expect_one_line_error(run_cli("diff " + quote(ckpt) + " " + quote(ckpt) + " --selection " + quote(adapter) +
                                " -o " + quote(tmp / "d.safetensors")),
                        "diff", "is an adapter, not a selection file");
  expect_one_line_error(run_cli("select " + quote(adapter) + " -o " + quote(tmp / "s.json")), "select",
                        "is an adapter, not a checkpoint folder");
  expect_one_line_error(run_cli("select " + quote(sel) + " -o " + quote(tmp / "s.json")), "select",
                        "is a selection file, not a checkpoint folder");
  expect_one_line_error(run_cli("select " + quote(tmp / "empty") + " -o " + quote(tmp / "s.json")), "select",
                        "no config.json");
  expect_one_line_error(run_cli(m + quote(tmp / "empty") + out), "merge",
                        "is a folder without config.json, not an adapter");
  expect_one_line_error(run_cli(m + quote(ckpt) + out), "merge", "is a checkpoint folder, not an adapter");
  write_text(tmp / "index.json", R"({"metadata":{},"weight_map":{"x":"model.safetensors"}})");
  expect_one_line_error(run_cli(p + quote(tmp / "index.json") + out), "permute",
                        "is a checkpoint's shard index, not a selection file");
  write_text(tmp / "other.json", R"({"format":"something-else"})");
  expect_one_line_error(run_cli(p + quote(tmp / "other.json") + out), "permute",
                        "is a JSON file of another kind, not a selection file");
  EXPECT_FALSE(fs::exists(tmp / "out"));

  // inspect goes by content, not by name.
  fs::copy_file(sel, tmp / "selection.dat");
  fs::copy_file(adapter, tmp / "adapter.bin");
  RunResult r = run_cli("inspect " + quote(tmp / "selection.dat"));
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.rfind("selection ", 0), 0u) << r.out;
  r = run_cli("inspect " + quote(tmp / "adapter.bin"));
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.rfind("adapter ", 0), 0u) << r.out;
  expect_one_line_error(run_cli("inspect " + quote(tmp / "notes.txt")), "inspect", "neither a safetensors nor a JSON");
  expect_one_line_error(run_cli("inspect " + quote(ckpt + "/config.json")), "inspect", "config.json");
  // A damaged file of the expected kind still gets its loader's reason.
  write_text(tmp / "cut.safetensors", read_text(adapter).substr(0, 40));
  expect_one_line_error(run_cli(m + quote(tmp / "cut.safetensors") + out), "merge", "cut.safetensors");
}

TEST_F(CliErrors, MessagesUseTheToolsNamesAndUnits) {
  const std::string out = " -o " + quote(tmp / "s2.json");
  // 4 query heads over 2 KV heads: 2 o units per layer under by-group.
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --count-o 3"), "select",
                        "--count-o 3 is more than the 2 o units per layer of this checkpoint (under --heads by-group "
                        "an o unit is a KV group, the 2 query heads that share one KV head");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --count-o 5 --heads single"), "select",
                        "--count-o 5 is more than the 4 o units per layer of this checkpoint (an o unit is a query head)");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --count-down 21 --allocation global"), "select",
                        "--count-down 21 is more than the 20 down units in all 2 layers");
  expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --targets v --count-v 3"), "select",
                        "a v unit is a KV head");
  for (const char *strategy : {"activation", "weight-activation", "gradient"})
    expect_one_line_error(run_cli("select " + quote(ckpt) + out + " --strategy " + strategy), "select",
                          "calibration data");

  // Fusion errors name the files.
  const std::string a = tmp / "a.safetensors", b = tmp / "b.safetensors", wide = tmp / "wide.safetensors";
  const std::string other = tmp / "other";
  write_tiny(other, Layout{"F32", 1, false}, 2);
  for (const auto &[from, to] : {std::make_pair(ckpt, a), std::make_pair(other, b)})
    ASSERT_EQ(run_cli("diff " + quote(from) + " " + quote(from) + " --selection " + quote(sel) + " -o " + quote(to)).rc,
              0);
  write_adapter_of_another_shape(wide);
  expect_one_line_error(run_cli("fuse " + quote(a) + " " + quote(b) + " -o " + quote(tmp / "f.safetensors")), "fuse",
                        a + " and " + b + " were made against different base weights");
  expect_one_line_error(run_cli("fuse " + quote(a) + " " + quote(wide) + " -o " + quote(tmp / "f.safetensors")), "fuse",
                        wide + " is for another model shape");
  expect_one_line_error(run_cli("merge " + quote(ckpt) + " " + quote(a) + " " + quote(b) + " -o " + quote(tmp / "m")),
                        "merge", "different base weights");
  expect_one_line_error(run_cli("merge " + quote(ckpt) + " " + quote(wide) + " -o " + quote(tmp / "m")), "merge",
                        wide + " is for another model shape");
  expect_one_line_error(run_cli("merge " + quote(other) + " " + quote(a) + " -o " + quote(tmp / "m")), "merge",
                        a + " was made against other base weights than those of " + other +
                            " (first at model.layers.0.");
}

// A safetensors file with the given header text and data buffer.
void write_raw_safetensors(const std::string &path, const std::string &header, const std::string &data) {
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[static_cast<size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  write_text(path, file + header + data);
}

// A damaged safetensors file is named with the library reader's reason (its
// every check is tested in tests/unit/test_safetensors.cpp), in one line.
TEST_F(CliErrors, DamagedSafetensorsHeadersAreNamed) {
  const std::string x = R"("x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  const std::string named = "h.safetensors' is not a valid safetensors file: ";
  const struct {
    std::string header, needle;
  } cases[] = {
      {"{" + x + "," + x + "}", "JSON has the key \"x\" more than once"},
      {"{x", "malformed JSON"},
      {R"({"x":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}})", "unknown dtype \"Q7\""},
      {R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,12]}})", "run past the data buffer of 8 bytes"},
      {R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
       "tensors \"x\" and \"y\" overlap"},
  };
  for (const auto &c : cases) {
    SCOPED_TRACE(c.header);
    write_raw_safetensors(tmp / "h.safetensors", c.header, std::string(8, '\0'));
    const RunResult r = run_cli("inspect " + quote(tmp / "h.safetensors"));
    expect_one_line_error(r, "inspect", named);
    expect_one_line_error(r, "inspect", c.needle);
  }
  // Too short for a header length, an empty header, a length past the end.
  write_text(tmp / "h.safetensors", "abc");
  expect_one_line_error(run_cli("inspect " + quote(tmp / "h.safetensors")), "inspect", "shorter than the 8-byte");
  write_raw_safetensors(tmp / "h.safetensors", "", std::string(8, '\0'));
  expect_one_line_error(run_cli("inspect " + quote(tmp / "h.safetensors")), "inspect", "the header is empty");
  write_text(tmp / "h.safetensors", std::string("\x40\0\0\0\0\0\0\0{}", 10));
  expect_one_line_error(run_cli("inspect " + quote(tmp / "h.safetensors")), "inspect", "runs past the end of the file");
  // A shard of a checkpoint folder goes through the same checks.
  write_raw_safetensors(ckpt + "/model.safetensors", "{" + x + "," + x + "}", std::string(8, '\0'));
  expect_one_line_error(run_cli("inspect " + quote(ckpt)), "inspect", "more than once");
}

// A checkpoint whose file declares a 1 TiB tensor after the real ones: the
// file is sparse, so only a reader that stays in the header can summarize it.
void write_checkpoint_with_huge_tensor(const std::string &dir) {
  const uint64_t kHuge = uint64_t(1) << 40;
  nlohmann::ordered_json header;
  std::string data;
  for (const RawTensor &t : tiny_tensors("F32", 1, false)) {
    header[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data.append(t.bytes.begin(), t.bytes.end());
  }
  header["model.huge_buffer"] = {
      {"dtype", "U8"}, {"shape", {kHuge}}, {"data_offsets", {data.size(), data.size() + kHuge}}};
  const std::string text = header.dump();
  fs::create_directories(dir);
  write_text(dir + "/config.json", tiny_config("float32").dump());
  write_raw_safetensors(dir + "/model.safetensors", text, data);
  fs::resize_file(dir + "/model.safetensors", 8 + text.size() + data.size() + kHuge);
}

TEST(CliInspect, ReadsOnlyTheSafetensorsHeaders) {
  TempDir tmp;
  const std::string dir = tmp / "huge";
  write_checkpoint_with_huge_tensor(dir);
  uint64_t tiny_params = 0;
  for (const RawTensor &t : tiny_tensors("F32", 1, false)) tiny_params += t.bytes.size() / 4;
  RunResult r = run_cli("inspect " + quote(dir));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("parameters: " + std::to_string(tiny_params + (uint64_t(1) << 40)) + "\n"), std::string::npos)
      << r.out;
  r = run_cli("inspect " + quote(dir + "/model.safetensors"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("model.huge_buffer  U8 [1099511627776]"), std::string::npos) << r.out;
  // The header is still checked against the file: cut the hole short.
  fs::resize_file(dir + "/model.safetensors", fs::file_size(dir + "/model.safetensors") - 1);
  expect_one_line_error(run_cli("inspect " + quote(dir)), "inspect", "model.huge_buffer");
}

TEST(CliProgress, PermuteMergeAndDiffDrawProgressOnATerminal) {
  TempDir tmp;
  const std::string base = tmp / "base", tuned = tmp / "tuned", sel = tmp / "sel.json", a = tmp / "a.safetensors";
  write_tiny(base, Layout{"F32", 2, false}, 3);
  ASSERT_EQ(run_cli("select " + quote(base) + " -o " + quote(sel)).rc, 0);
  write_tuned(tuned, 3, nlohmann::json::parse(read_text(sel)), [](float v) { return v * 1.001f; });

  std::string shown = run_cli_on_terminal("permute " + quote(base) + " --selection " + quote(sel) + " -o " +
                                          quote(tmp / "perm"));
  for (const char *line : {"permuting layer 2/2", "writing "})
    EXPECT_NE(shown.find(line), std::string::npos) << "permute did not show '" << line << "' in: " << shown;
  shown = run_cli_on_terminal("diff " + quote(base) + " " + quote(tuned) + " --selection " + quote(sel) + " -o " +
                              quote(a));
  for (const char *line : {"extracting layer 2/2", "comparing layer 2/2"})
    EXPECT_NE(shown.find(line), std::string::npos) << "diff did not show '" << line << "' in: " << shown;
  shown = run_cli_on_terminal("merge " + quote(base) + " " + quote(a) + " -o " + quote(tmp / "merged"));
  for (const std::string &line : {"merging " + a, std::string("writing ")})
    EXPECT_NE(shown.find(line), std::string::npos) << "merge did not show '" << line << "' in: " << shown;
  EXPECT_TRUE(fs::exists(tmp / "merged/config.json"));
}

// ---- issue 18: what the tool prints cannot drive the terminal ------------------

// Counts the ESC bytes in `text` that are not the tool's own "erase to the
// end of the line" (ESC [ K) of its progress lines.
size_t foreign_escapes(const std::string &text) {
  size_t n = 0;
  for (size_t at = text.find('\x1b'); at != std::string::npos; at = text.find('\x1b', at + 1))
    if (text.compare(at, 3, "\x1b[K") != 0) ++n;
  return n;
}

// Names and paths holding newlines and escape sequences (a forged line, a
// colour, a cleared screen, a one-byte CSI) are printed escaped, on stdout,
// in error and warning lines and in progress lines; valid non-ASCII text
// is printed as it is, bytes that are not UTF-8 as \xNN.
TEST(CliOutput, ControlCharactersAreShownEscaped) {
  TempDir tmp;
  const std::string evil = "ev\nil\x1b[2J\r\x07\xc2\x9b" "31m caf\xc3\xa9";
  const std::string shown = "ev\\nil\\x1b[2J\\r\\x07\\xc2\\x9b31m caf\xc3\xa9";
  const std::string base = tmp / evil, sel = tmp / "sel.json", a = tmp / "a.safetensors";
  write_tiny(base, Layout{"F32", 1, false});
  RunResult r = run_cli("select " + quote(base) + " -o " + quote(sel));
  ASSERT_EQ(r.rc, 0) << r.err;
  r = run_cli("inspect " + quote(base));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.rfind("checkpoint " + tmp.path() + "/" + shown + "\n", 0), 0u) << r.out;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos);
  EXPECT_EQ(r.out.find('\r'), std::string::npos);

  // An adapter name from --name, printed by fuse and by inspect.
  ASSERT_EQ(run_cli("diff " + quote(base) + " " + quote(base) + " --selection " + quote(sel) + " -o " + quote(a)).rc, 0);
  r = run_cli("fuse " + quote(a) + " -o " + quote(tmp / "f.safetensors") + " --name " + quote(evil));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  r = run_cli("inspect " + quote(tmp / "f.safetensors"));
  EXPECT_NE(r.out.find("name: \"" + shown + "\"\n"), std::string::npos) << r.out;

  // Error lines, with a path that is not UTF-8 either.
  r = run_cli("inspect " + quote(tmp / (evil + "\xff")));
  expect_one_line_error(r, "inspect", shown + "\\xff does not exist");
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos);

  // Warning lines: the tuned folder differs outside the selection.
  std::vector<RawTensor> t = tiny_tensors("F32", 1, false);
  for (RawTensor &x : t)
    if (x.name == "model.norm.weight") x.bytes[0] ^= 1;
  write_checkpoint(tmp / (evil + "2"), tiny_config("float32"), t, 1);
  r = run_cli("diff " + quote(base) + " " + quote(tmp / (evil + "2")) + " --selection " + quote(sel) + " -o " +
              quote(tmp / "d.safetensors"));
  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_EQ(r.err_lines().size(), 1u) << r.err;
  EXPECT_EQ(r.err_lines()[0].rfind("s2ft diff: warning: tensor model.norm.weight differs", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(shown + "2"), std::string::npos) << r.err;
  EXPECT_EQ(foreign_escapes(r.err + r.out), 0u);

  // Progress lines on a terminal.
  const std::string drawn = run_cli_on_terminal("permute " + quote(base) + " --selection " + quote(sel) + " -o " +
                                                quote(tmp / (evil + "perm")));
  EXPECT_NE(drawn.find("writing " + tmp.path() + "/" + shown + "perm"), std::string::npos) << drawn;
  EXPECT_EQ(foreign_escapes(drawn), 0u) << drawn;
}


// ---- export --format peft -------------------------------------------------

class CliExport : public ::testing::Test {
 protected:
  void SetUp() override {
    write_tiny(base, Layout{"F32", 1, false}, 3);
    ASSERT_EQ(run_cli("select " + quote(base) + " -o " + quote(sel) + " --count-o 1 --count-down 3").rc, 0);
    const nlohmann::json sj = nlohmann::json::parse(read_text(sel));
    write_tuned(tuned, 3, sj, [](float v) { return v * 1.001f; });
    const RunResult r = run_cli("diff " + quote(base) + " " + quote(tuned) + " --selection " + quote(sel) + " -o " +
                                quote(adapter) + " --scale 2");
    ASSERT_EQ(r.rc, 0) << r.err;
  }
  std::string export_args(const std::string &out, const std::string &base_dir) const {
    return "export --format peft " + quote(adapter) + " --base " + quote(base_dir) + " -o " + quote(out);
  }
  TempDir tmp;
  std::string base = tmp / "base", tuned = tmp / "tuned", sel = tmp / "sel.json", adapter = tmp / "a.safetensors";
};

// The folder holds the two PEFT files; each module's delta factor is
// scale * delta (the adapter's default scale 2, or --scale), rank k and
// alpha k per module; the base name is the folder as given unless its
// config.json has "_name_or_path".
TEST_F(CliExport, WritesThePeftFolder) {
  const std::string out = tmp / "peft";
  RunResult r = run_cli(export_args(out, base));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  EXPECT_EQ(r.out, "exported " + adapter + " as a PEFT LoRA adapter (4 modules of rank 3 to 6) to " + out + "\n");
  EXPECT_EQ(folder_files(out).size(), 2u);
  const nlohmann::json cfg = nlohmann::json::parse(read_text(out + "/adapter_config.json"));
  EXPECT_EQ(cfg.at("base_model_name_or_path"), base);
  EXPECT_EQ(cfg.at("r"), 6);
  EXPECT_EQ(cfg.at("rank_pattern"), (nlohmann::json{{"layers.0.mlp.down_proj", 3}, {"layers.0.self_attn.o_proj", 6},
                                                    {"layers.1.mlp.down_proj", 3}, {"layers.1.self_attn.o_proj", 6}}));
  EXPECT_EQ(cfg.at("alpha_pattern"), cfg.at("rank_pattern"));

  s2ft_adapter *a = nullptr;
  ASSERT_EQ(s2ft_adapter_load(adapter.c_str(), &a), S2FT_OK) << s2ft_last_error();
  std::unique_ptr<s2ft_adapter, void (*)(s2ft_adapter *)> guard(a, s2ft_adapter_destroy);
  for (const double scale : {2.0, -0.75}) {
    SCOPED_TRACE(scale);
    const std::string dir = tmp / ("peft" + std::to_string(scale));
    const std::string extra = scale == 2.0 ? "" : " --scale -0.75";
    ASSERT_EQ(run_cli(export_args(dir, base) + extra).rc, 0);
    const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(dir + "/adapter_model.safetensors");
    for (int32_t l = 0; l < kLayers; ++l)
      for (int32_t t : {S2FT_TARGET_O, S2FT_TARGET_DOWN}) {
        const int64_t k = t == S2FT_TARGET_O ? 6 : 3;
        std::vector<float> delta(static_cast<size_t>(kD * k));
        s2ft_tensor dt;
        ASSERT_EQ(s2ft_tensor_cpu_f32_2d(&dt, delta.data(), kD, k), S2FT_OK);
        ASSERT_EQ(s2ft_adapter_delta(a, l, t, &dt), S2FT_OK) << s2ft_last_error();
        const std::string name = "base_model.model.model.layers." + std::to_string(l) +
                                 (t == S2FT_TARGET_O ? ".self_attn.o_proj" : ".mlp.down_proj") + ".lora_B.weight";
        const s2ft::io::TensorInfo *b = f.find(name);
        ASSERT_NE(b, nullptr) << name;
        ASSERT_EQ(b->shape, (std::vector<int64_t>{kD, k}));
        const std::string bytes(reinterpret_cast<const char *>(f.data(*b)), b->end - b->begin);
        for (size_t i = 0; i < delta.size(); ++i)
          ASSERT_EQ(f32_at(bytes, i), static_cast<float>(scale * delta[i])) << name << " element " << i;
      }
  }

  // A base whose config.json names the model.
  nlohmann::json named = tiny_config("float32");
  named["_name_or_path"] = "org/tiny-llama";
  write_checkpoint(tmp / "named", named, tiny_tensors("F32", 3, false), 2);
  ASSERT_EQ(run_cli(export_args(tmp / "peft-named", tmp / "named")).rc, 0);
  EXPECT_EQ(nlohmann::json::parse(read_text(tmp / "peft-named/adapter_config.json")).at("base_model_name_or_path"),
            "org/tiny-llama");
}

// Another base's weights are refused unless --force; another shape always.
TEST_F(CliExport, ChecksTheBase) {
  const std::string other = tmp / "other";
  write_tiny(other, Layout{"F32", 1, false}, 4);
  expect_one_line_error(run_cli(export_args(tmp / "o1", other)), "export",
                        "was made against other base weights than those of " + other + " (first at layer 0 target O");
  EXPECT_FALSE(fs::exists(tmp / "o1"));
  const RunResult r = run_cli(export_args(tmp / "o2", other) + " --force");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(fs::exists(tmp / "o2/adapter_model.safetensors"));

  // A bf16 copy of the base has the same fingerprints (bf16-rounded values).
  write_tiny(tmp / "bf16", Layout{"BF16", 2, false}, 3);
  EXPECT_EQ(run_cli(export_args(tmp / "o3", tmp / "bf16")).rc, 0);

  // One layer instead of two.
  nlohmann::json cfg = tiny_config("float32");
  cfg["num_hidden_layers"] = 1;
  std::vector<RawTensor> t;
  for (const RawTensor &x : tiny_tensors("F32", 3, false))
    if (x.name.rfind("model.layers.1.", 0) != 0) t.push_back(x);
  write_checkpoint(tmp / "short", cfg, t, 1);
  expect_one_line_error(run_cli(export_args(tmp / "o4", tmp / "short")), "export", "is for another model shape");

  // A permuted checkpoint is not what the adapter is served on.
  ASSERT_EQ(run_cli("permute " + quote(base) + " --selection " + quote(sel) + " -o " + quote(tmp / "perm")).rc, 0);
  expect_one_line_error(run_cli(export_args(tmp / "o5", tmp / "perm")), "export",
                        "is permuted (it has s2ft-selection.json)");
}

TEST_F(CliExport, BadCommandLines) {
  const std::string out = quote(tmp / "out");
  expect_one_line_error(run_cli("export " + quote(adapter) + " --base " + quote(base) + " -o " + out), "export",
                        "--format is required (peft)");
  expect_one_line_error(run_cli("export --format gguf " + quote(adapter) + " --base " + quote(base) + " -o " + out),
                        "export", "unknown --format 'gguf' (the only format is peft)");
  expect_one_line_error(run_cli("export --format peft --base " + quote(base) + " -o " + out), "export",
                        "expected one ADAPTER");
  expect_one_line_error(run_cli("export --format peft " + quote(adapter) + " " + quote(adapter) + " --base " +
                                quote(base) + " -o " + out),
                        "export", "expected one ADAPTER");
  expect_one_line_error(run_cli("export --format peft " + quote(adapter) + " -o " + out), "export",
                        "--base BASE_CKPT is required");
  expect_one_line_error(run_cli("export --format peft " + quote(adapter) + " --base " + quote(base)), "export",
                        "-o OUT_DIR is required");
  expect_one_line_error(run_cli(export_args(tmp / "out", base) + " --scale x"), "export", "--scale expects a finite");
  expect_one_line_error(run_cli(export_args(tmp / "out", base) + " --scale 1e300"), "export",
                        "--scale 1.0000000000000001e+300 times the delta");
  expect_one_line_error(run_cli("export --format peft " + quote(sel) + " --base " + quote(base) + " -o " + out),
                        "export", "not an adapter");
  expect_one_line_error(run_cli("export --format peft " + quote(adapter) + " --base " + quote(tmp / "nope") + " -o " +
                                out),
                        "export", "does not exist");
  fs::create_directories(tmp / "full");
  write_text(tmp / "full/x", "x");
  expect_one_line_error(run_cli(export_args(tmp / "full", base)), "export", "not empty");
  expect_one_line_error(run_cli(export_args(base, base)), "export", "is an input");
  EXPECT_FALSE(fs::exists(tmp / "out"));
}

}  // namespace
