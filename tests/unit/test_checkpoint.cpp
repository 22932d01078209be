// Checkpoints through the public API: open (folder, shards, one file),
// shape from config.json, tensor listing and zero-copy views, writing a copy
// (same layout byte for byte, or resharded) with tensors replaced, models
// over a checkpoint's weights and adapters applied by path, and every error
// path, hostile shard indexes included.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/tiny_model.hpp"
#include "support/checkpoint_folder.hpp"
#include "support/realdata.hpp"
#include "support/test_util.hpp"

namespace fs = std::filesystem;
using namespace s2ft_test;
using cli_test::Layout;
using cli_test::write_tiny;

namespace {

const s2ft_model_shape kTiny{2, 12, 4, 2, 3, 10};  // cli_test's tiny model (n_layers first)

class TempFolder {
 public:
  TempFolder() {
    static int n = 0;
    path_ = (fs::temp_directory_path() / ("s2ft-ckpt-test-" + std::to_string(getpid()) + "-" + std::to_string(n++)))
                .string();
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempFolder() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string &name) const { return path_ + "/" + name; }
  const std::string &path() const { return path_; }

 private:
  std::string path_;
};

std::string file_bytes(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// The regular files of a folder and their contents.
std::map<std::string, std::string> folder(const std::string &dir) {
  std::map<std::string, std::string> out;
  for (const auto &e : fs::directory_iterator(dir))
    if (e.is_regular_file()) out[e.path().filename().string()] = file_bytes(e.path().string());
  return out;
}

struct Checkpoint {
  s2ft_checkpoint *c = nullptr;
  explicit Checkpoint(const std::string &path) {
    EXPECT_EQ(s2ft_checkpoint_open(path.c_str(), &c), S2FT_OK) << s2ft_last_error();
  }
  Checkpoint(const Checkpoint &) = delete;
  Checkpoint &operator=(const Checkpoint &) = delete;
  ~Checkpoint() { s2ft_checkpoint_destroy(c); }
};

// name -> (dtype, shape, bytes) of every tensor, through the public API.
struct TensorRecord {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
  bool operator==(const TensorRecord &o) const { return dtype == o.dtype && shape == o.shape && bytes == o.bytes; }
};
std::map<std::string, TensorRecord> all_tensors(const s2ft_checkpoint *c) {
  std::map<std::string, TensorRecord> out;
  int64_t n = -1;
  EXPECT_EQ(s2ft_checkpoint_tensor_count(c, &n), S2FT_OK);
  for (int64_t i = 0; i < n; ++i) {
    const char *name = nullptr, *dtype = nullptr;
    int32_t ndim = -1;
    int64_t shape[8] = {};
    uint64_t nbytes = 0;
    EXPECT_EQ(s2ft_checkpoint_tensor_info(c, i, &name, &dtype, &ndim, shape, 8, &nbytes), S2FT_OK) << s2ft_last_error();
    const void *data = nullptr;
    uint64_t size = 0;
    EXPECT_EQ(s2ft_checkpoint_tensor_data(c, name, &data, &size), S2FT_OK);
    EXPECT_EQ(size, nbytes);
    out[name] = TensorRecord{dtype, std::vector<int64_t>(shape, shape + ndim),
                             std::string(static_cast<const char *>(data), static_cast<size_t>(size))};
  }
  return out;
}

std::vector<RawTensor> tiny(const char *dtype, bool misalign, uint64_t seed = 7) {
  return cli_test::tiny_tensors(dtype, seed, misalign);
}

std::map<std::string, TensorRecord> records(const std::vector<RawTensor> &ts) {
  std::map<std::string, TensorRecord> out;
  for (const RawTensor &t : ts)
    out[t.name] = TensorRecord{t.dtype, t.shape, std::string(t.bytes.begin(), t.bytes.end())};
  return out;
}

TEST(Checkpoint, OpensEveryLayoutAndListsEveryTensor) {
  for (const Layout lay : {Layout{"F32", 1, false}, Layout{"BF16", 1, false}, Layout{"F32", 3, false},
                           Layout{"F32", 1, true}, Layout{"BF16", 4, true}}) {
    SCOPED_TRACE(std::string(lay.dtype) + " shards " + std::to_string(lay.shards) + (lay.misalign ? " misaligned" : ""));
    TempFolder t;
    write_tiny(t.path(), lay, 7);
    Checkpoint c(t.path());
    ASSERT_NE(c.c, nullptr);
    s2ft_model_shape shape{};
    ASSERT_EQ(s2ft_checkpoint_shape(c.c, &shape), S2FT_OK) << s2ft_last_error();
    EXPECT_EQ(0, std::memcmp(&shape, &kTiny, sizeof shape));
    EXPECT_EQ(all_tensors(c.c), records(tiny(lay.dtype, lay.misalign)));
    const char *config = nullptr;
    ASSERT_EQ(s2ft_checkpoint_config(c.c, &config), S2FT_OK);
    ASSERT_NE(config, nullptr);
    EXPECT_EQ(std::string(config), file_bytes(t / "config.json"));
  }
}

TEST(Checkpoint, ViewsAreZeroCopyWhenAlignedAndReadTheRightValues) {
  for (bool misalign : {false, true}) {
    TempFolder t;
    write_tiny(t.path(), Layout{"F32", 1, misalign}, 3);
    Checkpoint c(t.path());
    const std::vector<RawTensor> want = tiny("F32", misalign, 3);
    for (const RawTensor &r : want) {
      if (r.dtype != "F32") continue;
      s2ft_tensor v{};
      ASSERT_EQ(s2ft_checkpoint_tensor(c.c, r.name.c_str(), &v), S2FT_OK) << s2ft_last_error();
      EXPECT_EQ(v.dtype.code, S2FT_DLPACK_FLOAT);
      EXPECT_EQ(v.dtype.bits, 32);
      EXPECT_EQ(v.ndim, static_cast<int32_t>(r.shape.size()));
      EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data) % 4, 0u) << r.name;
      EXPECT_EQ(0, std::memcmp(v.data, r.bytes.data(), r.bytes.size())) << r.name;
    }
  }
}

TEST(Checkpoint, WriteKeepsTheLayoutByteForByte) {
  for (const Layout lay : {Layout{"F32", 1, false}, Layout{"BF16", 3, true}}) {
    TempFolder src, out;
    write_tiny(src.path(), lay, 11);
    write_text_file(src / "tokenizer.json", "{\"t\": 1}");
    Checkpoint c(src.path());
    ASSERT_EQ(s2ft_checkpoint_write(c.c, out.path().c_str(), nullptr, nullptr, 0, nullptr), S2FT_OK)
        << s2ft_last_error();
    EXPECT_EQ(folder(out.path()), folder(src.path()));
  }
}

TEST(Checkpoint, WriteReplacesTensorsInTheStoredDtype) {
  TempFolder src, out;
  write_tiny(src.path(), Layout{"BF16", 2, true}, 5);
  const std::map<std::string, std::string> before = folder(src.path());
  Checkpoint c(src.path());
  // An f32 replacement of a bf16 weight, with a column stride (transposed view).
  Random rng(9);
  const std::string name = "model.layers.1.mlp.down_proj.weight";  // [12, 10]
  std::vector<float> storage(10 * 12);
  for (float &x : storage) x = static_cast<float>(rng.uniform(-2, 2));
  s2ft_tensor rep{};
  const int64_t tshape[2] = {10, 12};
  ASSERT_EQ(s2ft_tensor_init(&rep, storage.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 2, tshape), S2FT_OK);
  rep.shape[0] = 12, rep.shape[1] = 10, rep.strides[0] = 1, rep.strides[1] = 12;  // the transpose
  // A 1-D norm weight in f16 replacing a bf16 one.
  const std::string norm = "model.norm.weight";
  std::vector<uint16_t> nrm(12);
  for (uint16_t &h : nrm) h = to_f16(static_cast<float>(rng.uniform(-1, 1)));
  s2ft_tensor nrep{};
  const int64_t nshape[1] = {12};
  ASSERT_EQ(s2ft_tensor_init(&nrep, nrm.data(), S2FT_F16, S2FT_DEVICE_CPU, 0, 1, nshape), S2FT_OK);
  const char *names[2] = {name.c_str(), norm.c_str()};
  const s2ft_tensor reps[2] = {rep, nrep};
  ASSERT_EQ(s2ft_checkpoint_write(c.c, out.path().c_str(), names, reps, 2, nullptr), S2FT_OK) << s2ft_last_error();
  EXPECT_EQ(folder(src.path()), before) << "the source changed";
  Checkpoint back(out.path());
  std::map<std::string, TensorRecord> got = all_tensors(back.c), want = all_tensors(c.c);
  std::string dn(12 * 10 * 2, '\0'), nn(12 * 2, '\0');
  for (int64_t i = 0; i < 12; ++i)
    for (int64_t j = 0; j < 10; ++j) {
      const uint16_t h = to_bf16(storage[static_cast<size_t>(j * 12 + i)]);
      std::memcpy(&dn[static_cast<size_t>(i * 10 + j) * 2], &h, 2);
    }
  for (size_t i = 0; i < 12; ++i) {
    const uint16_t h = to_bf16(from_f16(nrm[i]));
    std::memcpy(&nn[i * 2], &h, 2);
  }
  want[name].bytes = dn;
  want[norm].bytes = nn;
  EXPECT_EQ(got, want);
}

TEST(Checkpoint, ReshardingRoundTripsEveryTensorBitExactly) {
  for (const Layout lay : {Layout{"F32", 1, false}, Layout{"BF16", 3, true}}) {
    TempFolder src, out, again;
    write_tiny(src.path(), lay, 13);
    Checkpoint c(src.path());
    s2ft_checkpoint_write_options o;
    ASSERT_EQ(s2ft_checkpoint_write_options_init(&o, S2FT_CHECKPOINT_WRITE_OPTIONS_VERSION), S2FT_OK);
    o.max_shard_bytes = 1000;
    ASSERT_EQ(s2ft_checkpoint_write(c.c, out.path().c_str(), nullptr, nullptr, 0, &o), S2FT_OK) << s2ft_last_error();
    const nlohmann::json index = nlohmann::json::parse(file_bytes(out / "model.safetensors.index.json"));
    uint64_t total = 0;
    std::map<std::string, uint64_t> shard_bytes;
    for (const auto &t : tiny(lay.dtype, lay.misalign, 13)) total += t.bytes.size();
    EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
    const std::map<std::string, TensorRecord> want = all_tensors(c.c);
    for (const auto &kv : index["weight_map"].items()) shard_bytes[kv.value()] += want.at(kv.key()).bytes.size();
    EXPECT_GT(shard_bytes.size(), 2u);
    for (const auto &kv : shard_bytes) {
      EXPECT_TRUE(fs::exists(out / kv.first)) << kv.first;
      EXPECT_LE(kv.second, 1000u) << kv.first;  // no tensor of the tiny model exceeds 1000 bytes
    }
    Checkpoint back(out.path());
    EXPECT_EQ(all_tensors(back.c), want);
    // Back into one file: no index.
    o.max_shard_bytes = uint64_t(1) << 40;
    ASSERT_EQ(s2ft_checkpoint_write(back.c, again.path().c_str(), nullptr, nullptr, 0, &o), S2FT_OK);
    EXPECT_FALSE(fs::exists(again / "model.safetensors.index.json"));
    Checkpoint one(again.path());
    EXPECT_EQ(all_tensors(one.c), want);
  }
}

TEST(Checkpoint, WritesThroughViewsChangeTheCopyNeverTheFile) {
  TempFolder src, out;
  write_tiny(src.path(), Layout{"F32", 1, true}, 17);
  const std::map<std::string, std::string> before = folder(src.path());
  Checkpoint c(src.path());
  s2ft_tensor v{};
  ASSERT_EQ(s2ft_checkpoint_tensor(c.c, "model.layers.0.self_attn.o_proj.weight", &v), S2FT_OK);
  static_cast<float *>(v.data)[5] = 42.5f;
  ASSERT_EQ(s2ft_checkpoint_write(c.c, out.path().c_str(), nullptr, nullptr, 0, nullptr), S2FT_OK);
  EXPECT_EQ(folder(src.path()), before);
  Checkpoint back(out.path());
  ASSERT_EQ(s2ft_checkpoint_tensor(back.c, "model.layers.0.self_attn.o_proj.weight", &v), S2FT_OK);
  EXPECT_EQ(static_cast<float *>(v.data)[5], 42.5f);
}

TEST(Checkpoint, OneFileHasTensorsButNoShape) {
  TempFolder t, out;
  write_tiny(t.path(), Layout{"F32", 1, false}, 19);
  Checkpoint c(t / "model.safetensors");
  ASSERT_NE(c.c, nullptr);
  EXPECT_EQ(all_tensors(c.c), records(tiny("F32", false, 19)));
  s2ft_model_shape shape{};
  EXPECT_S2FT_ERROR(s2ft_checkpoint_shape(c.c, &shape), S2FT_ERR_STATE, "no config.json");
  const char *config = "x";
  EXPECT_EQ(s2ft_checkpoint_config(c.c, &config), S2FT_OK);
  EXPECT_EQ(config, nullptr);
  ASSERT_EQ(s2ft_checkpoint_write(c.c, out.path().c_str(), nullptr, nullptr, 0, nullptr), S2FT_OK);
  EXPECT_EQ(folder(out.path()), (std::map<std::string, std::string>{{"model.safetensors", file_bytes(t / "model.safetensors")}}));
  // A model from it needs the shape given.
  Context ctx;
  s2ft_model *m = nullptr;
  EXPECT_S2FT_ERROR(s2ft_model_from_checkpoint(ctx.ctx, c.c, nullptr, nullptr, &m), S2FT_ERR_STATE, "no config.json");
  ASSERT_EQ(s2ft_model_from_checkpoint(ctx.ctx, c.c, &kTiny, nullptr, &m), S2FT_OK) << s2ft_last_error();
  s2ft_model_destroy(m);
}

// The LLaMA family and what is not in it.
TEST(Checkpoint, ShapeFollowsTheConfigOfTheFamilyOnly) {
  for (const char *type : {"llama", "mistral", "qwen2"}) {
    TempFolder t;
    nlohmann::json cfg = cli_test::tiny_config("float32");
    cfg["model_type"] = type;
    if (std::string(type) == "qwen2") cfg.erase("head_dim");  // 12 / 4 = 3 anyway
    write_checkpoint(t.path(), cfg, tiny("F32", false), 1);
    Checkpoint c(t.path());
    s2ft_model_shape shape{};
    EXPECT_EQ(s2ft_checkpoint_shape(c.c, &shape), S2FT_OK) << type << ": " << s2ft_last_error();
    EXPECT_EQ(0, std::memcmp(&shape, &kTiny, sizeof shape)) << type;
  }
  struct Case {
    const char *what;
    void (*edit)(nlohmann::json &);
    s2ft_status status;
    const char *needle;
  };
  const Case cases[] = {
      {"gpt2", [](nlohmann::json &c) { c["model_type"] = "gpt2"; }, S2FT_ERR_UNSUPPORTED, "model_type \"gpt2\""},
      {"mixtral", [](nlohmann::json &c) { c["model_type"] = "mixtral"; }, S2FT_ERR_UNSUPPORTED, "LLaMA family"},
      {"no hidden_size", [](nlohmann::json &c) { c.erase("hidden_size"); }, S2FT_ERR_FORMAT, "no \"hidden_size\""},
      {"layers > tensors", [](nlohmann::json &c) { c["num_hidden_layers"] = 3; }, S2FT_ERR_FORMAT,
       "has no tensor model.layers.2"},
      {"wrong heads", [](nlohmann::json &c) { c["num_attention_heads"] = 2; c["head_dim"] = 6; }, S2FT_ERR_FORMAT,
       "config.json implies"},
      {"kv not divisor", [](nlohmann::json &c) { c["num_key_value_heads"] = 3; }, S2FT_ERR_FORMAT,
       "not a multiple of num_key_value_heads"},
      {"string size", [](nlohmann::json &c) { c["hidden_size"] = "12"; }, S2FT_ERR_FORMAT, "must be an integer"},
      {"negative", [](nlohmann::json &c) { c["intermediate_size"] = -10; }, S2FT_ERR_FORMAT, "positive 32-bit"},
  };
  for (const Case &k : cases) {
    SCOPED_TRACE(k.what);
    TempFolder t;
    nlohmann::json cfg = cli_test::tiny_config("float32");
    k.edit(cfg);
    write_checkpoint(t.path(), cfg, tiny("F32", false), 1);
    Checkpoint c(t.path());
    s2ft_model_shape shape{};
    EXPECT_S2FT_ERROR(s2ft_checkpoint_shape(c.c, &shape), k.status, k.needle);
  }
  // A projection of another dtype.
  TempFolder t;
  std::vector<RawTensor> ts = tiny("F32", false);
  for (RawTensor &r : ts)
    if (r.name == "model.layers.0.mlp.up_proj.weight") r.dtype = "I32";
  write_checkpoint(t.path(), cli_test::tiny_config("float32"), ts, 1);
  Checkpoint c(t.path());
  s2ft_model_shape shape{};
  EXPECT_S2FT_ERROR(s2ft_checkpoint_shape(c.c, &shape), S2FT_ERR_FORMAT, "has dtype I32");
  s2ft_tensor v{};
  EXPECT_S2FT_ERROR(s2ft_checkpoint_tensor(c.c, "model.layers.0.mlp.up_proj.weight", &v), S2FT_ERR_DTYPE,
                    "use s2ft_checkpoint_tensor_data");
}

// Shard indexes that lie, and folders that are not checkpoints.
TEST(Checkpoint, RefusesHostileFoldersWithAClearError) {
  auto sharded = [](const std::string &dir) { write_tiny(dir, Layout{"F32", 2, false}, 23); };
  auto edit_index = [](const std::string &dir, void (*f)(nlohmann::json &)) {
    nlohmann::json idx = nlohmann::json::parse(file_bytes(dir + "/model.safetensors.index.json"));
    f(idx);
    write_text_file(dir + "/model.safetensors.index.json", idx.dump());
  };
  struct Case {
    const char *what;
    void (*make)(const std::string &);
    s2ft_status status;
    const char *needle;
  };
  static auto s = sharded;
  static auto e = edit_index;
  const Case cases[] = {
      {"no config", [](const std::string &d) { s(d); fs::remove(d + "/config.json"); }, S2FT_ERR_IO, "no config.json"},
      {"no weights", [](const std::string &d) { write_text_file(d + "/config.json", "{}"); }, S2FT_ERR_IO,
       "neither model.safetensors"},
      {"config not object", [](const std::string &d) { s(d); write_text_file(d + "/config.json", "[1]"); },
       S2FT_ERR_FORMAT, "not a JSON object"},
      {"config duplicate key",
       [](const std::string &d) { s(d); write_text_file(d + "/config.json", "{\"a\": 1, \"a\": 2}"); },
       S2FT_ERR_FORMAT, "config.json"},
      {"shard ..", [](const std::string &d) {
         s(d);
         e(d, [](nlohmann::json &i) { i["weight_map"]["model.norm.weight"] = "../model-00002-of-00002.safetensors"; });
       }, S2FT_ERR_FORMAT, "not a plain file name"},
      {"absolute shard", [](const std::string &d) {
         s(d);
         e(d, [](nlohmann::json &i) { i["weight_map"]["model.norm.weight"] = "/etc/passwd"; });
       }, S2FT_ERR_FORMAT, "not a plain file name"},
      {"missing shard", [](const std::string &d) {
         s(d);
         fs::remove(d + "/model-00002-of-00002.safetensors");
       }, S2FT_ERR_FORMAT, "does not exist"},
      {"tensor not listed", [](const std::string &d) {
         s(d);
         e(d, [](nlohmann::json &i) { i["weight_map"].erase("model.norm.weight"); });
       }, S2FT_ERR_FORMAT, "does not list"},
      {"listed but absent", [](const std::string &d) {
         s(d);
         e(d, [](nlohmann::json &i) { i["weight_map"]["model.ghost.weight"] = "model-00001-of-00002.safetensors"; });
       }, S2FT_ERR_FORMAT, "which does not hold it"},
      {"wrong shard", [](const std::string &d) {
         s(d);
         e(d, [](nlohmann::json &i) { i["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors"; });
       }, S2FT_ERR_FORMAT, "but it is in"},
      {"no weight_map", [](const std::string &d) { s(d); e(d, [](nlohmann::json &i) { i.erase("weight_map"); }); },
       S2FT_ERR_FORMAT, "no \"weight_map\""},
      {"shard is a folder", [](const std::string &d) {
         s(d);
         fs::remove(d + "/model-00002-of-00002.safetensors");
         fs::create_directory(d + "/model-00002-of-00002.safetensors");
       }, S2FT_ERR_IO, "not a regular file"},
      {"truncated shard", [](const std::string &d) {
         s(d);
         fs::resize_file(d + "/model-00001-of-00002.safetensors", 100);
       }, S2FT_ERR_FORMAT, "model-00001-of-00002.safetensors"},
      {"tensor in two shards", [](const std::string &d) {
         std::vector<RawTensor> ts = tiny("F32", false);
         write_checkpoint(d, cli_test::tiny_config("float32"), ts, 2);
         // A second single-file copy of shard 2's tensors listed in shard 1 as well.
         s2ft::io::SafetensorsWriter w;
         w.add(ts[0].name, ts[0].dtype, ts[0].shape, ts[0].bytes.data(), ts[0].bytes.size());
         w.add(ts.back().name, ts.back().dtype, ts.back().shape, ts.back().bytes.data(), ts.back().bytes.size());
         w.write(d + "/model-00002-of-00002.safetensors.extra");
         fs::rename(d + "/model-00002-of-00002.safetensors.extra", d + "/model-00002-of-00002.safetensors");
       }, S2FT_ERR_FORMAT, "model.embed_tokens.weight"},
  };
  for (const Case &k : cases) {
    SCOPED_TRACE(k.what);
    TempFolder t;
    k.make(t.path());
    s2ft_checkpoint *c = reinterpret_cast<s2ft_checkpoint *>(1);
    EXPECT_S2FT_ERROR(s2ft_checkpoint_open(t.path().c_str(), &c), k.status, k.needle);
    EXPECT_EQ(c, nullptr);
  }
  EXPECT_EQ(s2ft_live_handles(), 0);
}

TEST(Checkpoint, EveryEntryPointValidatesItsArguments) {
  TempFolder t, out;
  write_tiny(t.path(), Layout{"F32", 1, false}, 29);
  s2ft_checkpoint *none = nullptr;
  EXPECT_S2FT_ERROR(s2ft_checkpoint_open(nullptr, &none), S2FT_ERR_INVALID_ARGUMENT, "path is NULL");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_open("", &none), S2FT_ERR_INVALID_ARGUMENT, "path is empty");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_open(t.path().c_str(), nullptr), S2FT_ERR_INVALID_ARGUMENT, "out is NULL");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_open((t / "absent").c_str(), &none), S2FT_ERR_IO, "does not exist");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_open("/dev/null", &none), S2FT_ERR_IO, "not a regular file");
  s2ft_checkpoint_destroy(nullptr);
  Checkpoint c(t.path());
  s2ft_model_shape shape{};
  EXPECT_S2FT_ERROR(s2ft_checkpoint_shape(nullptr, &shape), S2FT_ERR_INVALID_ARGUMENT, "ckpt is NULL");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_shape(c.c, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out is NULL");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_config(c.c, nullptr), S2FT_ERR_INVALID_ARGUMENT, "json is NULL");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_tensor_count(c.c, nullptr), S2FT_ERR_INVALID_ARGUMENT, "count is NULL");
  int64_t shp[1];
  EXPECT_S2FT_ERROR(s2ft_checkpoint_tensor_info(c.c, -1, nullptr, nullptr, nullptr, nullptr, 0, nullptr),
                    S2FT_ERR_INVALID_ARGUMENT, "out of range");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_tensor_info(c.c, 1000, nullptr, nullptr, nullptr, nullptr, 0, nullptr),
                    S2FT_ERR_INVALID_ARGUMENT, "out of range");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_tensor_info(c.c, 0, nullptr, nullptr, nullptr, shp, 1, nullptr),
                    S2FT_ERR_INVALID_ARGUMENT, "below the tensor's rank 2");
  s2ft_tensor v{};
  EXPECT_S2FT_ERROR(s2ft_checkpoint_tensor(c.c, "nope", &v), S2FT_ERR_INVALID_ARGUMENT, "no tensor \"nope\"");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_tensor(c.c, nullptr, &v), S2FT_ERR_INVALID_ARGUMENT, "name is NULL");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_tensor(c.c, "model.norm.weight", nullptr), S2FT_ERR_INVALID_ARGUMENT, "out is NULL");
  const void *d = nullptr;
  uint64_t nb = 0;
  EXPECT_S2FT_ERROR(s2ft_checkpoint_tensor_data(c.c, "nope", &d, &nb), S2FT_ERR_INVALID_ARGUMENT, "no tensor");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_tensor_data(c.c, "model.norm.weight", nullptr, &nb), S2FT_ERR_INVALID_ARGUMENT,
                    "data is NULL");

  s2ft_checkpoint_write_options o;
  EXPECT_S2FT_ERROR(s2ft_checkpoint_write_options_init(&o, 99), S2FT_ERR_INVALID_ARGUMENT, "version 99");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_write_options_init(nullptr, 1), S2FT_ERR_INVALID_ARGUMENT, "opts is NULL");
  ASSERT_EQ(s2ft_checkpoint_write_options_init(&o, S2FT_CHECKPOINT_WRITE_OPTIONS_VERSION), S2FT_OK);
  EXPECT_EQ(o.copy_other_files, 1);
  EXPECT_EQ(o.max_shard_bytes, 0u);
  const char *o_dir = out.path().c_str();
  EXPECT_S2FT_ERROR(s2ft_checkpoint_write(c.c, nullptr, nullptr, nullptr, 0, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "out_dir is NULL");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_write(c.c, "", nullptr, nullptr, 0, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "out_dir is empty");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_write(c.c, o_dir, nullptr, nullptr, -1, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "negative");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_write(c.c, o_dir, nullptr, nullptr, 1, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "names is NULL");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_write(c.c, t.path().c_str(), nullptr, nullptr, 0, nullptr),
                    S2FT_ERR_INVALID_ARGUMENT, "own folder");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_write(c.c, (t / "config.json").c_str(), nullptr, nullptr, 0, nullptr), S2FT_ERR_IO,
                    "not a folder");
  EXPECT_S2FT_ERROR(s2ft_checkpoint_write(c.c, (t / "no/such/parent").c_str(), nullptr, nullptr, 0, nullptr),
                    S2FT_ERR_IO, "cannot create");
  s2ft_checkpoint_write_options bad = o;
  bad.version = 7;
  EXPECT_S2FT_ERROR(s2ft_checkpoint_write(c.c, o_dir, nullptr, nullptr, 0, &bad), S2FT_ERR_INVALID_ARGUMENT,
                    "opts->version 7");
  bad = o;
  bad.n_exclude = 1;
  EXPECT_S2FT_ERROR(s2ft_checkpoint_write(c.c, o_dir, nullptr, nullptr, 0, &bad), S2FT_ERR_INVALID_ARGUMENT,
                    "opts->exclude is NULL");

  std::vector<float> buf(12 * 12, 0.5f);
  s2ft_tensor r{};
  ASSERT_EQ(s2ft_tensor_cpu_f32_2d(&r, buf.data(), 12, 12), S2FT_OK);
  const char *qname = "model.layers.0.self_attn.q_proj.weight";
  const char *two[2] = {qname, qname};
  const s2ft_tensor reps[2] = {r, r};
  EXPECT_S2FT_ERROR(s2ft_checkpoint_write(c.c, o_dir, two, reps, 2, nullptr), S2FT_ERR_INVALID_ARGUMENT,
                    "replaced twice");
  const char *ghost[1] = {"ghost"};
  EXPECT_S2FT_ERROR(s2ft_checkpoint_write(c.c, o_dir, ghost, &r, 1, nullptr), S2FT_ERR_INVALID_ARGUMENT, "no tensor");
  const char *kname[1] = {"model.layers.0.self_attn.k_proj.weight"};  // [6, 12]
  EXPECT_S2FT_ERROR(s2ft_checkpoint_write(c.c, o_dir, kname, &r, 1, nullptr), S2FT_ERR_SHAPE, "shape[0] is 12");
  s2ft_tensor gpu = r;
  gpu.device.type = S2FT_DEVICE_CUDA;
  EXPECT_S2FT_ERROR(s2ft_checkpoint_write(c.c, o_dir, &qname, &gpu, 1, nullptr), S2FT_ERR_DEVICE, "on the CPU");
  // Nothing was written by the failed calls.
  EXPECT_TRUE(fs::is_empty(out.path()));
}

// A model over a checkpoint's weights equals one built by hand over the
// same values, and adapters applied by path equal the fused adapter applied.
TEST(Checkpoint, ModelFromCheckpointEqualsTheModelBuiltByHand) {
  for (const Layout lay : {Layout{"F32", 2, true}, Layout{"BF16", 1, false}}) {
    SCOPED_TRACE(lay.dtype);
    TempFolder t, a_dir, out;
    write_tiny(t.path(), lay, 31);
    Context ctx;
    // Two adapters with overlapping lines on all four targets.
    AdapterOwner a[2];
    Random rng(37);
    for (int i = 0; i < 2; ++i) {
      ASSERT_EQ(s2ft_adapter_create(&kTiny, ("a" + std::to_string(i)).c_str(), 0.5 + i, &a[i].a), S2FT_OK);
      for (int32_t l = 0; l < kTiny.n_layers; ++l)
        for (int32_t target = 0; target < S2FT_NUM_TARGETS; ++target) {
          const bool cols = target == S2FT_TARGET_O || target == S2FT_TARGET_DOWN;
          const int64_t n_lines = target == S2FT_TARGET_O ? 12 : target == S2FT_TARGET_V ? 6 : 10;
          const int64_t len = 12;  // d_model: the length of every line of the tiny model
          const std::vector<int64_t> lines = shuffled_lines(rng, n_lines, 1 + (i + l + target) % 3);
          const int64_t k = static_cast<int64_t>(lines.size());
          HostMatrix delta = cols ? HostMatrix(S2FT_F32, len, k) : HostMatrix(S2FT_F32, k, len);
          delta.fill_random(rng, 0.1);
          ASSERT_EQ(s2ft_adapter_set(a[i].a, l, target, lines.data(), k, &delta.t, nullptr),
                    S2FT_OK)
              << s2ft_last_error();
        }
      ASSERT_EQ(s2ft_adapter_save(a[i].a, (a_dir / ("a" + std::to_string(i)) + ".safetensors").c_str()), S2FT_OK);
    }
    const double weights[2] = {0.75, -1.25};

    // By hand: copies of the weights, a model over them, the fused adapter.
    Checkpoint c(t.path());
    std::vector<std::vector<uint8_t>> copies;
    std::vector<s2ft_tensor> views(kTiny.n_layers * 4);
    std::vector<s2ft_layer_weights> layers(kTiny.n_layers);
    for (int32_t l = 0; l < kTiny.n_layers; ++l) {
      const char *names[4] = {"self_attn.o_proj", "self_attn.v_proj", "mlp.down_proj", "mlp.up_proj"};
      for (int target = 0; target < 4; ++target) {
        s2ft_tensor &v = views[static_cast<size_t>(l * 4 + target)];
        const std::string name = "model.layers." + std::to_string(l) + "." + names[target] + ".weight";
        ASSERT_EQ(s2ft_checkpoint_tensor(c.c, name.c_str(), &v), S2FT_OK);
        const size_t bytes = static_cast<size_t>(v.shape[0] * v.shape[1]) * (v.dtype.bits / 8);
        copies.emplace_back(static_cast<uint8_t *>(v.data), static_cast<uint8_t *>(v.data) + bytes);
        v.data = copies.back().data();
      }
      layers[static_cast<size_t>(l)] = s2ft_layer_weights{nullptr, nullptr, &views[l * 4 + 1], &views[l * 4 + 0],
                                                          nullptr, &views[l * 4 + 3], &views[l * 4 + 2]};
    }
    s2ft_model *hand = nullptr;
    ASSERT_EQ(s2ft_model_create(ctx.ctx, &kTiny, layers.data(), nullptr, &hand), S2FT_OK) << s2ft_last_error();
    AdapterOwner fused;
    const s2ft_adapter *ins[2] = {a[0].a, a[1].a};
    ASSERT_EQ(s2ft_adapter_fuse(ins, weights, 2, &fused.a), S2FT_OK);
    ASSERT_EQ(s2ft_adapter_apply(hand, fused.a, 1.0, 0), S2FT_OK) << s2ft_last_error();

    // From the checkpoint, by path.
    s2ft_model *m = nullptr;
    ASSERT_EQ(s2ft_model_from_checkpoint(ctx.ctx, c.c, nullptr, nullptr, &m), S2FT_OK) << s2ft_last_error();
    const std::string p0 = a_dir / "a0.safetensors", p1 = a_dir / "a1.safetensors";
    const char *paths[2] = {p0.c_str(), p1.c_str()};
    ASSERT_EQ(s2ft_model_apply_files(m, paths, weights, 2, 0), S2FT_OK) << s2ft_last_error();
    const s2ft_adapter *applied = nullptr;
    ASSERT_EQ(s2ft_model_applied(m, &applied, nullptr), S2FT_OK);
    ASSERT_NE(applied, nullptr);
    EXPECT_STREQ(s2ft_adapter_name(applied), "a0+a1");
    for (int32_t l = 0; l < kTiny.n_layers; ++l) {
      s2ft_layer_weights got{}, want{};
      ASSERT_EQ(s2ft_model_layer(m, l, &got), S2FT_OK);
      ASSERT_EQ(s2ft_model_layer(hand, l, &want), S2FT_OK);
      // A checkpoint's model holds all seven weights (sparse entries may
      // touch any); one made without q, k and gate gives them as NULL.
      EXPECT_NE(got.q, nullptr);
      EXPECT_NE(got.k, nullptr);
      EXPECT_NE(got.gate, nullptr);
      EXPECT_EQ(want.q, nullptr);
      const s2ft_tensor *g[4] = {got.o, got.v, got.down, got.up}, *w[4] = {want.o, want.v, want.down, want.up};
      for (int i = 0; i < 4; ++i) {
        const size_t bytes = static_cast<size_t>(g[i]->shape[0] * g[i]->shape[1]) * (g[i]->dtype.bits / 8);
        EXPECT_EQ(0, std::memcmp(g[i]->data, w[i]->data, bytes)) << "layer " << l << " weight " << i;
      }
    }
    // The merged checkpoint written out holds the merged weights; the source files are unchanged.
    const std::map<std::string, std::string> before = folder(t.path());
    ASSERT_EQ(s2ft_checkpoint_write(c.c, out.path().c_str(), nullptr, nullptr, 0, nullptr), S2FT_OK);
    EXPECT_EQ(folder(t.path()), before);
    {
      Checkpoint merged(out.path());
      s2ft_tensor v{};
      ASSERT_EQ(s2ft_checkpoint_tensor(merged.c, "model.layers.1.mlp.down_proj.weight", &v), S2FT_OK);
      s2ft_layer_weights want{};
      ASSERT_EQ(s2ft_model_layer(hand, 1, &want), S2FT_OK);
      EXPECT_EQ(0, std::memcmp(v.data, want.down->data, static_cast<size_t>(12 * 10) * (v.dtype.bits / 8)));
    }
    // Switching to one file at its default scale, then removing, restores the base exactly.
    ASSERT_EQ(s2ft_model_apply_files(m, paths + 1, nullptr, 1, 0), S2FT_OK) << s2ft_last_error();
    double scale = 0;
    ASSERT_EQ(s2ft_model_applied(m, &applied, &scale), S2FT_OK);
    EXPECT_STREQ(s2ft_adapter_name(applied), "a1");
    EXPECT_EQ(scale, 1.5);
    ASSERT_EQ(s2ft_adapter_remove(m), S2FT_OK);
    for (int32_t l = 0; l < kTiny.n_layers; ++l) {
      s2ft_layer_weights got{};
      ASSERT_EQ(s2ft_model_layer(m, l, &got), S2FT_OK);
      s2ft_tensor orig{};
      const std::string name = "model.layers." + std::to_string(l) + ".self_attn.o_proj.weight";
      Checkpoint fresh(t.path());
      ASSERT_EQ(s2ft_checkpoint_tensor(fresh.c, name.c_str(), &orig), S2FT_OK);
      EXPECT_EQ(0, std::memcmp(got.o->data, orig.data, static_cast<size_t>(12 * 12) * (orig.dtype.bits / 8)));
    }
    // Errors leave the model unchanged; a missing file names itself.
    const std::string missing = a_dir / "missing.safetensors";
    const char *bad[1] = {missing.c_str()};
    EXPECT_S2FT_ERROR(s2ft_model_apply_files(m, bad, nullptr, 1, 0), S2FT_ERR_IO, "missing.safetensors");
    EXPECT_S2FT_ERROR(s2ft_model_apply_files(m, paths, nullptr, 0, 0), S2FT_ERR_INVALID_ARGUMENT, "at least one");
    EXPECT_S2FT_ERROR(s2ft_model_apply_files(m, nullptr, nullptr, 1, 0), S2FT_ERR_INVALID_ARGUMENT, "paths is NULL");
    EXPECT_S2FT_ERROR(s2ft_model_apply_files(m, paths, nullptr, 1, 8), S2FT_ERR_INVALID_ARGUMENT, "unknown bits");
    ASSERT_EQ(s2ft_model_applied(m, &applied, nullptr), S2FT_OK);
    EXPECT_EQ(applied, nullptr);
    s2ft_layer_weights lw{};
    EXPECT_S2FT_ERROR(s2ft_model_layer(m, 2, &lw), S2FT_ERR_INVALID_ARGUMENT, "out of range");
    EXPECT_S2FT_ERROR(s2ft_model_layer(m, 0, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out is NULL");
    s2ft_model *none = nullptr;
    EXPECT_S2FT_ERROR(s2ft_model_from_checkpoint(ctx.ctx, nullptr, nullptr, nullptr, &none), S2FT_ERR_INVALID_ARGUMENT,
                      "ckpt is NULL");
    s2ft_model_shape wrong = kTiny;
    wrong.d_ff = 11;
    EXPECT_S2FT_ERROR(s2ft_model_from_checkpoint(ctx.ctx, c.c, &wrong, nullptr, &none), S2FT_ERR_SHAPE, "");
    s2ft_model_destroy(m);
    s2ft_model_destroy(hand);
  }
  EXPECT_EQ(s2ft_live_handles(), 0);
}

}  // namespace
