// The example's model on the real stories260K checkpoint: greedy decoding
// from BOS reproduces the reference continuation (../shared/data/README.md)
// from the Hugging Face folder, and the llama2.c file gives the same tokens;
// temperature-1 sampling (the --model comparison's base-samples set) is
// seeded and gives the model's own kind of text.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "generate.hpp"
#include "llama_model.hpp"
#include "support/realdata.hpp"
#include "tokenizer.hpp"

namespace {

const char kReference[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";

std::vector<int32_t> greedy_from_bos(ft::Checkpoint &ck, int64_t n) {
  ft::LlamaModel<float> model(ck.config, ck.weights);
  return ft::generate_greedy(model, {1}, n);
}

class FinetuneRealdata : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = s2ft_test::data_dir();
    if (!std::filesystem::exists(dir_ + "/stories260K-hf/config.json") ||
        !std::filesystem::exists(dir_ + "/stories260K/stories260K.bin"))
      GTEST_SKIP() << "no stories260K data in " << dir_ << " (set S2FT_TEST_DATA)";
  }
  std::string dir_;
};

TEST_F(FinetuneRealdata, GreedyFromBosMatchesTheReference) {
  ft::Checkpoint hf = ft::load_hf_checkpoint(dir_ + "/stories260K-hf");
  const ft::Tokenizer tok = ft::Tokenizer::load(dir_ + "/stories260K-hf/tok512.bin", hf.config.vocab);
  const std::vector<int32_t> tokens = greedy_from_bos(hf, 40);
  const std::string text = tok.decode(tokens);
  EXPECT_EQ(text.rfind(kReference, 0), 0u) << "generated: " << text;
  // The reference sentence as tokens is a prefix of what was generated.
  const std::vector<int32_t> ref = tok.encode(kReference, true, false);
  ASSERT_LE(ref.size(), tokens.size());
  EXPECT_EQ(std::vector<int32_t>(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(ref.size())), ref);
}

TEST_F(FinetuneRealdata, Llama2cFileGivesTheSameTokens) {
  ft::Checkpoint hf = ft::load_hf_checkpoint(dir_ + "/stories260K-hf");
  ft::Checkpoint l2c = ft::load_llama2c_checkpoint(dir_ + "/stories260K/stories260K.bin");
  EXPECT_EQ(greedy_from_bos(hf, 40), greedy_from_bos(l2c, 40));
}

TEST_F(FinetuneRealdata, SamplingFromBosIsSeededAndLikeTheModel) {
  ft::Checkpoint hf = ft::load_hf_checkpoint(dir_ + "/stories260K-hf");
  ft::LlamaModel<float> model(hf.config, hf.weights);
  auto sample = [&](uint64_t seed) {
    ft::Rng rng(seed);
    return ft::generate_sampled(model, {1}, 64, rng);
  };
  const std::vector<int32_t> a = sample(7);
  ASSERT_EQ(a.size(), 65u);
  for (int32_t t : a) {
    EXPECT_GE(t, 0);
    EXPECT_LT(t, hf.config.vocab);
  }
  EXPECT_EQ(sample(7), a);
  EXPECT_NE(sample(8), a);
  // The model finds its own samples likely: their loss is far below that
  // of uniform guessing (ln 512 = 6.2) and near its loss on stories.
  std::vector<int32_t> targets(a.begin() + 1, a.end());
  const double loss = model.forward(a.data(), 1, 64, targets.data(), false);
  EXPECT_LT(loss, 2.5) << "sampled: " << ft::Tokenizer::load(dir_ + "/stories260K-hf/tok512.bin", hf.config.vocab).decode(a);
}

}  // namespace
