// The real stories260K checkpoint through the public checkpoint API: its
// shape, a model over its weights, and a resharded copy that reads back bit
// for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>

#include <unistd.h>

#include "s2ft/s2ft.h"
#include "support/realdata.hpp"

namespace fs = std::filesystem;

namespace {

struct Checkpoint {
  s2ft_checkpoint *c = nullptr;
  explicit Checkpoint(const std::string &path) {
    EXPECT_EQ(s2ft_checkpoint_open(path.c_str(), &c), S2FT_OK) << s2ft_last_error();
  }
  ~Checkpoint() { s2ft_checkpoint_destroy(c); }
};

// name -> dtype and bytes of every tensor.
std::map<std::string, std::string> contents(const s2ft_checkpoint *c) {
  std::map<std::string, std::string> out;
  int64_t n = 0;
  EXPECT_EQ(s2ft_checkpoint_tensor_count(c, &n), S2FT_OK);
  for (int64_t i = 0; i < n; ++i) {
    const char *name = nullptr, *dtype = nullptr;
    EXPECT_EQ(s2ft_checkpoint_tensor_info(c, i, &name, &dtype, nullptr, nullptr, 0, nullptr), S2FT_OK);
    const void *data = nullptr;
    uint64_t size = 0;
    EXPECT_EQ(s2ft_checkpoint_tensor_data(c, name, &data, &size), S2FT_OK);
    out[name] = std::string(dtype) + ":" + std::string(static_cast<const char *>(data), static_cast<size_t>(size));
  }
  return out;
}

TEST(CheckpointRealData, Stories260K) {
  const std::string dir = s2ft_test::model_dir();
  if (!fs::exists(dir + "/config.json")) GTEST_SKIP() << "no real data at " << dir;
  Checkpoint c(dir);
  ASSERT_NE(c.c, nullptr);
  s2ft_model_shape shape{};
  ASSERT_EQ(s2ft_checkpoint_shape(c.c, &shape), S2FT_OK) << s2ft_last_error();
  const s2ft_model_shape want{5, 64, 8, 4, 8, 172};
  EXPECT_EQ(0, std::memcmp(&shape, &want, sizeof shape));
  int64_t n = 0;
  ASSERT_EQ(s2ft_checkpoint_tensor_count(c.c, &n), S2FT_OK);
  EXPECT_EQ(n, 5 * 9 + 2);  // 7 projections and 2 norms per layer, embeddings and the final norm (tied lm_head)

  s2ft_context *ctx = nullptr;
  ASSERT_EQ(s2ft_context_create(nullptr, &ctx), S2FT_OK);
  s2ft_model *m = nullptr;
  ASSERT_EQ(s2ft_model_from_checkpoint(ctx, c.c, nullptr, nullptr, &m), S2FT_OK) << s2ft_last_error();
  s2ft_layer_weights w{};
  ASSERT_EQ(s2ft_model_layer(m, 4, &w), S2FT_OK);
  s2ft_tensor down{};
  ASSERT_EQ(s2ft_checkpoint_tensor(c.c, "model.layers.4.mlp.down_proj.weight", &down), S2FT_OK);
  EXPECT_EQ(w.down->data, down.data);  // the model works in the checkpoint's memory
  s2ft_model_destroy(m);
  s2ft_context_destroy(ctx);

  const std::string out = (fs::temp_directory_path() / ("s2ft-real-ckpt-" + std::to_string(getpid()))).string();
  fs::remove_all(out);
  s2ft_checkpoint_write_options o;
  ASSERT_EQ(s2ft_checkpoint_write_options_init(&o, S2FT_CHECKPOINT_WRITE_OPTIONS_VERSION), S2FT_OK);
  o.max_shard_bytes = 256 << 10;
  ASSERT_EQ(s2ft_checkpoint_write(c.c, out.c_str(), nullptr, nullptr, 0, &o), S2FT_OK) << s2ft_last_error();
  EXPECT_TRUE(fs::exists(out + "/model.safetensors.index.json"));
  {
    Checkpoint back(out);
    EXPECT_EQ(contents(back.c), contents(c.c));
    s2ft_model_shape again{};
    ASSERT_EQ(s2ft_checkpoint_shape(back.c, &again), S2FT_OK);
    EXPECT_EQ(0, std::memcmp(&again, &want, sizeof again));
  }
  fs::remove_all(out);
}

}  // namespace
