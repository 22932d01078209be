// Selection and co-permutation on a real, trained GQA model (stories260K in
// the Hugging Face layout): for every strategy and head granularity,
// permuting all layers leaves the logits unchanged and the inverse restores
// every weight bit for bit. Skips when the data folder is absent.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "io/safetensors.hpp"
#include "support/llama_model_ref.hpp"
#include "support/realdata.hpp"
#include "support/test_util.hpp"

using namespace s2ft_test;

namespace {


bool file_exists(const std::string &p) { return std::ifstream(p).good(); }

// One projection weight as loaded: compact row-major f32 and its descriptor.
struct Weight {
  int64_t rows = 0, cols = 0;
  std::vector<float> data;
  s2ft_tensor t{};
  void describe() { EXPECT_EQ(s2ft_tensor_cpu_f32_2d(&t, data.data(), rows, cols), S2FT_OK); }
  std::vector<double> to_double() const { return std::vector<double>(data.begin(), data.end()); }
};

struct Layer {
  Weight q, k, v, o, gate, up, down;
  std::vector<double> attn_norm, ffn_norm;
  Weight *all[7] = {&q, &k, &v, &o, &gate, &up, &down};
  Layer() = default;
  Layer(const Layer &other)
      : q(other.q), k(other.k), v(other.v), o(other.o), gate(other.gate), up(other.up), down(other.down),
        attn_norm(other.attn_norm), ffn_norm(other.ffn_norm) {
    for (Weight *w : all) w->describe();
  }
  Layer &operator=(const Layer &) = delete;
  s2ft_layer_weights weights() { return s2ft_layer_weights{&q.t, &k.t, &v.t, &o.t, &gate.t, &up.t, &down.t}; }
};

struct Model {
  s2ft_ref::BlockShape shape;
  s2ft_model_shape mshape{};
  int64_t vocab = 0;
  std::vector<double> embed, final_norm;
  std::vector<Layer> layers;

  s2ft_ref::ModelWeights ref() const {
    s2ft_ref::ModelWeights w;
    w.embed = embed;
    w.lm_head = embed;  // tie_word_embeddings: no lm_head.weight in the file
    w.final_norm = final_norm;
    for (const Layer &l : layers)
      w.layers.push_back(s2ft_ref::BlockWeights{l.attn_norm, l.q.to_double(), l.k.to_double(), l.v.to_double(),
                                                l.o.to_double(), l.ffn_norm, l.gate.to_double(), l.up.to_double(),
                                                l.down.to_double()});
    return w;
  }
};

std::vector<float> load_f32(const s2ft::io::SafetensorsFile &f, const std::string &name, std::vector<int64_t> shape) {
  const s2ft::io::TensorInfo *t = f.find(name);
  if (t == nullptr) throw std::runtime_error("missing tensor " + name);
  if (t->dtype != "F32") throw std::runtime_error(name + " is not F32");
  if (t->shape != shape) throw std::runtime_error(name + " has an unexpected shape");
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  std::vector<float> out(static_cast<size_t>(n));
  std::memcpy(out.data(), f.data(*t), out.size() * sizeof(float));
  return out;
}

std::unique_ptr<Model> load_model() {
  std::ifstream cf(model_dir() + "/config.json");
  const nlohmann::json cfg = nlohmann::json::parse(cf);
  auto m = std::make_unique<Model>();
  s2ft_ref::BlockShape &s = m->shape;
  s.d_model = cfg.at("hidden_size").get<int64_t>();
  s.n_heads = cfg.at("num_attention_heads").get<int64_t>();
  s.n_kv_heads = cfg.value("num_key_value_heads", s.n_heads);
  s.head_dim = cfg.value("head_dim", s.d_model / s.n_heads);
  s.d_ff = cfg.at("intermediate_size").get<int64_t>();
  s.rms_eps = cfg.at("rms_norm_eps").get<double>();
  s.rope_theta = cfg.value("rope_theta", 10000.0);
  m->vocab = cfg.at("vocab_size").get<int64_t>();
  const int64_t n_layers = cfg.at("num_hidden_layers").get<int64_t>();
  EXPECT_TRUE(cfg.value("tie_word_embeddings", false));
  m->mshape = s2ft_model_shape{static_cast<int32_t>(n_layers), static_cast<int32_t>(s.d_model),
                               static_cast<int32_t>(s.n_heads), static_cast<int32_t>(s.n_kv_heads),
                               static_cast<int32_t>(s.head_dim), static_cast<int32_t>(s.d_ff)};

  const s2ft::io::SafetensorsFile f = s2ft::io::SafetensorsFile::read(model_dir() + "/model.safetensors");
  EXPECT_EQ(f.find("lm_head.weight"), nullptr);
  const int64_t d = s.d_model, nq = s.n_heads * s.head_dim, nkv = s.n_kv_heads * s.head_dim;
  auto to_d = [](const std::vector<float> &v) { return std::vector<double>(v.begin(), v.end()); };
  m->embed = to_d(load_f32(f, "model.embed_tokens.weight", {m->vocab, d}));
  m->final_norm = to_d(load_f32(f, "model.norm.weight", {d}));
  m->layers.resize(static_cast<size_t>(n_layers));
  for (int64_t l = 0; l < n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Layer &L = m->layers[static_cast<size_t>(l)];
    const struct {
      Weight *w;
      const char *name;
      int64_t rows, cols;
    } specs[] = {{&L.q, "self_attn.q_proj.weight", nq, d},   {&L.k, "self_attn.k_proj.weight", nkv, d},
                 {&L.v, "self_attn.v_proj.weight", nkv, d},  {&L.o, "self_attn.o_proj.weight", d, nq},
                 {&L.gate, "mlp.gate_proj.weight", s.d_ff, d}, {&L.up, "mlp.up_proj.weight", s.d_ff, d},
                 {&L.down, "mlp.down_proj.weight", d, s.d_ff}};
    for (const auto &sp : specs) {
      sp.w->rows = sp.rows;
      sp.w->cols = sp.cols;
      sp.w->data = load_f32(f, p + sp.name, {sp.rows, sp.cols});
      sp.w->describe();
    }
    L.attn_norm = to_d(load_f32(f, p + "input_layernorm.weight", {d}));
    L.ffn_norm = to_d(load_f32(f, p + "post_attention_layernorm.weight", {d}));
  }
  return m;
}

// llama2.c's tokenizer file: int32 max token length, then per token a float
// score, an int32 length and the bytes.
std::vector<std::string> load_vocab(const std::string &path, int64_t vocab) {
  std::ifstream in(path, std::ios::binary);
  int32_t max_len = 0;
  in.read(reinterpret_cast<char *>(&max_len), 4);
  std::vector<std::string> pieces;
  for (int64_t i = 0; i < vocab && in; ++i) {
    float score = 0;
    int32_t len = 0;
    in.read(reinterpret_cast<char *>(&score), 4);
    in.read(reinterpret_cast<char *>(&len), 4);
    if (len < 0 || len > 1024) break;
    std::string s(static_cast<size_t>(len), '\0');
    in.read(&s[0], len);
    pieces.push_back(s);
  }
  return pieces;
}

s2ft_ref::ModelWeights g_base_ref;
std::unique_ptr<Model> g_model;
std::vector<int64_t> g_tokens;  // BOS + a greedy continuation, 16 tokens
std::string g_skip;

class RealData : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (g_model || !g_skip.empty()) return;
    if (!file_exists(model_dir() + "/model.safetensors") || !file_exists(model_dir() + "/config.json")) {
      g_skip = "stories260K-hf not found under " + data_dir() + " (set S2FT_TEST_DATA to the data folder)";
      return;
    }
    g_model = load_model();
    g_base_ref = g_model->ref();
    g_tokens = s2ft_ref::greedy(g_model->shape, g_model->vocab, g_base_ref, {1}, 15);
  }
  void SetUp() override {
    if (!g_skip.empty()) GTEST_SKIP() << g_skip;
    ASSERT_TRUE(g_model != nullptr);
  }
};

TEST_F(RealData, ReferenceForwardTellsTheKnownStory) {
  const std::string tok = model_dir() + "/tok512.bin";
  if (!file_exists(tok)) GTEST_SKIP() << "tok512.bin not found";
  const std::vector<std::string> pieces = load_vocab(tok, g_model->vocab);
  ASSERT_EQ(static_cast<int64_t>(pieces.size()), g_model->vocab);
  std::string text;
  for (size_t i = 1; i < g_tokens.size(); ++i) {
    std::string p = pieces[static_cast<size_t>(g_tokens[i])];
    if (i == 1 && !p.empty() && p[0] == ' ') p.erase(0, 1);  // no space after BOS
    text += p;
  }
  EXPECT_EQ(text.rfind("Once upon a time", 0), 0u) << "greedy text: " << text;
}

struct Case {
  int32_t strategy;
  int32_t granularity;
};

std::string case_name(const ::testing::TestParamInfo<Case> &i) {
  const char *names[] = {"R", "W", "A", "S", "G"};
  return std::string(names[i.param.strategy]) + (i.param.granularity == S2FT_HEADS_BY_GROUP ? "_by_group" : "_single");
}

class RealDataPermute : public RealData, public ::testing::WithParamInterface<Case> {};

TEST_P(RealDataPermute, LogitsUnchangedAndInverseIsBitExact) {
  const Case c = GetParam();
  Model &m = *g_model;
  const int64_t T = static_cast<int64_t>(g_tokens.size());
  ASSERT_EQ(T, 16);
  s2ft_context *ctx = nullptr;
  ASSERT_S2FT_OK(s2ft_context_create(nullptr, &ctx));
  std::unique_ptr<s2ft_context, void (*)(s2ft_context *)> ctx_guard(ctx, s2ft_context_destroy);

  // Calibration: weights, real activations from the reference forward, and
  // gradients. The gradient statistics use x from the real forward but a
  // fixed random upstream gradient dy (seeded), not a back-propagated one:
  // they exercise the G path on real inputs, which is all this test needs.
  std::vector<s2ft_ref::BlockTaps> taps;
  const std::vector<double> want = s2ft_ref::llama_forward(m.shape, m.vocab, g_base_ref, g_tokens, &taps);
  s2ft_statistics *stats = nullptr;
  ASSERT_S2FT_OK(s2ft_statistics_create(ctx, &m.mshape, &stats));
  std::unique_ptr<s2ft_statistics, void (*)(s2ft_statistics *)> stats_guard(stats, s2ft_statistics_destroy);
  auto f32 = [&](const std::vector<double> &v, int64_t cols) {
    HostMatrix h(S2FT_F32, static_cast<int64_t>(v.size()) / cols, cols);
    for (int64_t i = 0; i < h.rows; ++i)
      for (int64_t j = 0; j < cols; ++j) h.set(i, j, static_cast<float>(v[static_cast<size_t>(i * cols + j)]));
    return h;
  };
  Random rng(2024);
  for (int32_t l = 0; l < m.mshape.n_layers; ++l) {
    Layer &L = m.layers[static_cast<size_t>(l)];
    const s2ft_ref::BlockTaps &tp = taps[static_cast<size_t>(l)];
    ASSERT_S2FT_OK(s2ft_statistics_add_weight(stats, l, S2FT_TARGET_O, &L.o.t));
    ASSERT_S2FT_OK(s2ft_statistics_add_weight(stats, l, S2FT_TARGET_V, &L.v.t));
    ASSERT_S2FT_OK(s2ft_statistics_add_weight(stats, l, S2FT_TARGET_DOWN, &L.down.t));
    ASSERT_S2FT_OK(s2ft_statistics_add_weight(stats, l, S2FT_TARGET_UP, &L.up.t));
    HostMatrix x_o = f32(tp.o_input, L.o.cols), x_down = f32(tp.down_input, L.down.cols);
    HostMatrix x_attn = f32(tp.attn_input, m.shape.d_model), x_ffn = f32(tp.ffn_input, m.shape.d_model);
    ASSERT_S2FT_OK(s2ft_statistics_add_activation(stats, l, S2FT_TARGET_O, &x_o.t));
    ASSERT_S2FT_OK(s2ft_statistics_add_activation(stats, l, S2FT_TARGET_DOWN, &x_down.t));
    HostMatrix dy_o(S2FT_F32, T, L.o.rows), dy_v(S2FT_F32, T, L.v.rows), dy_down(S2FT_F32, T, L.down.rows),
        dy_up(S2FT_F32, T, L.up.rows);
    for (HostMatrix *dy : {&dy_o, &dy_v, &dy_down, &dy_up}) dy->fill_random(rng, 0.1);
    ASSERT_S2FT_OK(s2ft_statistics_add_gradient(stats, l, S2FT_TARGET_O, &x_o.t, &dy_o.t));
    ASSERT_S2FT_OK(s2ft_statistics_add_gradient(stats, l, S2FT_TARGET_V, &x_attn.t, &dy_v.t));
    ASSERT_S2FT_OK(s2ft_statistics_add_gradient(stats, l, S2FT_TARGET_DOWN, &x_down.t, &dy_down.t));
    ASSERT_S2FT_OK(s2ft_statistics_add_gradient(stats, l, S2FT_TARGET_UP, &x_ffn.t, &dy_up.t));
  }

  s2ft_select_options o;
  ASSERT_S2FT_OK(s2ft_select_options_init(&o, S2FT_SELECT_OPTIONS_VERSION));
  o.targets = 0xF;
  o.strategy = c.strategy;
  o.order = c.strategy == S2FT_STRATEGY_ACTIVATION ? S2FT_ORDER_SMALLEST : S2FT_ORDER_LARGEST;
  o.head_granularity = c.granularity;
  o.seed = 17;
  o.ratio[S2FT_TARGET_O] = 0;
  o.count[S2FT_TARGET_O] = c.granularity == S2FT_HEADS_BY_GROUP ? 1 : 3;  // 1 of 4 groups / 3 of 8 heads
  o.count[S2FT_TARGET_V] = 1;
  o.ratio[S2FT_TARGET_DOWN] = 0.1;
  o.ratio[S2FT_TARGET_UP] = 0.05;
  s2ft_selection *sel = nullptr;
  ASSERT_S2FT_OK(s2ft_select(ctx, &m.mshape, &o, stats, &sel));
  std::unique_ptr<s2ft_selection, void (*)(s2ft_selection *)> sel_guard(sel, s2ft_selection_destroy);

  // Permute a copy of every layer.
  std::vector<Layer> permuted(m.layers.begin(), m.layers.end());
  bool moved = false;
  for (int32_t l = 0; l < m.mshape.n_layers; ++l) {
    s2ft_layer_weights w = permuted[static_cast<size_t>(l)].weights();
    ASSERT_S2FT_OK(s2ft_permute(ctx, sel, l, &w, S2FT_PERMUTE_FORWARD));
    for (int kind : {S2FT_PERM_HEADS, S2FT_PERM_CHANNELS}) {
      int64_t n = 0;
      std::vector<int64_t> p(256);
      ASSERT_S2FT_OK(s2ft_selection_permutation(sel, l, kind, p.data(), 256, &n));
      for (int64_t i = 0; i < n; ++i) moved = moved || p[static_cast<size_t>(i)] != i;
    }
  }
  EXPECT_TRUE(moved) << "the selection should move something, or the test proves nothing";
  Model pm;
  pm.embed = m.embed;
  pm.final_norm = m.final_norm;
  for (const Layer &L : permuted) pm.layers.push_back(L);
  const std::vector<double> got = s2ft_ref::llama_forward(m.shape, m.vocab, pm.ref(), g_tokens);
  EXPECT_LE(rel_error(got, want), 1e-5);

  // The trained O slice of the permuted model is the base model's selected
  // columns (contiguous where promised).
  int64_t begin = 0, count = 0;
  const s2ft_status range = s2ft_selection_range(sel, 0, S2FT_TARGET_O, &begin, &count);
  if (c.granularity == S2FT_HEADS_BY_GROUP) {
    ASSERT_EQ(range, S2FT_OK) << s2ft_last_error();
    EXPECT_EQ(begin, 0);
    EXPECT_EQ(count, 2 * m.shape.head_dim);
  }
  ASSERT_S2FT_OK(s2ft_selection_range(sel, 0, S2FT_TARGET_DOWN, &begin, &count));
  EXPECT_EQ(count, 17);  // 10% of 172, rounded

  // Inverse restores every weight bit for bit.
  for (int32_t l = 0; l < m.mshape.n_layers; ++l) {
    Layer &P = permuted[static_cast<size_t>(l)];
    s2ft_layer_weights w = P.weights();
    ASSERT_S2FT_OK(s2ft_permute(ctx, sel, l, &w, S2FT_PERMUTE_INVERSE));
    const Layer &B = m.layers[static_cast<size_t>(l)];
    for (int i = 0; i < 7; ++i)
      EXPECT_EQ(0, std::memcmp(P.all[i]->data.data(), B.all[i]->data.data(), B.all[i]->data.size() * sizeof(float)))
          << "layer " << l << " weight " << i;
  }

  // The selection survives a file round trip.
  const std::string path = ::testing::TempDir() + "s2ft_realdata_sel_" + std::to_string(::getpid()) + ".json";
  ASSERT_S2FT_OK(s2ft_selection_save(sel, path.c_str()));
  s2ft_selection *loaded = nullptr;
  ASSERT_S2FT_OK(s2ft_selection_load(path.c_str(), &loaded));
  std::unique_ptr<s2ft_selection, void (*)(s2ft_selection *)> loaded_guard(loaded, s2ft_selection_destroy);
  for (int32_t l = 0; l < m.mshape.n_layers; ++l)
    for (int kind : {S2FT_PERM_HEADS, S2FT_PERM_KV_HEADS, S2FT_PERM_CHANNELS}) {
      std::vector<int64_t> a(256), b(256);
      int64_t na = 0, nb = 0;
      ASSERT_S2FT_OK(s2ft_selection_permutation(sel, l, kind, a.data(), 256, &na));
      ASSERT_S2FT_OK(s2ft_selection_permutation(loaded, l, kind, b.data(), 256, &nb));
      EXPECT_EQ(a, b);
    }
  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(
    Strategies, RealDataPermute,
    ::testing::Values(Case{S2FT_STRATEGY_RANDOM, S2FT_HEADS_BY_GROUP}, Case{S2FT_STRATEGY_RANDOM, S2FT_HEADS_SINGLE},
                      Case{S2FT_STRATEGY_WEIGHT, S2FT_HEADS_BY_GROUP}, Case{S2FT_STRATEGY_WEIGHT, S2FT_HEADS_SINGLE},
                      Case{S2FT_STRATEGY_ACTIVATION, S2FT_HEADS_BY_GROUP},
                      Case{S2FT_STRATEGY_ACTIVATION, S2FT_HEADS_SINGLE},
                      Case{S2FT_STRATEGY_WEIGHT_ACT, S2FT_HEADS_BY_GROUP},
                      Case{S2FT_STRATEGY_WEIGHT_ACT, S2FT_HEADS_SINGLE},
                      Case{S2FT_STRATEGY_GRADIENT, S2FT_HEADS_BY_GROUP},
                      Case{S2FT_STRATEGY_GRADIENT, S2FT_HEADS_SINGLE}),
    case_name);

}  // namespace
