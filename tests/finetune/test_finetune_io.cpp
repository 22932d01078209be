// The fine-tuning example's file I/O (examples/finetune): its safetensors
// reader/writer, Hugging Face and llama2.c checkpoints, and llama2.c's
// tokenizer. Round trips are checked bit for bit; every hostile input must
// give a std::runtime_error whose message names the problem.
//
// Built twice: without FT_IO_REALDATA the synthetic tests (label unit), with
// it the tests on the real stories260K model in ../shared/data (realdata).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "safetensors_file.hpp"
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

// The safetensors image of a checkpoint's weights, as save_hf_checkpoint
// writes them, with `edit` applied to the list of tensors first.
void rewrite_weights(const std::string &dir, const Checkpoint &ck,
                     const std::function<void(std::vector<ft::TensorToWrite> &)> &edit) {
  ft::save_hf_checkpoint(dir, ck);
  ft::SafetensorsContents contents = ft::read_safetensors(dir + "/model.safetensors");
  std::vector<ft::TensorToWrite> tensors;
  for (auto &item : contents.tensors) tensors.push_back({item.first, item.second.shape, &item.second.data});
  edit(tensors);
  ft::write_safetensors(dir + "/model.safetensors", tensors);
}

// ---- safetensors ----------------------------------------------------------------

TEST(FinetuneSafetensors, RoundTripIsBitExactWithMetadataAndAlignedData) {
  s2ft_test::Random rng(7);
  std::vector<float> a(3 * 5), b(1), c;
  for (float &x : a) x = static_cast<float>(rng.uniform());
  b[0] = -0.0f;
  a[4] = std::numeric_limits<float>::denorm_min();
  const std::vector<ft::TensorToWrite> tensors = {{"z.first", {3, 5}, &a}, {"a.scalar", {}, &b}, {"empty", {0, 4}, &c}};
  const std::vector<uint8_t> bytes = ft::serialize_safetensors(tensors, {{"format", "pt"}, {"note", "x"}});

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | bytes[static_cast<size_t>(i)];
  EXPECT_EQ((8 + header_len) % 8, 0u) << "the data section must start 8-byte aligned";
  // Tensors are stored in the order given.
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(header_len));
  EXPECT_LT(header.find("z.first"), header.find("a.scalar"));

  const ft::SafetensorsContents got = ft::parse_safetensors(bytes, "mem");
  ASSERT_EQ(got.tensors.size(), 3u);
  EXPECT_EQ(got.tensors.at("z.first").shape, (std::vector<int64_t>{3, 5}));
  EXPECT_TRUE(bitwise_equal(got.tensors.at("z.first").data, a));
  EXPECT_EQ(got.tensors.at("a.scalar").shape, std::vector<int64_t>{});
  EXPECT_TRUE(bitwise_equal(got.tensors.at("a.scalar").data, b));
  EXPECT_EQ(got.tensors.at("empty").shape, (std::vector<int64_t>{0, 4}));
  EXPECT_TRUE(got.tensors.at("empty").data.empty());
  EXPECT_EQ(got.metadata, (std::map<std::string, std::string>{{"format", "pt"}, {"note", "x"}}));

  // And through a file, atomically (no temporary left behind).
  TempDir dir;
  ft::write_safetensors(dir / "t.safetensors", tensors);
  EXPECT_FALSE(fs::exists(dir / "t.safetensors.tmp"));
  EXPECT_TRUE(bitwise_equal(ft::read_safetensors(dir / "t.safetensors").tensors.at("z.first").data, a));
}

TEST(FinetuneSafetensors, ConvertsF16AndBF16ToFloat) {
  // Values exact in both formats, a subnormal half and infinities.
  const std::vector<float> f16_values = {1.0f, -2.0f, 0.5f, 65504.0f, std::ldexp(1.0f, -24), -3.25f};
  const std::vector<float> bf16_values = {1.0f, -2.5f, 3.140625f, std::ldexp(1.0f, -126), 1e30f, -0.0f};
  std::vector<uint8_t> data;
  for (float v : f16_values) {
    const uint16_t h = v == std::ldexp(1.0f, -24) ? uint16_t{1} : s2ft_test::to_f16(v);
    data.push_back(static_cast<uint8_t>(h));
    data.push_back(static_cast<uint8_t>(h >> 8));
  }
  for (float v : bf16_values) {
    const uint16_t h = s2ft_test::to_bf16(v);
    data.push_back(static_cast<uint8_t>(h));
    data.push_back(static_cast<uint8_t>(h >> 8));
  }
  data.push_back(0x00);  // F16 +inf
  data.push_back(0x7c);
  const std::string header =
      R"({"h":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},)"
      R"("b":{"dtype":"BF16","shape":[6],"data_offsets":[12,24]},)"
      R"("inf":{"dtype":"F16","shape":[1],"data_offsets":[24,26]}})";
  std::vector<uint8_t> bytes = raw_safetensors(header, 0);
  bytes.insert(bytes.end(), data.begin(), data.end());
  const ft::SafetensorsContents got = ft::parse_safetensors(bytes, "mem");
  EXPECT_EQ(got.tensors.at("h").data, f16_values);
  EXPECT_EQ(got.tensors.at("h").shape, (std::vector<int64_t>{2, 3}));
  const std::vector<float> b = got.tensors.at("b").data;
  ASSERT_EQ(b.size(), bf16_values.size());
  for (size_t i = 0; i < b.size(); ++i)
    EXPECT_EQ(b[i], s2ft_test::from_bf16(s2ft_test::to_bf16(bf16_values[i]))) << i;
  EXPECT_TRUE(std::signbit(b[5]));
  EXPECT_EQ(got.tensors.at("inf").data[0], std::numeric_limits<float>::infinity());
}

TEST(FinetuneSafetensors, RejectsTruncatedFile) {
  expect_error([] { ft::parse_safetensors({1, 0, 0}, "short.safetensors"); },
               {"short.safetensors", "3 bytes", "too short"});
  // A valid header whose tensor runs past the end of the (cut) data section.
  const std::string header = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  expect_error([&] { ft::parse_safetensors(raw_safetensors(header, 12), "cut.safetensors"); },
               {"cut.safetensors", "'w'", "ends at byte 16", "12 bytes"});
}

TEST(FinetuneSafetensors, RejectsHeaderLengthLargerThanFile) {
  std::vector<uint8_t> bytes = raw_safetensors("{}", 0);
  bytes[0] = 200;
  expect_error([&] { ft::parse_safetensors(bytes, "big.safetensors"); },
               {"big.safetensors", "header length 200", "past the end of the file"});
  bytes[7] = 0xff;  // 2^63-ish: no overflow in the check
  expect_error([&] { ft::parse_safetensors(bytes, "huge.safetensors"); }, {"past the end of the file"});
}

TEST(FinetuneSafetensors, RejectsHeaderThatIsNotAJsonObject) {
  expect_error([] { ft::parse_safetensors(raw_safetensors("[1, 2]", 0), "arr.safetensors"); },
               {"arr.safetensors", "array", "not an object"});
  expect_error([] { ft::parse_safetensors(raw_safetensors("{\"w\": ", 0), "bad.safetensors"); },
               {"bad.safetensors", "not valid JSON"});
  expect_error([] { ft::parse_safetensors(raw_safetensors(R"({"w": 5})", 0), "entry.safetensors"); },
               {"'w'", "not a JSON object"});
  expect_error([] { ft::parse_safetensors(raw_safetensors(std::string(40, '[') + std::string(40, ']'), 0), "deep"); },
               {"nested deeper"});
  expect_error([] { ft::parse_safetensors(raw_safetensors(R"({"__metadata__":{"a":1}})", 0), "meta"); },
               {"__metadata__", "'a'", "not a string"});
}

TEST(FinetuneSafetensors, RejectsOffsetsOutOfRange) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[100],"data_offsets":[500,900]}})";
  expect_error([&] { ft::parse_safetensors(raw_safetensors(header, 800), "model.safetensors"); },
               {"model.safetensors", "tensor 'w'", "ends at byte 900", "800 bytes"});
  const std::string backwards = R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})";
  expect_error([&] { ft::parse_safetensors(raw_safetensors(backwards, 16), "m"); }, {"begin after end"});
  const std::string huge = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,0]}})";
  expect_error([&] { ft::parse_safetensors(raw_safetensors(huge, 16), "m"); }, {"'w'"});
}

TEST(FinetuneSafetensors, RejectsOffsetsReachingIntoTheHeader) {
  // Offsets are relative to the data section; a negative one would point
  // back into the header.
  const std::string header = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[-8,8]}})";
  expect_error([&] { ft::parse_safetensors(raw_safetensors(header, 16), "m.safetensors"); },
               {"m.safetensors", "'w'", "data_offsets", "non-negative", "header"});
  const std::string text = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":["0",16]}})";
  expect_error([&] { ft::parse_safetensors(raw_safetensors(text, 16), "m"); }, {"data_offsets"});
}

TEST(FinetuneSafetensors, RejectsOffsetsInconsistentWithShapeAndDtype) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})";
  expect_error([&] { ft::parse_safetensors(raw_safetensors(header, 16), "m.safetensors"); },
               {"m.safetensors", "'w'", "12 bytes", "[2, 2]", "F32", "need 16"});
  const std::string half = R"({"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,16]}})";
  expect_error([&] { ft::parse_safetensors(raw_safetensors(half, 16), "m"); }, {"need 8"});
  // A shape whose element count overflows 64 bits.
  const std::string overflow =
      R"({"w":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904,16],"data_offsets":[0,0]}})";
  expect_error([&] { ft::parse_safetensors(raw_safetensors(overflow, 16), "m"); }, {"'w'", "more elements"});
  const std::string negative = R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})";
  expect_error([&] { ft::parse_safetensors(raw_safetensors(negative, 16), "m"); }, {"'w'", "shape[0]"});
}

TEST(FinetuneSafetensors, RejectsOverlappingTensors) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  expect_error([&] { ft::parse_safetensors(raw_safetensors(header, 16), "m.safetensors"); },
               {"m.safetensors", "'a'", "'b'", "overlap"});
}

TEST(FinetuneSafetensors, RejectsTensorNamedTwice) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  expect_error([&] { ft::parse_safetensors(raw_safetensors(header, 8), "m"); }, {"'a'", "twice"});
}

TEST(FinetuneSafetensors, RejectsUnsupportedDtype) {
  const std::string header = R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})";
  expect_error([&] { ft::parse_safetensors(raw_safetensors(header, 16), "m.safetensors"); },
               {"m.safetensors", "'ids'", "unsupported dtype 'I64'", "F32, F16 and BF16"});
  const std::string missing = R"({"w":{"shape":[2],"data_offsets":[0,8]}})";
  expect_error([&] { ft::parse_safetensors(raw_safetensors(missing, 8), "m"); }, {"'w'", "dtype"});
}

TEST(FinetuneSafetensors, WriterRejectsInconsistentTensors) {
  std::vector<float> v(5, 1.0f);
  expect_error([&] { ft::serialize_safetensors({{"w", {2, 3}, &v}}); }, {"'w'", "[2, 3]", "5 values"});
  expect_error([&] { ft::serialize_safetensors({{"w", {5}, &v}, {"w", {5}, &v}}); }, {"'w'", "twice"});
}

// ---- Hugging Face checkpoints -------------------------------------------------------

TEST(FinetuneHfCheckpoint, SaveLoadRoundTripIsBitExact) {
  const std::vector<LlamaConfig> configs = {
      gqa_config(),                                 // tied, GQA 6/2, odd d_ff and vocab
      make_config(9, 8, 3, 2, 2, 4, 5, false),      // untied, plain multi-head
      make_config(17, 10, 1, 4, 1, 6, 11, false),   // head_dim 6 != 10 / 4, MQA
      make_config(5, 4, 1, 1, 1, 2, 1, true),       // the smallest sizes
  };
  for (size_t i = 0; i < configs.size(); ++i) {
    SCOPED_TRACE("config " + std::to_string(i) + ": " + configs[i].describe());
    TempDir dir;
    const std::string out = dir / "nested/ckpt";  // created on demand
    const Checkpoint ck = distinct_checkpoint(configs[i], 100 + i);
    ft::save_hf_checkpoint(out, ck);
    const Checkpoint back = ft::load_hf_checkpoint(out);
    expect_same_config(back.config, ck.config);
    expect_same_weights(back.weights, ck.weights);
    EXPECT_EQ(back.weights.lm_head.empty(), ck.config.tied);

    // The standard layout: no lm_head when tied, format "pt", F32, and the
    // config fields transformers reads.
    const ft::SafetensorsContents file = ft::read_safetensors(out + "/model.safetensors");
    EXPECT_EQ(file.tensors.count("lm_head.weight"), ck.config.tied ? 0u : 1u);
    EXPECT_EQ(file.metadata.at("format"), "pt");
    const std::vector<uint8_t> config_bytes = read_bytes(out + "/config.json");
    const std::string config(config_bytes.begin(), config_bytes.end());
    for (const char *field : {"\"LlamaForCausalLM\"", "\"model_type\": \"llama\"", "\"torch_dtype\": \"float32\"",
                              "\"num_key_value_heads\"", "\"tie_word_embeddings\""})
      EXPECT_NE(config.find(field), std::string::npos) << field;
    EXPECT_FALSE(fs::exists(out + "/config.json.tmp"));
    EXPECT_FALSE(fs::exists(out + "/model.safetensors.tmp"));

    // Saving again over the same folder replaces it.
    const Checkpoint other = distinct_checkpoint(configs[i], 200 + i);
    ft::save_hf_checkpoint(out, other);
    expect_same_weights(ft::load_hf_checkpoint(out).weights, other.weights);
  }
}

TEST(FinetuneHfCheckpoint, ShardedFolderLoadsTheSameWeights) {
  TempDir dir;
  const LlamaConfig config = make_config(13, 18, 3, 6, 2, 4, 7, false);
  const Checkpoint ck = distinct_checkpoint(config, 5);
  ft::save_hf_checkpoint(dir.str(), ck);
  ft::SafetensorsContents all = ft::read_safetensors(dir / "model.safetensors");
  fs::remove(dir / "model.safetensors");

  // Alternate the tensors between two shards, and list them in the index.
  std::vector<ft::TensorToWrite> shard[2];
  std::string weight_map;
  int n = 0;
  for (auto &item : all.tensors) {
    const int s = n++ % 2;
    shard[s].push_back({item.first, item.second.shape, &item.second.data});
    weight_map += std::string(weight_map.empty() ? "" : ",") + "\"" + item.first + "\":\"model-0000" +
                  std::to_string(s + 1) + "-of-00002.safetensors\"";
  }
  ft::write_safetensors(dir / "model-00001-of-00002.safetensors", shard[0]);
  ft::write_safetensors(dir / "model-00002-of-00002.safetensors", shard[1]);
  write_text(dir / "model.safetensors.index.json",
             R"({"metadata":{"total_size":1},"weight_map":{)" + weight_map + "}}");

  const Checkpoint back = ft::load_hf_checkpoint(dir.str());
  expect_same_config(back.config, ck.config);
  expect_same_weights(back.weights, ck.weights);

  // Saving into a folder that holds a sharded checkpoint would leave the
  // stale index in charge; it is refused.
  expect_error([&] { ft::save_hf_checkpoint(dir.str(), ck); }, {dir.str(), "model.safetensors.index.json"});
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
  std::vector<float> junk(3, 1.5f);
  rewrite_weights(dir.str(), ck, [&](std::vector<ft::TensorToWrite> &t) { t.push_back({"lm_head.weight", {3}, &junk}); });
  const Checkpoint back = ft::load_hf_checkpoint(dir.str());
  EXPECT_TRUE(back.weights.lm_head.empty());
  expect_same_weights(back.weights, ck.weights);
}

TEST(FinetuneHfCheckpoint, RejectsShapeMismatchWithConfig) {
  TempDir dir;
  const Checkpoint ck = distinct_checkpoint(gqa_config(), 3);
  // down_proj stored transposed: right size, wrong shape.
  rewrite_weights(dir.str(), ck, [](std::vector<ft::TensorToWrite> &t) {
    for (auto &x : t)
      if (x.name == "model.layers.1.mlp.down_proj.weight") x.shape = {7, 18};
  });
  expect_error([&] { ft::load_hf_checkpoint(dir.str()); },
               {"model.safetensors", "'model.layers.1.mlp.down_proj.weight'", "[7, 18]", "config.json gives [18, 7]"});
}

TEST(FinetuneHfCheckpoint, RejectsMissingTensor) {
  TempDir dir;
  const Checkpoint ck = distinct_checkpoint(gqa_config(), 4);
  rewrite_weights(dir.str(), ck, [](std::vector<ft::TensorToWrite> &t) {
    for (size_t i = 0; i < t.size(); ++i)
      if (t[i].name == "model.layers.1.mlp.up_proj.weight") t.erase(t.begin() + static_cast<std::ptrdiff_t>(i));
  });
  expect_error([&] { ft::load_hf_checkpoint(dir.str()); },
               {"model.safetensors", "missing 1 tensor", "'model.layers.1.mlp.up_proj.weight'"});

  // An untied config needs lm_head.weight.
  TempDir untied;
  LlamaConfig c = gqa_config();
  c.tied = false;
  rewrite_weights(untied.str(), distinct_checkpoint(c, 4), [](std::vector<ft::TensorToWrite> &t) {
    for (size_t i = 0; i < t.size(); ++i)
      if (t[i].name == "lm_head.weight") t.erase(t.begin() + static_cast<std::ptrdiff_t>(i));
  });
  expect_error([&] { ft::load_hf_checkpoint(untied.str()); }, {"'lm_head.weight'"});

  // No weights at all.
  TempDir empty;
  ft::save_hf_checkpoint(empty.str(), ck);
  fs::remove(empty / "model.safetensors");
  expect_error([&] { ft::load_hf_checkpoint(empty.str()); }, {"neither model.safetensors nor"});
}

TEST(FinetuneHfCheckpoint, RejectsShardNamesOutsideTheFolder) {
  for (const std::string bad : {"../model.safetensors", "sub/model.safetensors", "..", ""}) {
    SCOPED_TRACE(bad);
    TempDir dir;
    ft::save_hf_checkpoint(dir.str(), distinct_checkpoint(gqa_config(), 1));
    write_text(dir / "model.safetensors.index.json",
               R"({"weight_map":{"model.embed_tokens.weight":")" + bad + R"("}})");
    expect_error([&] { ft::load_hf_checkpoint(dir.str()); },
                 {"model.safetensors.index.json", "shard name '" + bad + "'", "not a plain file name"});
  }
  TempDir dir;
  ft::save_hf_checkpoint(dir.str(), distinct_checkpoint(gqa_config(), 1));
  write_text(dir / "model.safetensors.index.json", R"({"weight_map":{"model.embed_tokens.weight":3}})");
  expect_error([&] { ft::load_hf_checkpoint(dir.str()); }, {"'model.embed_tokens.weight'", "not a file name"});
  write_text(dir / "model.safetensors.index.json", R"({"weights":{}})");
  expect_error([&] { ft::load_hf_checkpoint(dir.str()); }, {"weight_map"});
}

TEST(FinetuneHfCheckpoint, RejectsShardWithoutTheTensorsTheIndexPlacesThere) {
  TempDir dir;
  const Checkpoint ck = distinct_checkpoint(gqa_config(), 2);
  ft::save_hf_checkpoint(dir.str(), ck);
  std::vector<float> v(4, 0.25f);
  ft::write_safetensors(dir / "other.safetensors", {{"unrelated", {4}, &v}});
  write_text(dir / "model.safetensors.index.json",
             R"({"weight_map":{"model.embed_tokens.weight":"other.safetensors"}})");
  expect_error([&] { ft::load_hf_checkpoint(dir.str()); },
               {"other.safetensors", "no tensor 'model.embed_tokens.weight'", "places there"});
  // A shard the index names but the folder lacks.
  write_text(dir / "model.safetensors.index.json", R"({"weight_map":{"model.embed_tokens.weight":"gone.safetensors"}})");
  expect_error([&] { ft::load_hf_checkpoint(dir.str()); }, {"gone.safetensors", "no such file"});
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
  write_text(dir / "config.json", "{" + base + "}");
  expect_error([&] { ft::load_hf_checkpoint(dir.str()); }, {"config.json", "hidden_size"});
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

TEST(FinetuneHfCheckpoint, SaveRejectsWeightsThatDoNotMatchTheConfig) {
  TempDir dir;
  Checkpoint ck = distinct_checkpoint(gqa_config(), 6);
  ck.weights.layers[1].k.pop_back();
  expect_error([&] { ft::save_hf_checkpoint(dir.str(), ck); }, {"'model.layers.1.self_attn.k_proj.weight'", "needs"});
  ck = distinct_checkpoint(gqa_config(), 6);
  ck.weights.lm_head = ck.weights.embed;  // tied config with a separate head
  expect_error([&] { ft::save_hf_checkpoint(dir.str(), ck); }, {"lm_head"});
  ck = distinct_checkpoint(gqa_config(), 6);
  ck.config.n_kv_heads = 4;
  expect_error([&] { ft::save_hf_checkpoint(dir.str(), ck); }, {"num_key_value_heads"});
  EXPECT_FALSE(fs::exists(dir / "config.json"));
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

TEST(FinetuneIoRealData, SavedCopyLoadsBitExact) {
  SKIP_WITHOUT(hf_dir());
  const Checkpoint ck = ft::load_hf_checkpoint(hf_dir());
  TempDir dir;
  ft::save_hf_checkpoint(dir.str(), ck);
  const Checkpoint back = ft::load_hf_checkpoint(dir.str());
  expect_same_config(back.config, ck.config);
  expect_same_weights(back.weights, ck.weights);
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
