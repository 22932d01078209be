// The s2ft command-line tool on small made-up checkpoints (f32 single file,
// bf16 sharded into two files with an index): every --help, select ->
// permute -> permute --inverse restoring the input byte for byte, diff ->
// merge reproducing fine-tuned weights, fuse, inspect, and one test per
// error path (non-zero exit, exactly one line on stderr).
#include <gtest/gtest.h>

#include <cstring>

#include "cli/cli_test_util.hpp"
#include "support/test_util.hpp"

using namespace cli_test;

namespace {

// A small GQA model: 2 layers, d_model 12, 4 query heads over 2 KV heads
// (head_dim 3), 10 FFN channels, vocabulary 16.
const int64_t kLayers = 2, kD = 12, kHeads = 4, kKv = 2, kHd = 3, kFf = 10, kVocab = 16;

nlohmann::json tiny_config(const std::string &torch_dtype) {
  return {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", kD},
          {"num_hidden_layers", kLayers},          {"num_attention_heads", kHeads},
          {"num_key_value_heads", kKv},            {"intermediate_size", kFf},
          {"head_dim", kHd},                       {"vocab_size", kVocab},
          {"rms_norm_eps", 1e-5},                  {"tie_word_embeddings", false},
          {"torch_dtype", torch_dtype}};
}

RawTensor random_tensor(const std::string &name, const std::string &dtype, std::vector<int64_t> shape,
                        s2ft_test::Random &rng) {
  RawTensor t{name, dtype, shape, {}};
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  for (int64_t i = 0; i < n; ++i) {
    const float v = static_cast<float>(rng.uniform(-1.0, 1.0));
    if (dtype == "F32") {
      uint8_t b[4];
      std::memcpy(b, &v, 4);
      t.bytes.insert(t.bytes.end(), b, b + 4);
    } else {
      const uint16_t h = s2ft_test::to_bf16(v);
      t.bytes.push_back(static_cast<uint8_t>(h & 0xff));
      t.bytes.push_back(static_cast<uint8_t>(h >> 8));
    }
  }
  return t;
}

// The tensors of the tiny model. With `misalign`, a 3-element BF16 tensor
// comes first so every later F32 tensor starts 2 bytes off 4-alignment.
std::vector<RawTensor> tiny_tensors(const std::string &dtype, uint64_t seed, bool misalign) {
  s2ft_test::Random rng(seed);
  std::vector<RawTensor> t;
  if (misalign) t.push_back(random_tensor("model.extra_scale", "BF16", {3}, rng));
  t.push_back(random_tensor("model.embed_tokens.weight", dtype, {kVocab, kD}, rng));
  for (int64_t l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back(random_tensor(p + "input_layernorm.weight", dtype, {kD}, rng));
    t.push_back(random_tensor(p + "self_attn.q_proj.weight", dtype, {kHeads * kHd, kD}, rng));
    t.push_back(random_tensor(p + "self_attn.k_proj.weight", dtype, {kKv * kHd, kD}, rng));
    t.push_back(random_tensor(p + "self_attn.v_proj.weight", dtype, {kKv * kHd, kD}, rng));
    t.push_back(random_tensor(p + "self_attn.o_proj.weight", dtype, {kD, kHeads * kHd}, rng));
    t.push_back(random_tensor(p + "post_attention_layernorm.weight", dtype, {kD}, rng));
    t.push_back(random_tensor(p + "mlp.gate_proj.weight", dtype, {kFf, kD}, rng));
    t.push_back(random_tensor(p + "mlp.up_proj.weight", dtype, {kFf, kD}, rng));
    t.push_back(random_tensor(p + "mlp.down_proj.weight", dtype, {kD, kFf}, rng));
  }
  t.push_back(random_tensor("model.norm.weight", dtype, {kD}, rng));
  t.push_back(random_tensor("lm_head.weight", dtype, {kVocab, kD}, rng));
  return t;
}

struct Layout {
  const char *dtype;
  int shards;
  bool misalign;
};

void write_tiny(const std::string &dir, const Layout &lay, uint64_t seed = 1) {
  write_checkpoint(dir, tiny_config(std::string(lay.dtype) == "F32" ? "float32" : "bfloat16"),
                   tiny_tensors(lay.dtype, seed, lay.misalign), lay.shards);
}

// All tensors of a checkpoint folder (every *.safetensors in it), name -> raw bytes.
std::map<std::string, std::string> folder_tensors(const std::string &dir) {
  std::map<std::string, std::string> out;
  for (const fs::directory_entry &e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(e.path().string());
    for (const s2ft::io::TensorInfo &t : f.tensors())
      out[t.name] = std::string(reinterpret_cast<const char *>(f.data(t)), static_cast<size_t>(t.end - t.begin));
  }
  return out;
}

// Column c of a row-major [rows, cols] matrix of `elem`-byte elements.
std::string column(const std::string &m, int64_t rows, int64_t cols, int64_t c, size_t elem) {
  std::string out;
  for (int64_t r = 0; r < rows; ++r) out += m.substr(static_cast<size_t>(r * cols + c) * elem, elem);
  return out;
}

TEST(CliHelp, EveryCommandHelpExitsZero) {
  for (const char *cmd : {"inspect", "select", "permute", "merge", "fuse", "diff"}) {
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
  expect_one_line_error(run_cli("inspect " + quote(sh)), "inspect", "twice");
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

}  // namespace
