// The s2ft command-line tool on a real, trained GQA model (stories260K in the
// Hugging Face layout, ../shared/data/stories260K-hf): inspect, select,
// permute (logits unchanged against a float64 reference forward; the inverse
// restores the file byte for byte), diff -> merge reproducing a perturbed
// copy's weights bit for bit (also with --scale), and diff reporting exactly
// the elements where merge is not bit-exact. Skips when the data is absent.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "cli/cli_test_util.hpp"
#include "support/llama_model_ref.hpp"
#include "support/realdata.hpp"
#include "support/test_util.hpp"

using namespace cli_test;

namespace {

using s2ft_test::data_dir;
using s2ft_test::model_dir;

struct Loaded {
  s2ft_ref::BlockShape shape;
  int64_t vocab = 0;
  s2ft_ref::ModelWeights weights;
};

std::vector<double> tensor_f64(const s2ft::io::SafetensorsFile &f, const std::string &name, int64_t n) {
  const s2ft::io::TensorInfo *t = f.find(name);
  if (t == nullptr) throw std::runtime_error("missing tensor " + name);
  if (t->dtype != "F32" || static_cast<int64_t>(t->end - t->begin) != n * 4)
    throw std::runtime_error(name + " is not F32 of the expected size");
  std::vector<float> v(static_cast<size_t>(n));
  std::memcpy(v.data(), f.data(*t), v.size() * 4);
  return std::vector<double>(v.begin(), v.end());
}

// Reads a single-file F32 checkpoint folder for the reference forward.
Loaded load_for_reference(const std::string &dir) {
  const nlohmann::json cfg = nlohmann::json::parse(read_text(dir + "/config.json"));
  Loaded m;
  s2ft_ref::BlockShape &s = m.shape;
  s.d_model = cfg.at("hidden_size").get<int64_t>();
  s.n_heads = cfg.at("num_attention_heads").get<int64_t>();
  s.n_kv_heads = cfg.value("num_key_value_heads", s.n_heads);
  s.head_dim = cfg.value("head_dim", s.d_model / s.n_heads);
  s.d_ff = cfg.at("intermediate_size").get<int64_t>();
  s.rms_eps = cfg.at("rms_norm_eps").get<double>();
  s.rope_theta = cfg.value("rope_theta", 10000.0);
  m.vocab = cfg.at("vocab_size").get<int64_t>();
  const int64_t L = cfg.at("num_hidden_layers").get<int64_t>(), d = s.d_model;
  const int64_t nq = s.n_heads * s.head_dim, nkv = s.n_kv_heads * s.head_dim;
  const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(dir + "/model.safetensors");
  m.weights.embed = tensor_f64(f, "model.embed_tokens.weight", m.vocab * d);
  m.weights.final_norm = tensor_f64(f, "model.norm.weight", d);
  m.weights.lm_head = f.find("lm_head.weight") ? tensor_f64(f, "lm_head.weight", m.vocab * d) : m.weights.embed;
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    s2ft_ref::BlockWeights b;
    b.attn_norm = tensor_f64(f, p + "input_layernorm.weight", d);
    b.q = tensor_f64(f, p + "self_attn.q_proj.weight", nq * d);
    b.k = tensor_f64(f, p + "self_attn.k_proj.weight", nkv * d);
    b.v = tensor_f64(f, p + "self_attn.v_proj.weight", nkv * d);
    b.o = tensor_f64(f, p + "self_attn.o_proj.weight", d * nq);
    b.ffn_norm = tensor_f64(f, p + "post_attention_layernorm.weight", d);
    b.gate = tensor_f64(f, p + "mlp.gate_proj.weight", s.d_ff * d);
    b.up = tensor_f64(f, p + "mlp.up_proj.weight", s.d_ff * d);
    b.down = tensor_f64(f, p + "mlp.down_proj.weight", d * s.d_ff);
    m.weights.layers.push_back(b);
  }
  return m;
}

std::vector<double> logits(const std::string &dir, const std::vector<int64_t> &tokens) {
  const Loaded m = load_for_reference(dir);
  return s2ft_ref::llama_forward(m.shape, m.vocab, m.weights, tokens);
}

// max |a - b| / max |a|
double rel_err(const std::vector<double> &a, const std::vector<double> &b) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::fabs(a[i] - b[i]));
    den = std::max(den, std::fabs(a[i]));
  }
  return num / den;
}

std::map<std::string, std::string> file_tensors(const std::string &path) {
  const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(path);
  std::map<std::string, std::string> out;
  for (const s2ft::io::TensorInfo &t : f.tensors())
    out[t.name] = std::string(reinterpret_cast<const char *>(f.data(t)), static_cast<size_t>(t.end - t.begin));
  return out;
}

// The base-order lines a selection file trains in (layer, target).
std::vector<int64_t> selected_lines(const std::string &sel_path, int32_t layer, int32_t target) {
  s2ft_selection *s = nullptr;
  EXPECT_EQ(s2ft_selection_load(sel_path.c_str(), &s), S2FT_OK) << s2ft_last_error();
  std::unique_ptr<s2ft_selection, void (*)(s2ft_selection *)> guard(s, s2ft_selection_destroy);
  int64_t n = 0;
  EXPECT_EQ(s2ft_selection_indices(s, layer, target, S2FT_INDEX_LINES, nullptr, 0, &n), S2FT_OK);
  std::vector<int64_t> lines(static_cast<size_t>(n));
  EXPECT_EQ(s2ft_selection_indices(s, layer, target, S2FT_INDEX_LINES, lines.data(), n, &n), S2FT_OK);
  return lines;
}

// Writes a copy of the stories260K folder to `dir` with `change` applied to
// every element of the lines the selection trains (columns of o_proj and
// down_proj, rows of v_proj and up_proj); every other tensor as in the base,
// in file order. Returns the number of elements changed.
int64_t write_changed_copy(const std::string &sel_path, const std::string &dir,
                           const std::function<float(float)> &change) {
  const char *const kWeights[S2FT_NUM_TARGETS] = {".self_attn.o_proj.weight", ".self_attn.v_proj.weight",
                                                  ".mlp.down_proj.weight", ".mlp.up_proj.weight"};
  const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(model_dir() + "/model.safetensors");
  s2ft::io::SafetensorsWriter w;
  int64_t changed = 0;
  for (const s2ft::io::TensorInfo &t : f.tensors()) {
    std::vector<uint8_t> bytes(f.data(t), f.data(t) + (t.end - t.begin));
    for (int32_t l = 0; l < 5; ++l)
      for (int32_t target : {S2FT_TARGET_O, S2FT_TARGET_V, S2FT_TARGET_DOWN, S2FT_TARGET_UP}) {
        if (t.name != "model.layers." + std::to_string(l) + kWeights[target]) continue;
        const bool columns = target == S2FT_TARGET_O || target == S2FT_TARGET_DOWN;
        const int64_t rows = t.shape[0], width = t.shape[1];
        for (int64_t line : selected_lines(sel_path, l, target))
          for (int64_t x = 0; x < (columns ? rows : width); ++x) {
            const size_t at = static_cast<size_t>(columns ? x * width + line : line * width + x) * 4;
            float v;
            std::memcpy(&v, &bytes[at], 4);
            v = change(v);
            std::memcpy(&bytes[at], &v, 4);
            ++changed;
          }
      }
    w.add(t.name, t.dtype, t.shape, bytes.data(), bytes.size());
  }
  fs::create_directories(dir);
  fs::copy_file(model_dir() + "/config.json", dir + "/config.json");
  w.write(dir + "/model.safetensors");
  return changed;
}

class CliRealData : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(model_dir() + "/model.safetensors") || !fs::exists(model_dir() + "/config.json")) {
      std::printf("SKIP: stories260K-hf not found under %s (set S2FT_TEST_DATA)\n", data_dir().c_str());
      GTEST_SKIP() << "stories260K-hf not found under " << data_dir();
    }
  }
  TempDir tmp;
  const std::vector<int64_t> tokens = {1, 403, 407, 261, 378, 431, 274, 299, 2, 1, 77, 500};
};

TEST_F(CliRealData, InspectSelectPermuteKeepsLogitsAndInverseIsExact) {
  RunResult r = run_cli("inspect " + quote(model_dir()));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("layers 5, d_model 64, heads 8 (kv heads 4, head_dim 8), d_ff 172"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("tied embeddings: yes"), std::string::npos) << r.out;

  const std::vector<double> base = logits(model_dir(), tokens);
  struct Case {
    const char *options;
  } cases[] = {{"--targets o,down,v,up --ratio-o 0.25 --ratio-down 0.1 --ratio-v 0.5 --ratio-up 0.05"},
               {"--heads single --count-o 3 --count-down 17 --order smallest --allocation global"},
               {"--strategy random --seed 42 --targets o,down,up --count-o 2 --count-down 9 --count-up 20"}};
  int i = 0;
  for (const Case &c : cases) {
    SCOPED_TRACE(c.options);
    const std::string sel = tmp / ("sel" + std::to_string(i) + ".json"), perm = tmp / ("perm" + std::to_string(i)),
                      back = tmp / ("back" + std::to_string(i));
    ++i;
    r = run_cli("select " + quote(model_dir()) + " -o " + quote(sel) + " " + c.options);
    ASSERT_EQ(r.rc, 0) << r.err;
    r = run_cli("inspect " + quote(sel));
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_NE(r.out.find("layer 4:"), std::string::npos) << r.out;
    r = run_cli("permute " + quote(model_dir()) + " --selection " + quote(sel) + " -o " + quote(perm));
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(read_text(perm + "/model.safetensors") != read_text(model_dir() + "/model.safetensors"));
    const double err = rel_err(base, logits(perm, tokens));
    std::printf("permuted logits: relative error %.3g\n", err);
    EXPECT_LE(err, 1e-5);
    r = run_cli("inspect " + quote(perm));
    ASSERT_EQ(r.rc, 0) << r.err;
    r = run_cli("permute --inverse " + quote(perm) + " -o " + quote(back));
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(read_text(back + "/model.safetensors") == read_text(model_dir() + "/model.safetensors"));
    EXPECT_EQ(read_text(back + "/config.json"), read_text(model_dir() + "/config.json"));
  }
}

TEST_F(CliRealData, DiffThenMergeReproducesAPerturbedCopy) {
  const std::string sel = tmp / "sel.json";
  RunResult r = run_cli("select " + quote(model_dir()) + " -o " + quote(sel) + " --ratio-o 0.25 --ratio-down 0.05");
  ASSERT_EQ(r.rc, 0) << r.err;

  // The perturbed copy: exactly the selected o_proj / down_proj columns times
  // (1 + small noise); every other tensor as in the base, in file order.
  s2ft_test::Random rng(2024);
  const std::string tuned = tmp / "tuned";
  const int64_t perturbed = write_changed_copy(
      sel, tuned, [&](float v) { return v * static_cast<float>(1.0 + 1e-2 * rng.uniform(-1.0, 1.0)); });

  const std::string adapter = tmp / "tuned.safetensors";
  r = run_cli("diff " + quote(model_dir()) + " " + quote(tuned) + " --selection " + quote(sel) + " -o " +
              quote(adapter) + " --name stories-perturbed");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("selected elements: " + std::to_string(perturbed) + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("not reproduced exactly: 0\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("changed outside the selection: 0 elements"), std::string::npos) << r.out;
  EXPECT_TRUE(r.err.empty()) << r.err;

  r = run_cli("inspect " + quote(adapter));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("name: \"stories-perturbed\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("parameters: " + std::to_string(perturbed) + "\n"), std::string::npos) << r.out;

  const std::string merged = tmp / "merged";
  r = run_cli("merge " + quote(model_dir()) + " " + quote(adapter) + " -o " + quote(merged));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(map_diff(file_tensors(merged + "/model.safetensors"), file_tensors(tuned + "/model.safetensors")), "");
  for (const std::string &p : {tuned, merged}) {
    r = run_cli("inspect " + quote(p));
    EXPECT_EQ(r.rc, 0) << r.err;
  }

  // The adapter also merges into a permuted copy of the base (other selection).
  const std::string perm = tmp / "perm", pmerged = tmp / "pmerged", back = tmp / "back";
  ASSERT_EQ(run_cli("permute " + quote(model_dir()) + " --strategy random --seed 3 --targets o,down,v,up "
                    "--count-o 2 --count-down 30 --count-v 1 --count-up 10 -o " + quote(perm)).rc, 0);
  r = run_cli("merge " + quote(perm) + " " + quote(adapter) + " -o " + quote(pmerged));
  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_EQ(run_cli("permute --inverse " + quote(pmerged) + " -o " + quote(back)).rc, 0);
  EXPECT_EQ(map_diff(file_tensors(back + "/model.safetensors"), file_tensors(tuned + "/model.safetensors")), "");

  // With --scale 2 the adapter holds half the difference and merges at its
  // default scale 2 to the tuned weights again.
  r = run_cli("diff " + quote(model_dir()) + " " + quote(tuned) + " --selection " + quote(sel) + " -o " +
              quote(tmp / "half.safetensors") + " --scale 2");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("not reproduced exactly: 0\n"), std::string::npos) << r.out;
  r = run_cli("merge " + quote(model_dir()) + " " + quote(tmp / "half.safetensors") + " -o " + quote(tmp / "merged2"));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(map_diff(file_tensors(tmp / "merged2/model.safetensors"), file_tensors(tuned + "/model.safetensors")), "");

  // Merging against another base (the tuned copy) is refused without --force.
  const RunResult refused = run_cli("merge " + quote(tuned) + " " + quote(adapter) + " -o " + quote(tmp / "twice"));
  expect_one_line_error(refused, "merge", "--force");
  EXPECT_EQ(run_cli("merge " + quote(tuned) + " " + quote(adapter) + " --force -o " + quote(tmp / "twice")).rc, 0);
}

// The case found on this model: +0.01 (added in double, rounded to f32, as
// adding a Python float does) on every selected element of o, down and v.
// Where a weight is about as small as the change, TUNED - BASE is not an f32
// number and merging the f32 delta lands one unit in the last place away
// (453 of 10560 elements at scale 1); diff's report, the merged file and
// docs/cli.md's statement agree element for element, also at --scale 3.
TEST_F(CliRealData, DiffAndMergeAgreeOnWhereTheRoundTripIsInexact) {
  const std::string sel = tmp / "sel.json", tuned = tmp / "tuned", adapter = tmp / "a.safetensors";
  ASSERT_EQ(run_cli("select " + quote(model_dir()) + " -o " + quote(sel) +
                    " --targets o,down,v --ratio-o 0.25 --ratio-down 0.05 --count-v 1").rc,
            0);
  const int64_t changed =
      write_changed_copy(sel, tuned, [](float v) { return static_cast<float>(static_cast<double>(v) + 0.01); });
  for (const char *scale : {"1", "3"}) {
    SCOPED_TRACE(scale);
    const std::string merged = tmp / (std::string("merged") + scale);
    RunResult r = run_cli("diff " + quote(model_dir()) + " " + quote(tuned) + " --selection " + quote(sel) + " -o " +
                          quote(adapter) + " --scale " + scale);
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(report_value(r.out, "selected elements"), changed) << r.out;
    const int64_t reported = report_value(r.out, "not reproduced exactly");
    std::printf("scale %s: %lld of %lld elements not bit-exact\n", scale, static_cast<long long>(reported),
                static_cast<long long>(changed));
    const RunResult m = run_cli("merge " + quote(model_dir()) + " " + quote(adapter) + " -o " + quote(merged));
    ASSERT_EQ(m.rc, 0) << m.err;
    const RoundingCount c = count_rounding(file_tensors(model_dir() + "/model.safetensors"),
                                           file_tensors(tuned + "/model.safetensors"),
                                           file_tensors(merged + "/model.safetensors"), std::stod(scale));
    EXPECT_GT(c.not_exact, 0);
    EXPECT_EQ(reported, c.not_exact) << r.out;
    EXPECT_EQ(report_value(r.out, "more than one unit in the last place off"), c.beyond_one_ulp) << r.out;
    EXPECT_NE(r.err.find("one unit in the last place"), std::string::npos) << r.err;
  }
}

}  // namespace
