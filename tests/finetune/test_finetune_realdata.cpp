// The example's model on the real stories260K checkpoint: greedy decoding
// from BOS reproduces the reference continuation (../shared/data/README.md)
// from the Hugging Face folder, and the llama2.c file gives the same tokens.
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

}  // namespace
