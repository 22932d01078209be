// The fine-tuning example's file I/O (examples/finetune): Hugging Face
// checkpoints read through libs2ft (single file, shards, BF16/F16,
// misaligned data, hostile folders), adapters merged into a folder with
// libs2ft, llama2.c checkpoints and llama2.c's tokenizer. Loads are checked
// bit for bit; every hostile input must give a std::runtime_error whose
// message names the file and the problem.
//
// Built twice: without FT_IO_REALDATA the synthetic tests (label unit), with
// it the tests on the real stories260K model in ../shared/data (realdata).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "checkpoint.hpp"
#include "s2ft_check.hpp"
#include "s2ft_handles.hpp"
#include "s2ft_verify.hpp"
#include "support/realdata.hpp"
#include "support/test_util.hpp"
#include "tokenizer.hpp"

namespace fs = std::filesystem;

namespace {

using ft::Checkpoint;
using ft::LlamaConfig;
using ft::LlamaWeights;
using ft::Tokenizer;

// ---- helpers ------------------------------------------------------------------

// A fresh folder under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = (fs::temp_directory_path() /
             ("ft_io_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++)))
                .string();
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  std::string operator/(const std::string &name) const { return (fs::path(path_) / name).string(); }
  const std::string &str() const { return path_; }

 private:
  std::string path_;
};

[[maybe_unused]] void write_bytes(const std::string &path, const std::vector<uint8_t> &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char *>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

[[maybe_unused]] void write_text(const std::string &path, const std::string &text) {
  write_bytes(path, std::vector<uint8_t>(text.begin(), text.end()));
}

[[maybe_unused]] std::vector<uint8_t> read_bytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The message of the std::runtime_error `f` throws ("" and a failure if none).
std::string error_of(const std::function<void()> &f) {
  try {
    f();
  } catch (const std::runtime_error &e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a std::runtime_error";
  return std::string();
}

// Every part must occur in the message.
void expect_error(const std::function<void()> &f, const std::vector<std::string> &parts) {
  const std::string message = error_of(f);
  for (const std::string &part : parts)
    EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
}

[[maybe_unused]] void put_u32(std::vector<uint8_t> &out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
[[maybe_unused]] void put_i32(std::vector<uint8_t> &out, int32_t v) { put_u32(out, static_cast<uint32_t>(v)); }
[[maybe_unused]] void put_f32(std::vector<uint8_t> &out, float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  put_u32(out, u);
}

// A safetensors image with the given header text and `data_bytes` bytes of
// (non-zero) data.
[[maybe_unused]] std::vector<uint8_t> raw_safetensors(const std::string &header, size_t data_bytes) {
  std::vector<uint8_t> out;
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  for (size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<uint8_t>(0x3f + i % 7));
  return out;
}

bool bitwise_equal(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Every tensor of a model by its Hugging Face name (lm_head only if present).
std::map<std::string, const std::vector<float> *> named_tensors(const LlamaWeights<float> &w) {
  std::map<std::string, const std::vector<float> *> out;
  out["model.embed_tokens.weight"] = &w.embed;
  out["model.norm.weight"] = &w.final_norm;
  if (!w.lm_head.empty()) out["lm_head.weight"] = &w.lm_head;
  for (size_t i = 0; i < w.layers.size(); ++i)
    const_cast<ft::LayerWeights<float> &>(w.layers[i]).for_each([&](const char *name, std::vector<float> &t) {
      out["model.layers." + std::to_string(i) + "." + name] = &t;
    });
  return out;
}

void expect_same_weights(const LlamaWeights<float> &got, const LlamaWeights<float> &want) {
  const auto g = named_tensors(got), w = named_tensors(want);
  ASSERT_EQ(g.size(), w.size());
  for (const auto &item : w) {
    auto it = g.find(item.first);
    ASSERT_NE(it, g.end()) << item.first;
    EXPECT_TRUE(bitwise_equal(*it->second, *item.second)) << item.first << " differs";
  }
}

void expect_same_config(const LlamaConfig &a, const LlamaConfig &b) {
  EXPECT_EQ(a.vocab, b.vocab);
  EXPECT_EQ(a.d_model, b.d_model);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.d_ff, b.d_ff);
  EXPECT_EQ(a.max_seq, b.max_seq);
  EXPECT_EQ(a.rms_eps, b.rms_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.tied, b.tied);
  EXPECT_EQ(a.bos, b.bos);
  EXPECT_EQ(a.eos, b.eos);
}

// The file names in a folder, sorted.
[[maybe_unused]] std::vector<std::string> file_names(const std::string &dir) {
  std::vector<std::string> out;
  for (const fs::directory_entry &e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// s2ft_checkpoint_write of the folder `from` into `to`, keeping its layout
// (max_shard_bytes 0) or resharding it.
void copy_with_library(const std::string &from, const std::string &to, uint64_t max_shard_bytes = 0) {
  s2ft_checkpoint *raw = nullptr;
  ASSERT_EQ(s2ft_checkpoint_open(from.c_str(), &raw), S2FT_OK) << s2ft_last_error();
  ft::CheckpointPtr ckpt(raw);
  s2ft_checkpoint_write_options opts;
  ASSERT_EQ(s2ft_checkpoint_write_options_init(&opts, S2FT_CHECKPOINT_WRITE_OPTIONS_VERSION), S2FT_OK);
  opts.max_shard_bytes = max_shard_bytes;
  ASSERT_EQ(s2ft_checkpoint_write(ckpt.get(), to.c_str(), nullptr, nullptr, 0, &opts), S2FT_OK) << s2ft_last_error();
}

// An adapter over a few lines of O (layer 1), DOWN (layer 0) and V (layer
// 1), fingerprinted against `w`.
ft::AdapterPtr test_adapter(const LlamaConfig &c, const LlamaWeights<float> &w, uint64_t seed) {
  const s2ft_model_shape shape = c.shape();
  s2ft_adapter *raw = nullptr;
  EXPECT_EQ(s2ft_adapter_create(&shape, "test", 1.0, &raw), S2FT_OK) << s2ft_last_error();
  ft::AdapterPtr adapter(raw);
  s2ft_test::Random rng(seed);
  auto set = [&](int32_t layer, int32_t target, const std::vector<int64_t> &lines, int64_t rows, int64_t cols,
                 const std::vector<float> &base, int64_t base_rows, int64_t base_cols) {
    std::vector<float> delta(static_cast<size_t>(rows * cols));
    for (float &x : delta) x = static_cast<float>(rng.uniform(-0.5, 0.5));
    const s2ft_tensor d = ft::f32_tensor(delta.data(), rows, cols), b = ft::f32_tensor(base.data(), base_rows, base_cols);
    EXPECT_EQ(s2ft_adapter_set(adapter.get(), layer, target, lines.data(), static_cast<int64_t>(lines.size()), &d, &b),
              S2FT_OK)
        << s2ft_last_error();
  };
  const ft::LayerWeights<float> &l0 = w.layers[0], &l1 = w.layers[1];
  set(1, S2FT_TARGET_O, {0, 2}, c.d_model, 2, l1.o, c.d_model, c.q_dim());
  set(0, S2FT_TARGET_DOWN, {3}, c.d_model, 1, l0.down, c.d_model, c.d_ff);
  set(1, S2FT_TARGET_V, {1}, 1, c.d_model, l1.v, c.kv_dim(), c.d_model);
  return adapter;
}

ft::ContextPtr cpu_context() {
  s2ft_context *raw = nullptr;
  EXPECT_EQ(s2ft_context_create(nullptr, &raw), S2FT_OK) << s2ft_last_error();
  return ft::ContextPtr(raw);
}

#ifndef FT_IO_REALDATA

LlamaConfig make_config(int64_t vocab, int64_t d_model, int64_t layers, int64_t heads, int64_t kv_heads,
                        int64_t head_dim, int64_t d_ff, bool tied) {
  LlamaConfig c;
  c.vocab = vocab;
  c.d_model = d_model;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.d_ff = d_ff;
  c.max_seq = 24;
  c.rms_eps = 3e-6;
  c.rope_theta = 5e5;
  c.tied = tied;
  c.bos = 1;
  c.eos = 2;
  return c;
}

// GQA (6 query heads on 2 KV heads), odd sizes, tied output layer.
LlamaConfig gqa_config() { return make_config(13, 18, 2, 6, 2, 4, 7, true); }

// Every tensor, norm gains included, filled with distinct random values so
// that a tensor written to the wrong name cannot go unnoticed.
LlamaWeights<float> distinct_weights(const LlamaConfig &c, uint64_t seed) {
  LlamaWeights<float> w = ft::empty_weights<float>(c);
  s2ft_test::Random rng(seed);
  auto fill = [&](std::vector<float> &v) {
    for (float &x : v) x = static_cast<float>(rng.uniform(-1.0, 1.0));
  };
  fill(w.embed);
  fill(w.final_norm);
  fill(w.lm_head);
  for (auto &l : w.layers) l.for_each([&](const char *, std::vector<float> &t) { fill(t); });
  return w;
}

Checkpoint distinct_checkpoint(const LlamaConfig &c, uint64_t seed) { return Checkpoint{c, distinct_weights(c, seed)}; }

// ---- Hugging Face checkpoints, read through libs2ft ------------------------------------
//
// The folders are written here byte by byte (the example has no writer of
// its own any more), or copied with s2ft_checkpoint_write.

// A tensor as a safetensors file stores it.
struct FileTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

std::vector<uint8_t> encode(const std::vector<float> &values, const std::string &dtype) {
  std::vector<uint8_t> out;
  for (float f : values) {
    if (dtype == "F32") {
      put_f32(out, f);
      continue;
    }
    const uint16_t h = dtype == "BF16" ? s2ft_test::to_bf16(f) : s2ft_test::to_f16(f);
    out.push_back(static_cast<uint8_t>(h));
    out.push_back(static_cast<uint8_t>(h >> 8));
  }
  return out;
}

// Every tensor of a model in the order Hugging Face writes them, in `dtype`
// (lm_head only when the weights have one).
std::vector<FileTensor> file_tensors(const LlamaConfig &c, const LlamaWeights<float> &w, const std::string &dtype) {
  std::vector<FileTensor> out;
  auto add = [&](const std::string &name, std::vector<int64_t> shape, const std::vector<float> &v) {
    out.push_back({name, dtype, std::move(shape), encode(v, dtype)});
  };
  add("model.embed_tokens.weight", {c.vocab, c.d_model}, w.embed);
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const ft::LayerWeights<float> &l = w.layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {c.d_model}, l.attn_norm);
    add(p + "self_attn.q_proj.weight", {c.q_dim(), c.d_model}, l.q);
    add(p + "self_attn.k_proj.weight", {c.kv_dim(), c.d_model}, l.k);
    add(p + "self_attn.v_proj.weight", {c.kv_dim(), c.d_model}, l.v);
    add(p + "self_attn.o_proj.weight", {c.d_model, c.q_dim()}, l.o);
    add(p + "post_attention_layernorm.weight", {c.d_model}, l.ffn_norm);
    add(p + "mlp.gate_proj.weight", {c.d_ff, c.d_model}, l.gate);
    add(p + "mlp.up_proj.weight", {c.d_ff, c.d_model}, l.up);
    add(p + "mlp.down_proj.weight", {c.d_model, c.d_ff}, l.down);
  }
  add("model.norm.weight", {c.d_model}, w.final_norm);
  if (!w.lm_head.empty()) add("lm_head.weight", {c.vocab, c.d_model}, w.lm_head);
  return out;
}

// A safetensors file: the header padded so that the data starts 8-byte
// aligned, the tensors' bytes in the order given.
void write_safetensors_file(const std::string &path, const std::vector<FileTensor> &tensors) {
  nlohmann::ordered_json header = {{"__metadata__", {{"format", "pt"}}}};
  uint64_t at = 0;
  for (const FileTensor &t : tensors) {
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {at, at + t.bytes.size()}}};
    at += t.bytes.size();
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text += ' ';
  std::vector<uint8_t> bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i)));
  bytes.insert(bytes.end(), text.begin(), text.end());
  for (const FileTensor &t : tensors) bytes.insert(bytes.end(), t.bytes.begin(), t.bytes.end());
  write_bytes(path, bytes);
}

nlohmann::ordered_json hf_config(const LlamaConfig &c) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", c.d_model},
          {"num_hidden_layers", c.n_layers},
          {"num_attention_heads", c.n_heads},
          {"num_key_value_heads", c.n_kv_heads},
          {"head_dim", c.head_dim},
          {"intermediate_size", c.d_ff},
          {"vocab_size", c.vocab},
          {"max_position_embeddings", c.max_seq},
          {"rms_norm_eps", c.rms_eps},
          {"rope_theta", c.rope_theta},
          {"tie_word_embeddings", c.tied},
          {"bos_token_id", c.bos},
          {"eos_token_id", c.eos},
          {"hidden_act", "silu"}};
}

struct Layout {
  std::string dtype = "F32";
  int shards = 1;         // > 1: model-0000i-of-0000n.safetensors and an index
  bool misalign = false;  // a 3-element BF16 tensor first: every later F32 tensor is 2 bytes off
};

// A Hugging Face folder of `w` (`edit` may change the list of tensors first).
void write_hf_folder(const std::string &dir, const LlamaConfig &c, const LlamaWeights<float> &w,
                     const Layout &layout = {},
                     const std::function<void(std::vector<FileTensor> &)> &edit = nullptr) {
  fs::create_directories(dir);
  write_text(dir + "/config.json", hf_config(c).dump(2));
  std::vector<FileTensor> tensors = file_tensors(c, w, layout.dtype);
  if (layout.misalign) tensors.insert(tensors.begin(), FileTensor{"model.extra_scale", "BF16", {3}, encode({1, 2, 3}, "BF16")});
  if (edit) edit(tensors);
  if (layout.shards <= 1) {
    write_safetensors_file(dir + "/model.safetensors", tensors);
    return;
  }
  nlohmann::ordered_json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::ordered_json::object()}};
  const size_t n = static_cast<size_t>(layout.shards), per = (tensors.size() + n - 1) / n;
  uint64_t total = 0;
  for (size_t s = 0; s < n; ++s) {
    const std::string file = "model-0000" + std::to_string(s + 1) + "-of-0000" + std::to_string(n) + ".safetensors";
    std::vector<FileTensor> part(tensors.begin() + static_cast<std::ptrdiff_t>(std::min(tensors.size(), s * per)),
                                 tensors.begin() + static_cast<std::ptrdiff_t>(std::min(tensors.size(), (s + 1) * per)));
    for (const FileTensor &t : part) {
      index["weight_map"][t.name] = file;
      total += t.bytes.size();
    }
    write_safetensors_file(dir + "/" + file, part);
  }
  index["metadata"]["total_size"] = total;
  write_text(dir + "/model.safetensors.index.json", index.dump(2));
}

// The weights as a file of `dtype` holds them.
LlamaWeights<float> rounded_to(LlamaWeights<float> w, const std::string &dtype) {
  auto round = [&](std::vector<float> &v) {
    for (float &x : v)
      x = dtype == "BF16" ? s2ft_test::from_bf16(s2ft_test::to_bf16(x))
                          : dtype == "F16" ? s2ft_test::from_f16(s2ft_test::to_f16(x)) : x;
  };
  round(w.embed);
  round(w.final_norm);
  round(w.lm_head);
  for (auto &l : w.layers) l.for_each([&](const char *, std::vector<float> &t) { round(t); });
  return w;
}

TEST(FinetuneHfCheckpoint, SingleFileLoadsBitExact) {
  const std::vector<LlamaConfig> configs = {
      gqa_config(),                                // tied, GQA 6/2, odd d_ff and vocab
      make_config(9, 8, 3, 2, 2, 4, 5, false),     // untied, plain multi-head
      make_config(17, 10, 1, 4, 1, 6, 11, false),  // head_dim 6 != 10 / 4, MQA
      make_config(5, 4, 1, 1, 1, 2, 1, true),      // the smallest sizes
  };
  for (size_t i = 0; i < configs.size(); ++i) {
    SCOPED_TRACE("config " + std::to_string(i) + ": " + configs[i].describe());
    TempDir dir;
    const Checkpoint ck = distinct_checkpoint(configs[i], 100 + i);
    write_hf_folder(dir.str(), configs[i], ck.weights);
    const Checkpoint back = ft::load_hf_checkpoint(dir.str());
    expect_same_config(back.config, ck.config);
    expect_same_weights(back.weights, ck.weights);
    EXPECT_EQ(back.weights.lm_head.empty(), ck.config.tied);
    // load_checkpoint reads a folder as Hugging Face.
    expect_same_weights(ft::load_checkpoint(dir.str()).weights, ck.weights);
  }
}

TEST(FinetuneHfCheckpoint, ShardedFolderLoadsTheSameWeights) {
  const LlamaConfig config = make_config(13, 18, 3, 6, 2, 4, 7, false);
  const Checkpoint ck = distinct_checkpoint(config, 5);
  TempDir dir;
  write_hf_folder(dir / "sharded", config, ck.weights, Layout{"F32", 3, false});
  ASSERT_TRUE(fs::exists(dir / "sharded/model.safetensors.index.json"));
  const Checkpoint back = ft::load_hf_checkpoint(dir / "sharded");
  expect_same_config(back.config, ck.config);
  expect_same_weights(back.weights, ck.weights);

  // A single file resharded by the library (shards of at most 1 KiB), and
  // the shards put back into one file: the same weights each time.
  write_hf_folder(dir / "single", config, ck.weights);
  copy_with_library(dir / "single", dir / "resharded", 1024);
  int shards = 0;
  for (const std::string &name : file_names(dir / "resharded")) shards += name.rfind("model-", 0) == 0;
  EXPECT_GT(shards, 2);
  expect_same_weights(ft::load_hf_checkpoint(dir / "resharded").weights, ck.weights);
  copy_with_library(dir / "sharded", dir / "joined", uint64_t{1} << 30);
  EXPECT_TRUE(fs::exists(dir / "joined/model.safetensors"));
  expect_same_weights(ft::load_hf_checkpoint(dir / "joined").weights, ck.weights);
}

TEST(FinetuneHfCheckpoint, ReadsBf16AndF16AsFloat) {
  for (const std::string dtype : {"BF16", "F16"}) {
    SCOPED_TRACE(dtype);
    for (int shards : {1, 2}) {
      TempDir dir;
      const Checkpoint ck = distinct_checkpoint(gqa_config(), 21);
      write_hf_folder(dir.str(), gqa_config(), ck.weights, Layout{dtype, shards, false});
      const Checkpoint back = ft::load_hf_checkpoint(dir.str());
      expect_same_weights(back.weights, rounded_to(ck.weights, dtype));
    }
  }
  // Values every conversion must get exactly: signed zeros, a subnormal
  // half, the largest half, infinities.
  TempDir dir;
  Checkpoint ck = distinct_checkpoint(gqa_config(), 22);
  const std::vector<float> special = {1.0f, -2.0f, 0.5f, 65504.0f, std::ldexp(1.0f, -24), -3.25f, -0.0f, 0.0f};
  std::copy(special.begin(), special.end(), ck.weights.final_norm.begin());
  write_hf_folder(dir.str(), gqa_config(), ck.weights, Layout{"F16", 1, false}, [](std::vector<FileTensor> &t) {
    for (FileTensor &x : t)
      if (x.name == "model.norm.weight") {
        x.bytes[8] = 0x01;  // 2^-24, the smallest subnormal (to_f16 handles normal numbers only)
        x.bytes[9] = 0x00;
        x.bytes[16] = 0x00;  // +inf
        x.bytes[17] = 0x7c;
      }
  });
  std::vector<float> want = rounded_to(ck.weights, "F16").final_norm;
  want[4] = std::ldexp(1.0f, -24);
  want[8] = std::numeric_limits<float>::infinity();
  const std::vector<float> got = ft::load_hf_checkpoint(dir.str()).weights.final_norm;
  EXPECT_TRUE(bitwise_equal(got, want));
  EXPECT_TRUE(std::signbit(got[6]));
  EXPECT_FALSE(std::signbit(got[7]));
  // bfloat16: the smallest normal float, a large value, -0 and an exact one.
  TempDir bf;
  const std::vector<float> bf_special = {std::ldexp(1.0f, -126), 1e30f, -0.0f, 3.140625f, -2.5f};
  std::copy(bf_special.begin(), bf_special.end(), ck.weights.final_norm.begin());
  write_hf_folder(bf.str(), gqa_config(), ck.weights, Layout{"BF16", 1, false});
  const std::vector<float> bf_got = ft::load_hf_checkpoint(bf.str()).weights.final_norm;
  EXPECT_TRUE(bitwise_equal(bf_got, rounded_to(ck.weights, "BF16").final_norm));
  EXPECT_TRUE(std::signbit(bf_got[2]));
  EXPECT_EQ(bf_got[3], 3.140625f);
}

TEST(FinetuneHfCheckpoint, MisalignedTensorsLoadBitExact) {
  for (const std::string dtype : {"F32", "BF16"}) {
    SCOPED_TRACE(dtype);
    TempDir dir;
    const LlamaConfig c = make_config(9, 8, 2, 2, 2, 4, 5, false);
    const Checkpoint ck = distinct_checkpoint(c, 31);
    write_hf_folder(dir.str(), c, ck.weights, Layout{dtype, 1, true});
    const Checkpoint back = ft::load_hf_checkpoint(dir.str());
    expect_same_weights(back.weights, rounded_to(ck.weights, dtype));
  }
}

TEST(FinetuneHfCheckpoint, ConfigDefaultsFollowTransformers) {
  const LlamaConfig c = ft::parse_hf_config(
      R"({"hidden_size":64,"num_hidden_layers":2,"num_attention_heads":8,"intermediate_size":100,"vocab_size":50,
          "rope_scaling":null,"bos_token_id":null,"eos_token_id":[2, 7]})",
      "config.json");
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.max_seq, 2048);
  EXPECT_EQ(c.rms_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.tied);
  EXPECT_EQ(c.bos, 1);
  EXPECT_EQ(c.eos, 2);
}

TEST(FinetuneHfCheckpoint, TiedCheckpointIgnoresAnLmHead) {
  TempDir dir;
  const Checkpoint ck = distinct_checkpoint(gqa_config(), 9);
  write_hf_folder(dir.str(), gqa_config(), ck.weights, {}, [](std::vector<FileTensor> &t) {
    t.push_back({"lm_head.weight", "F32", {3}, encode({1.5f, 1.5f, 1.5f}, "F32")});
  });
  const Checkpoint back = ft::load_hf_checkpoint(dir.str());
  EXPECT_TRUE(back.weights.lm_head.empty());
  expect_same_weights(back.weights, ck.weights);
}

TEST(FinetuneHfCheckpoint, RejectsShapeMismatchWithConfig) {
  TempDir dir;
  const Checkpoint ck = distinct_checkpoint(gqa_config(), 3);
  // down_proj stored transposed: right size, wrong shape.
  write_hf_folder(dir.str(), gqa_config(), ck.weights, {}, [](std::vector<FileTensor> &t) {
    for (FileTensor &x : t)
      if (x.name == "model.layers.1.mlp.down_proj.weight") x.shape = {7, 18};
  });
  expect_error([&] { ft::load_hf_checkpoint(dir.str()); },
               {dir / "model.safetensors", "'model.layers.1.mlp.down_proj.weight'", "[7, 18]",
                "config.json gives [18, 7]"});
  // A norm gain (which the library's model shape does not check) in a shard.
  TempDir sharded;
  write_hf_folder(sharded.str(), gqa_config(), ck.weights, Layout{"F32", 2, false}, [](std::vector<FileTensor> &t) {
    for (FileTensor &x : t)
      if (x.name == "model.norm.weight") x.shape = {2, 9};
  });
  expect_error([&] { ft::load_hf_checkpoint(sharded.str()); },
               {sharded.str(), "'model.norm.weight'", "[2, 9]", "config.json gives [18]"});
}

TEST(FinetuneHfCheckpoint, RejectsMissingTensor) {
  TempDir dir;
  const Checkpoint ck = distinct_checkpoint(gqa_config(), 4);
  auto without = [](const std::string &name) {
    return [name](std::vector<FileTensor> &t) {
      t.erase(std::remove_if(t.begin(), t.end(), [&](const FileTensor &x) { return x.name == name; }), t.end());
    };
  };
  write_hf_folder(dir.str(), gqa_config(), ck.weights, {}, without("model.layers.1.mlp.up_proj.weight"));
  expect_error([&] { ft::load_hf_checkpoint(dir.str()); },
               {dir / "model.safetensors", "missing 1 tensor", "'model.layers.1.mlp.up_proj.weight'"});

  // Sharded: the index is what lacks it.
  TempDir sharded;
  write_hf_folder(sharded.str(), gqa_config(), ck.weights, Layout{"F32", 2, false}, without("model.norm.weight"));
  expect_error([&] { ft::load_hf_checkpoint(sharded.str()); },
               {sharded / "model.safetensors.index.json", "missing 1 tensor", "'model.norm.weight'"});

  // An untied config needs lm_head.weight.
  TempDir untied;
  LlamaConfig c = gqa_config();
  c.tied = false;
  write_hf_folder(untied.str(), c, distinct_weights(c, 4), {}, without("lm_head.weight"));
  expect_error([&] { ft::load_hf_checkpoint(untied.str()); }, {"missing 1 tensor", "'lm_head.weight'"});

  // No weights at all.
  TempDir empty;
  write_hf_folder(empty.str(), gqa_config(), ck.weights);
  fs::remove(empty / "model.safetensors");
  expect_error([&] { ft::load_hf_checkpoint(empty.str()); }, {empty.str(), "neither model.safetensors nor"});
}

TEST(FinetuneHfCheckpoint, RejectsUnsupportedDtype) {
  TempDir dir;
  const Checkpoint ck = distinct_checkpoint(gqa_config(), 8);
  write_hf_folder(dir.str(), gqa_config(), ck.weights, {}, [](std::vector<FileTensor> &t) {
    for (FileTensor &x : t)
      if (x.name == "model.norm.weight") x.dtype = "I32";  // same size as F32
  });
  expect_error([&] { ft::load_hf_checkpoint(dir.str()); },
               {dir / "model.safetensors", "'model.norm.weight'", "unsupported dtype I32", "F32, F16 and BF16"});
}

TEST(FinetuneHfCheckpoint, HostileFilesAreRefusedNamingTheFile) {
  const Checkpoint ck = distinct_checkpoint(gqa_config(), 2);
  {
    SCOPED_TRACE("truncated");
    TempDir dir;
    write_hf_folder(dir.str(), gqa_config(), ck.weights);
    fs::resize_file(dir / "model.safetensors", fs::file_size(dir / "model.safetensors") - 4);
    expect_error([&] { ft::load_hf_checkpoint(dir.str()); }, {dir / "model.safetensors"});
  }
  {
    SCOPED_TRACE("header length past the end");
    TempDir dir;
    write_hf_folder(dir.str(), gqa_config(), ck.weights);
    std::vector<uint8_t> bytes = read_bytes(dir / "model.safetensors");
    bytes[6] = 0x7f;
    write_bytes(dir / "model.safetensors", bytes);
    expect_error([&] { ft::load_hf_checkpoint(dir.str()); }, {dir / "model.safetensors"});
  }
  {
    SCOPED_TRACE("overlapping tensors");
    TempDir dir;
    write_hf_folder(dir.str(), gqa_config(), ck.weights);
    const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
    write_bytes(dir / "model.safetensors", raw_safetensors(header, 16));
    expect_error([&] { ft::load_hf_checkpoint(dir.str()); }, {dir / "model.safetensors"});
  }
  for (const std::string bad : {"../model.safetensors", "sub/model.safetensors", ".."}) {
    SCOPED_TRACE(bad);
    TempDir dir;
    write_hf_folder(dir.str(), gqa_config(), ck.weights);
    write_text(dir / "model.safetensors.index.json", R"({"weight_map":{"model.embed_tokens.weight":")" + bad + R"("}})");
    expect_error([&] { ft::load_hf_checkpoint(dir.str()); },
                 {dir / "model.safetensors.index.json", "shard name \"" + bad + "\"", "not a plain file name"});
  }
  {
    SCOPED_TRACE("the index and the shards disagree");
    TempDir dir;
    write_hf_folder(dir.str(), gqa_config(), ck.weights);
    write_text(dir / "model.safetensors.index.json", R"({"weight_map":{"model.embed_tokens.weight":"gone.safetensors"}})");
    expect_error([&] { ft::load_hf_checkpoint(dir.str()); }, {"gone.safetensors"});
    write_text(dir / "model.safetensors.index.json", R"({"weights":{}})");
    expect_error([&] { ft::load_hf_checkpoint(dir.str()); }, {"weight_map"});
    // model.safetensors holds every tensor, the index lists one.
    write_text(dir / "model.safetensors.index.json",
               R"({"weight_map":{"model.embed_tokens.weight":"model.safetensors"}})");
    expect_error([&] { ft::load_hf_checkpoint(dir.str()); }, {"does not list"});
  }
}

TEST(FinetuneHfCheckpoint, RejectsMissingConfigField) {
  const std::string base = R"("num_hidden_layers":2,"num_attention_heads":4,"intermediate_size":9,"vocab_size":11)";
  expect_error([&] { ft::parse_hf_config("{" + base + "}", "dir/config.json"); },
               {"dir/config.json", "no \"hidden_size\""});
  expect_error([&] { ft::parse_hf_config(R"({"hidden_size":"16",)" + base + "}", "config.json"); },
               {"\"hidden_size\"", "must be an integer"});
  expect_error([&] { ft::parse_hf_config(R"({"hidden_size":16,"tie_word_embeddings":1,)" + base + "}", "config.json"); },
               {"\"tie_word_embeddings\"", "true or false"});
  expect_error([&] { ft::parse_hf_config(R"({"hidden_size":16,"rms_norm_eps":"x",)" + base + "}", "config.json"); },
               {"\"rms_norm_eps\""});
  expect_error([&] { ft::parse_hf_config("[1]", "config.json"); }, {"config.json", "not a JSON object"});
  expect_error([&] { ft::parse_hf_config("{", "config.json"); }, {"config.json", "not valid JSON"});

  // Through a folder, too.
  TempDir dir;
  write_hf_folder(dir.str(), gqa_config(), distinct_weights(gqa_config(), 1));
  write_text(dir / "config.json", "{" + base + "}");
  expect_error([&] { ft::load_hf_checkpoint(dir.str()); }, {dir / "config.json", "hidden_size"});
  expect_error([&] { ft::load_hf_checkpoint(dir / "absent"); }, {"absent", "not a checkpoint folder"});
  TempDir no_config;
  expect_error([&] { ft::load_hf_checkpoint(no_config.str()); }, {"no config.json"});
}

TEST(FinetuneHfCheckpoint, RejectsNonsenseConfigValues) {
  auto config = [](const std::string &fields) {
    return R"({"hidden_size":12,"num_hidden_layers":2,"intermediate_size":9,"vocab_size":11,)" + fields + "}";
  };
  expect_error([&] { ft::parse_hf_config(config(R"("num_attention_heads":3,"num_key_value_heads":2)"), "c.json"); },
               {"c.json", "num_attention_heads (3)", "not a multiple of num_key_value_heads (2)"});
  expect_error([&] { ft::parse_hf_config(config(R"("num_attention_heads":-4)"), "c.json"); },
               {"c.json", "num_attention_heads", "-4"});
  expect_error([&] { ft::parse_hf_config(config(R"("num_attention_heads":0)"), "c.json"); },
               {"c.json", "num_attention_heads", "0"});
  expect_error([&] { ft::parse_hf_config(config(R"("num_attention_heads":5)"), "c.json"); },
               {"c.json", "hidden_size (12) is not a multiple of num_attention_heads (5)"});
  expect_error([&] { ft::parse_hf_config(config(R"("num_attention_heads":4,"rope_scaling":{"type":"linear"})"), "c.json"); },
               {"rope_scaling"});
  expect_error([&] { ft::parse_hf_config(config(R"("num_attention_heads":2,"eos_token_id":11)"), "c.json"); },
               {"eos_token_id (11)"});
  expect_error([&] { ft::parse_hf_config(config(R"("num_attention_heads":4,"head_dim":99999999999999)"), "c.json"); },
               {"head_dim"});
}

TEST(FinetuneHfCheckpoint, ModelTypeOutsideTheLlamaFamilyIsRefused) {
  // The library reads the model shape of LLaMA-family checkpoints only; a
  // config the example could parse but the library would not is refused.
  TempDir dir;
  write_hf_folder(dir.str(), gqa_config(), distinct_weights(gqa_config(), 1));
  nlohmann::ordered_json cfg = hf_config(gqa_config());
  cfg["model_type"] = "gpt2";
  write_text(dir / "config.json", cfg.dump());
  expect_error([&] { ft::load_hf_checkpoint(dir.str()); }, {dir / "config.json", "gpt2"});
}

// ---- merging an adapter into a folder with libs2ft --------------------------------------

TEST(FinetuneHfMerge, MergedFolderHoldsTheInMemoryMerge) {
  const LlamaConfig c = make_config(13, 18, 2, 6, 2, 4, 7, false);
  const Checkpoint ck = distinct_checkpoint(c, 41);
  ft::ContextPtr ctx = cpu_context();
  ft::AdapterPtr adapter = test_adapter(c, ck.weights, 42);
  const LlamaWeights<float> want = ft::merge_adapter(ctx.get(), c, ck.weights, adapter.get());
  for (int shards : {1, 2}) {
    SCOPED_TRACE(std::to_string(shards) + " shard(s)");
    TempDir dir;
    write_hf_folder(dir / "base", c, ck.weights, Layout{"F32", shards, false});
    write_text(dir / "base/tok512.bin", "tokenizer bytes");
    ASSERT_EQ(s2ft_adapter_save(adapter.get(), (dir / "adapter.safetensors").c_str()), S2FT_OK);
    std::map<std::string, std::vector<uint8_t>> before;
    for (const std::string &name : file_names(dir / "base")) before[name] = read_bytes(dir / ("base/" + name));

    ft::merge_hf_checkpoint(ctx.get(), dir / "base", dir / "adapter.safetensors", dir / "merged");
    const Checkpoint merged = ft::load_hf_checkpoint(dir / "merged");
    expect_same_config(merged.config, c);
    expect_same_weights(merged.weights, want);
    // The base is untouched; the merge has its files (the tokenizer copied,
    // config.json and the index byte for byte).
    for (const auto &item : before) EXPECT_EQ(read_bytes(dir / ("base/" + item.first)), item.second) << item.first;
    EXPECT_EQ(file_names(dir / "merged"), file_names(dir / "base"));
    EXPECT_EQ(read_bytes(dir / "merged/config.json"), before.at("config.json"));
    EXPECT_EQ(read_bytes(dir / "merged/tok512.bin"), before.at("tok512.bin"));
  }
}

TEST(FinetuneHfMerge, RefusesAnAdapterOfAnotherBaseNamingIt) {
  const LlamaConfig c = make_config(13, 18, 2, 6, 2, 4, 7, false);
  ft::ContextPtr ctx = cpu_context();
  TempDir dir;
  write_hf_folder(dir / "base", c, distinct_weights(c, 51));
  // Fingerprinted against other weights.
  ft::AdapterPtr other = test_adapter(c, distinct_weights(c, 52), 53);
  ASSERT_EQ(s2ft_adapter_save(other.get(), (dir / "other.safetensors").c_str()), S2FT_OK);
  expect_error([&] { ft::merge_hf_checkpoint(ctx.get(), dir / "base", dir / "other.safetensors", dir / "merged"); },
               {dir / "other.safetensors"});
  EXPECT_FALSE(fs::exists(dir / "merged/config.json"));
  // Made for another model shape.
  const LlamaConfig small = make_config(13, 18, 3, 6, 2, 4, 7, false);
  ft::AdapterPtr wrong = test_adapter(small, distinct_weights(small, 54), 55);
  ASSERT_EQ(s2ft_adapter_save(wrong.get(), (dir / "wrong.safetensors").c_str()), S2FT_OK);
  expect_error([&] { ft::merge_hf_checkpoint(ctx.get(), dir / "base", dir / "wrong.safetensors", dir / "merged"); },
               {dir / "wrong.safetensors"});
  // No adapter file; no base.
  expect_error([&] { ft::merge_hf_checkpoint(ctx.get(), dir / "base", dir / "none.safetensors", dir / "merged"); },
               {dir / "none.safetensors: cannot open"});
  expect_error([&] { ft::merge_hf_checkpoint(ctx.get(), dir / "absent", dir / "other.safetensors", dir / "merged"); },
               {dir / "absent"});
}

// ---- llama2.c checkpoints --------------------------------------------------------------

// A llama2.c file of HF-layout weights: q/k rows put back in llama2.c's
// interleaved order (llama2.c row 2j = HF row j, row 2j+1 = HF row hs/2 + j).
std::vector<uint8_t> llama2c_image(const LlamaConfig &c, const LlamaWeights<float> &w) {
  std::vector<uint8_t> out;
  for (int64_t v : {c.d_model, c.d_ff, c.n_layers, c.n_heads, c.n_kv_heads, c.tied ? c.vocab : -c.vocab, c.max_seq})
    put_i32(out, static_cast<int32_t>(v));
  auto put = [&](const std::vector<float> &t) {
    for (float f : t) put_f32(out, f);
  };
  auto interleave = [&](const std::vector<float> &t, int64_t heads) {
    const int64_t hs = c.head_dim, half = hs / 2, cols = c.d_model;
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t r = 0; r < hs; ++r) {
        const int64_t hf_row = h * hs + (r % 2 == 0 ? r / 2 : half + r / 2);
        for (int64_t j = 0; j < cols; ++j) put_f32(out, t[static_cast<size_t>(hf_row * cols + j)]);
      }
  };
  put(w.embed);
  for (const auto &l : w.layers) put(l.attn_norm);
  for (const auto &l : w.layers) interleave(l.q, c.n_heads);
  for (const auto &l : w.layers) interleave(l.k, c.n_kv_heads);
  for (const auto &l : w.layers) put(l.v);
  for (const auto &l : w.layers) put(l.o);
  for (const auto &l : w.layers) put(l.ffn_norm);
  for (const auto &l : w.layers) put(l.gate);
  for (const auto &l : w.layers) put(l.down);
  for (const auto &l : w.layers) put(l.up);
  put(w.final_norm);
  for (int64_t i = 0; i < c.max_seq * c.head_dim; ++i) put_f32(out, 0.125f * static_cast<float>(i % 5 + 1));  // freq_cis
  if (!c.tied) put(w.lm_head);
  return out;
}

// llama2.c's geometry: head_dim = d_model / n_heads, eps 1e-5, theta 1e4.
LlamaConfig llama2c_config(bool tied) {
  LlamaConfig c = make_config(11, 16, 2, 4, 2, 4, 9, tied);  // GQA 4/2, odd vocab and d_ff
  c.rms_eps = 1e-5;
  c.rope_theta = 10000.0;
  return c;
}

TEST(FinetuneLlama2c, ReadsWeightsAndReordersQkForRotateHalf) {
  for (bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "shared classifier" : "separate classifier");
    TempDir dir;
    const LlamaConfig c = llama2c_config(tied);
    const Checkpoint want = distinct_checkpoint(c, tied ? 11 : 12);
    write_bytes(dir / "model.bin", llama2c_image(c, want.weights));
    const Checkpoint got = ft::load_llama2c_checkpoint(dir / "model.bin");
    expect_same_config(got.config, c);
    expect_same_weights(got.weights, want.weights);
    // load_checkpoint reads a file as llama2.c.
    expect_same_weights(ft::load_checkpoint(dir / "model.bin").weights, want.weights);
  }
}

TEST(FinetuneLlama2c, QkReorderMovesEvenRowsFirstWithinEachHead) {
  // q rows numbered by their llama2.c position: HF row h*hs + j must hold
  // llama2.c row h*hs + 2j, and row h*hs + hs/2 + j llama2.c row h*hs + 2j + 1.
  TempDir dir;
  const LlamaConfig c = llama2c_config(true);
  LlamaWeights<float> w = distinct_weights(c, 13);
  std::vector<uint8_t> image = llama2c_image(c, w);
  const size_t q_start = 28 + 4 * static_cast<size_t>(c.vocab * c.d_model + c.n_layers * c.d_model);
  for (int64_t r = 0; r < c.q_dim(); ++r)
    for (int64_t j = 0; j < c.d_model; ++j) {
      std::vector<uint8_t> f;
      put_f32(f, static_cast<float>(r));
      std::memcpy(&image[q_start + 4 * static_cast<size_t>(r * c.d_model + j)], f.data(), 4);
    }
  write_bytes(dir / "m.bin", image);
  const Checkpoint got = ft::load_llama2c_checkpoint(dir / "m.bin");
  const int64_t hs = c.head_dim;
  for (int64_t h = 0; h < c.n_heads; ++h)
    for (int64_t j = 0; j < hs / 2; ++j) {
      EXPECT_EQ(got.weights.layers[0].q[static_cast<size_t>((h * hs + j) * c.d_model)], h * hs + 2 * j);
      EXPECT_EQ(got.weights.layers[0].q[static_cast<size_t>((h * hs + hs / 2 + j) * c.d_model)], h * hs + 2 * j + 1);
    }
}

TEST(FinetuneLlama2c, RejectsTruncatedFile) {
  TempDir dir;
  const LlamaConfig c = llama2c_config(false);
  std::vector<uint8_t> image = llama2c_image(c, distinct_weights(c, 1));
  image.resize(image.size() - 4);
  write_bytes(dir / "cut.bin", image);
  expect_error([&] { ft::load_llama2c_checkpoint(dir / "cut.bin"); }, {"cut.bin", "truncated", "needs"});
  image.resize(10);
  write_bytes(dir / "tiny.bin", image);
  expect_error([&] { ft::load_llama2c_checkpoint(dir / "tiny.bin"); }, {"tiny.bin", "10 bytes", "28-byte"});
  // Bytes past the weights mean the file is not what the header says.
  image = llama2c_image(c, distinct_weights(c, 1));
  image.resize(image.size() + 8, 1);
  write_bytes(dir / "long.bin", image);
  expect_error([&] { ft::load_llama2c_checkpoint(dir / "long.bin"); }, {"long.bin", "8 bytes after the weights"});
  expect_error([&] { ft::load_llama2c_checkpoint(dir / "absent.bin"); }, {"absent.bin", "no such file"});
  expect_error([&] { ft::load_checkpoint(dir / "absent.bin"); }, {"absent.bin", "no such checkpoint"});
}

TEST(FinetuneLlama2c, RejectsNegativeOrZeroDims) {
  TempDir dir;
  const LlamaConfig c = llama2c_config(true);
  const std::vector<uint8_t> good = llama2c_image(c, distinct_weights(c, 1));
  auto with_field = [&](int field, int32_t value) {
    std::vector<uint8_t> image = good;
    std::vector<uint8_t> v;
    put_i32(v, value);
    std::memcpy(&image[static_cast<size_t>(4 * field)], v.data(), 4);
    write_bytes(dir / "m.bin", image);
    return dir / "m.bin";
  };
  expect_error([&] { ft::load_llama2c_checkpoint(with_field(0, -16)); }, {"m.bin", "dim is -16", "positive"});
  expect_error([&] { ft::load_llama2c_checkpoint(with_field(2, 0)); }, {"n_layers is 0"});
  expect_error([&] { ft::load_llama2c_checkpoint(with_field(5, 0)); }, {"vocab_size is 0"});
  expect_error([&] { ft::load_llama2c_checkpoint(with_field(6, -1)); }, {"seq_len is -1"});
  expect_error([&] { ft::load_llama2c_checkpoint(with_field(3, 5)); }, {"dim (16) is not a multiple of n_heads (5)"});
  expect_error([&] { ft::load_llama2c_checkpoint(with_field(4, 3)); }, {"not a multiple of num_key_value_heads (3)"});
  expect_error([&] { ft::load_llama2c_checkpoint(with_field(1, 1 << 30)); }, {"intermediate_size", "outside"});
  expect_error([&] { ft::load_llama2c_checkpoint(with_field(5, INT32_MIN)); }, {"vocab_size", "outside"});
  // Sizes that pass every check but need far more bytes than the file has.
  expect_error([&] { ft::load_llama2c_checkpoint(with_field(2, 1 << 20)); }, {"truncated"});
}

// ---- tokenizer -----------------------------------------------------------------------

// A llama2.c tokenizer file: <unk>, BOS, EOS, the 256 byte tokens, then
// `words` with their scores.
std::vector<uint8_t> tokenizer_image(const std::vector<std::pair<std::string, float>> &words,
                                     int32_t max_len = 16) {
  std::vector<std::pair<std::string, float>> all = {{"<unk>", 0.0f}, {"\n<s>\n", 0.0f}, {"\n</s>\n", 0.0f}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    all.push_back({name, 0.0f});
  }
  all.insert(all.end(), words.begin(), words.end());
  std::vector<uint8_t> out;
  put_i32(out, max_len);
  for (const auto &t : all) {
    put_f32(out, t.second);
    put_i32(out, static_cast<int32_t>(t.first.size()));
    out.insert(out.end(), t.first.begin(), t.first.end());
  }
  return out;
}

const std::vector<std::pair<std::string, float>> kWords = {
    {" ", -50.0f},   {"a", -40.0f},  {"b", -41.0f},  {"c", -42.0f},   {"\xc3\xa9", -43.0f},  // é
    {" a", -5.0f},   {"ab", -3.0f},  {"bc", -1.0f},  {" ab", -2.0f},  {"ca", -4.0f},
    {"<", -45.0f},   {"s", -46.0f},  {">", -47.0f},  {"\n", -48.0f},  {"<s", -6.0f},
    {"<s>", -7.0f},  {"\n<s", -8.0f}, {"\n<s>", -9.0f},
};
// Ids: words start after the 259 control and byte tokens.
int32_t word_id(const std::string &w) {
  for (size_t i = 0; i < kWords.size(); ++i)
    if (kWords[i].first == w) return static_cast<int32_t>(259 + i);
  return -1;
}

Tokenizer small_tokenizer() {
  const std::vector<uint8_t> image = tokenizer_image(kWords);
  return Tokenizer::parse(image, static_cast<int64_t>(259 + kWords.size()), "tok.bin");
}

TEST(FinetuneTokenizer, MergesTheHighestScoringPairFirst) {
  const Tokenizer tok = small_tokenizer();
  EXPECT_EQ(tok.size(), 259 + static_cast<int64_t>(kWords.size()));
  EXPECT_EQ(tok.max_token_length(), 16);
  // " abc": pairs " a" (-5), "ab" (-3), "bc" (-1): "bc" merges first, then
  // " a"; " ab" (-2) never forms because "b" is gone.
  EXPECT_EQ(tok.encode("abc", false, false), (std::vector<int32_t>{word_id(" a"), word_id("bc")}));
  // " ab": "ab" (-3) beats " a" (-5), then " ab" forms from " " + "ab".
  EXPECT_EQ(tok.encode("ab", true, true), (std::vector<int32_t>{1, word_id(" ab"), 2}));
  // Equal candidates: "ca" twice; the leftmost merges first, both end merged.
  EXPECT_EQ(tok.encode("caca", false, false), (std::vector<int32_t>{word_id(" "), word_id("ca"), word_id("ca")}));
}

TEST(FinetuneTokenizer, FallsBackToBytesAndRoundTrips) {
  const Tokenizer tok = small_tokenizer();
  // "é" is a token; "ü" (c3 bc) is not, so it becomes two byte tokens.
  EXPECT_EQ(tok.encode("\xc3\xa9\xc3\xbc", false, false),
            (std::vector<int32_t>{word_id(" "), word_id("\xc3\xa9"), 0xc3 + 3, 0xbc + 3}));
  for (const std::string text : {"\xc3\xa9\xc3\xbc", "abc\ncab", "  a", "x", "\n", "<0x41>", "\xff\x80 \x80"})
    EXPECT_EQ(tok.decode(tok.encode(text, true, true)), text) << text;
  // Random bytes, invalid UTF-8 and NULs included.
  s2ft_test::Random rng(21);
  for (int trial = 0; trial < 50; ++trial) {
    std::string text(static_cast<size_t>(rng.below(20)), '\0');
    for (char &ch : text) ch = rng.below(4) == 0 ? static_cast<char>(rng.below(256)) : "abc \n<s>"[rng.below(8)];
    EXPECT_EQ(tok.decode(tok.encode(text, trial % 2 == 0, false)), text) << trial;
  }
}

TEST(FinetuneTokenizer, ControlTokensAreNotMatchedFromText) {
  const Tokenizer tok = small_tokenizer();
  // "\n<s>\n" is BOS's piece; text spelling it must not become BOS.
  const std::vector<int32_t> ids = tok.encode("\n<s>\n", false, false);
  for (int32_t id : ids) EXPECT_NE(id, 1);
  EXPECT_EQ(tok.decode(ids), "\n<s>\n");
}

TEST(FinetuneTokenizer, EmptyTextAndPieces) {
  const Tokenizer tok = small_tokenizer();
  EXPECT_EQ(tok.encode("", false, false), std::vector<int32_t>{});
  EXPECT_EQ(tok.encode("", true, true), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(tok.decode({}), "");
  EXPECT_EQ(tok.decode({1, 2}), "");
  EXPECT_EQ(tok.piece(1, word_id(" a")), "a");    // after BOS the dummy space goes
  EXPECT_EQ(tok.piece(word_id("b"), word_id(" a")), " a");
  EXPECT_EQ(tok.piece(7, 0x41 + 3), "A");          // <0x41>
  EXPECT_EQ(tok.piece(7, 0), "<unk>");
  EXPECT_EQ(tok.piece(7, 2), "");
  expect_error([&] { tok.piece(1, static_cast<int32_t>(tok.size())); }, {"token 277", "outside the vocabulary"});
  expect_error([&] { tok.decode({5, -1}); }, {"token -1"});
}

TEST(FinetuneTokenizer, RejectsTruncatedFile) {
  std::vector<uint8_t> image = tokenizer_image(kWords);
  const int64_t vocab = 259 + static_cast<int64_t>(kWords.size());
  const std::vector<uint8_t> cut(image.begin(), image.end() - 2);
  expect_error([&] { Tokenizer::parse(cut, vocab, "tok.bin"); }, {"tok.bin", "truncated", "token 276's text"});
  expect_error([&] { Tokenizer::parse({7, 0}, vocab, "tok.bin"); }, {"tok.bin", "truncated", "max_token_length"});
  expect_error([&] { Tokenizer::parse(image, vocab + 1, "tok.bin"); }, {"tok.bin", "truncated"});
  expect_error([&] { Tokenizer::parse(image, 1 << 20, "tok.bin"); }, {"tok.bin", "truncated", "at least"});
  expect_error([&] { Tokenizer::parse(image, vocab - 1, "tok.bin"); }, {"tok.bin", "bytes after", "vocabulary size"});
  expect_error([&] { Tokenizer::parse(image, 0, "tok.bin"); }, {"vocab_size 0"});
  TempDir dir;
  expect_error([&] { Tokenizer::load(dir / "none.bin", vocab); }, {"none.bin", "no such file"});
}

TEST(FinetuneTokenizer, RejectsNegativeLength) {
  std::vector<uint8_t> image = tokenizer_image(kWords);
  // Token 0's length field follows the header and its score.
  std::vector<uint8_t> v;
  put_i32(v, -5);
  std::memcpy(&image[8], v.data(), 4);
  expect_error([&] { Tokenizer::parse(image, 259 + static_cast<int64_t>(kWords.size()), "tok.bin"); },
               {"tok.bin", "token 0", "negative length -5"});
  expect_error([&] { Tokenizer::parse(tokenizer_image(kWords, -3), 277, "tok.bin"); },
               {"tok.bin", "max_token_length is -3"});
}

TEST(FinetuneTokenizer, RejectsLengthAboveMaxTokenLength) {
  // "\n</s>\n" (token 2) is 6 bytes long.
  expect_error([&] { Tokenizer::parse(tokenizer_image(kWords, 5), 277, "tok.bin"); },
               {"tok.bin", "token 2", "length 6", "above max_token_length 5"});
}

#else  // FT_IO_REALDATA

// ---- the real stories260K model -----------------------------------------------------------

std::string hf_dir() { return s2ft_test::model_dir(); }
std::string llama2c_file() { return s2ft_test::data_dir() + "/stories260K/stories260K.bin"; }
std::string tokenizer_file() { return s2ft_test::data_dir() + "/stories260K/tok512.bin"; }

#define SKIP_WITHOUT(path)                                                          \
  if (!fs::exists(path)) GTEST_SKIP() << (path) << " is absent (no real test data)"

TEST(FinetuneIoRealData, HfCheckpointHasTheDocumentedConfig) {
  SKIP_WITHOUT(hf_dir());
  const Checkpoint ck = ft::load_hf_checkpoint(hf_dir());
  const LlamaConfig &c = ck.config;
  EXPECT_EQ(c.d_model, 64);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.d_ff, 172);
  EXPECT_EQ(c.vocab, 512);
  EXPECT_EQ(c.max_seq, 512);
  EXPECT_EQ(c.rms_eps, 1e-5);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_TRUE(c.tied);
  EXPECT_TRUE(ck.weights.lm_head.empty());
  EXPECT_EQ(ft::parameter_count(ck.weights), 260032);  // the README's count, tied head once
}

TEST(FinetuneIoRealData, Llama2cFileGivesBitIdenticalWeights) {
  SKIP_WITHOUT(hf_dir());
  SKIP_WITHOUT(llama2c_file());
  const Checkpoint hf = ft::load_hf_checkpoint(hf_dir());
  const Checkpoint l2c = ft::load_llama2c_checkpoint(llama2c_file());
  expect_same_config(l2c.config, hf.config);
  // Bit-identical q and k prove the interleaved -> rotate-half reordering.
  expect_same_weights(l2c.weights, hf.weights);
  // load_checkpoint picks the format from what the path is.
  expect_same_weights(ft::load_checkpoint(hf_dir()).weights, hf.weights);
}

TEST(FinetuneIoRealData, LibraryCopiesLoadBitExact) {
  SKIP_WITHOUT(hf_dir());
  const Checkpoint ck = ft::load_hf_checkpoint(hf_dir());
  TempDir dir;
  // The same layout, and resharded into files of at most 300 kB.
  for (uint64_t max_shard_bytes : {uint64_t{0}, uint64_t{300000}}) {
    SCOPED_TRACE(max_shard_bytes);
    const std::string out = dir / ("copy-" + std::to_string(max_shard_bytes));
    copy_with_library(hf_dir(), out, max_shard_bytes);
    EXPECT_EQ(fs::exists(out + "/model.safetensors.index.json"), max_shard_bytes != 0);
    const Checkpoint back = ft::load_hf_checkpoint(out);
    expect_same_config(back.config, ck.config);
    expect_same_weights(back.weights, ck.weights);
  }
}

TEST(FinetuneIoRealData, MergedFolderIsTheLlama2cModelMergedInMemory) {
  SKIP_WITHOUT(hf_dir());
  SKIP_WITHOUT(llama2c_file());
  const Checkpoint l2c = ft::load_llama2c_checkpoint(llama2c_file());
  ft::ContextPtr ctx = cpu_context();
  ft::AdapterPtr adapter = test_adapter(l2c.config, l2c.weights, 61);
  TempDir dir;
  ASSERT_EQ(s2ft_adapter_save(adapter.get(), (dir / "adapter.safetensors").c_str()), S2FT_OK);
  ft::merge_hf_checkpoint(ctx.get(), hf_dir(), dir / "adapter.safetensors", dir / "merged");
  const Checkpoint merged = ft::load_hf_checkpoint(dir / "merged");
  expect_same_weights(merged.weights, ft::merge_adapter(ctx.get(), l2c.config, l2c.weights, adapter.get()));
  EXPECT_TRUE(fs::exists(dir / "merged/tok512.bin"));
}

TEST(FinetuneIoRealData, TokenizerHeaderIsAnInt32) {
  SKIP_WITHOUT(tokenizer_file());
  const Tokenizer tok = Tokenizer::load(tokenizer_file(), 512);
  EXPECT_EQ(tok.size(), 512);
  EXPECT_EQ(tok.max_token_length(), 7);
  EXPECT_EQ(tok.piece(5, 1), "");
  EXPECT_EQ(tok.piece(5, 3 + 'A'), "A");
  // The wrong vocabulary size is caught.
  expect_error([&] { Tokenizer::load(tokenizer_file(), 500); }, {"tok512.bin", "bytes after"});
}

TEST(FinetuneIoRealData, TokenizerRoundTripsAStorySentence) {
  SKIP_WITHOUT(tokenizer_file());
  const Tokenizer tok = Tokenizer::load(tokenizer_file(), 512);
  const std::string text = "Once upon a time, there was a little girl named Lily.";
  const std::vector<int32_t> ids = tok.encode(text, true, false);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], tok.bos());
  EXPECT_LT(ids.size(), text.size()) << "BPE should merge the common words";
  for (int32_t id : ids) EXPECT_TRUE(id >= 0 && id < 512);
  EXPECT_EQ(tok.decode(ids), text);
  // Piece by piece, as a generation loop prints it.
  std::string printed;
  for (size_t i = 1; i < ids.size(); ++i) printed += tok.piece(ids[i - 1], ids[i]);
  EXPECT_EQ(printed, text);
  const std::vector<int32_t> plain = tok.encode(text, false, true);
  EXPECT_NE(plain[0], tok.bos());
  EXPECT_EQ(plain.back(), tok.eos());
  EXPECT_EQ(tok.decode(plain), text);
}

TEST(FinetuneIoRealData, TokenizerFallsBackToBytes) {
  SKIP_WITHOUT(tokenizer_file());
  const Tokenizer tok = Tokenizer::load(tokenizer_file(), 512);
  for (const std::string text : {"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac", "Lily said:\n\"Hi!\"\n\nThe end.\n", " two  spaces"}) {
    const std::vector<int32_t> ids = tok.encode(text, true, true);
    EXPECT_EQ(tok.decode(ids), text) << text;
  }
  // 日 (e6 97 a5) is not among 512 tokens: three byte tokens.
  const std::vector<int32_t> ids = tok.encode("\xe6\x97\xa5", false, false);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(std::vector<int32_t>(ids.end() - 3, ids.end()), (std::vector<int32_t>{0xe6 + 3, 0x97 + 3, 0xa5 + 3}));
}

TEST(FinetuneIoRealData, TokenizerEmptyString) {
  SKIP_WITHOUT(tokenizer_file());
  const Tokenizer tok = Tokenizer::load(tokenizer_file(), 512);
  EXPECT_EQ(tok.encode("", true, false), std::vector<int32_t>{1});
  EXPECT_EQ(tok.encode("", false, false), std::vector<int32_t>{});
  EXPECT_EQ(tok.decode(tok.encode("", true, true)), "");
}

#endif  // FT_IO_REALDATA

}  // namespace
