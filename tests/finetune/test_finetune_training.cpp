// The example's training pieces: the learning-rate schedule and loop, the
// three methods' bookkeeping and preconditions, S2FT's invariants (the
// permutation keeps the model's function; the frozen-weight check catches a
// change), the synthetic tasks, text data and generation, with their error
// paths.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fine_tuning.hpp"
#include "generate.hpp"
#include "methods.hpp"
#include "small_model.hpp"
#include "s2ft_method.hpp"
#include "s2ft_verify.hpp"
#include "support/test_util.hpp"
#include "synthetic_tasks.hpp"
#include "text_data.hpp"
#include "trainer.hpp"

namespace {

using ft::LlamaConfig;
using ft::LlamaModel;
using ft::LlamaWeights;
using ft::Proj;

LlamaConfig small_config() { return ft_test::small_gqa_config(); }

using ft_test::Context;
using ft_test::random_batch;

TEST(FinetuneTraining, LearningRateWarmsUpThenDecays) {
  ft::TrainSettings s;
  s.steps = 100;
  s.lr = 1.0;
  s.warmup = 0.1;
  s.final_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(ft::learning_rate(s, 0), 0.1);
  EXPECT_DOUBLE_EQ(ft::learning_rate(s, 9), 1.0);
  EXPECT_NEAR(ft::learning_rate(s, 55), 0.55, 1e-12);  // halfway down the cosine
  EXPECT_NEAR(ft::learning_rate(s, 100), 0.1, 1e-12);
  for (int64_t i = 10; i < 100; ++i) EXPECT_LE(ft::learning_rate(s, i + 1), ft::learning_rate(s, i));
}

TEST(FinetuneTraining, TrainRejectsBadSettingsAndStopsWhenAsked) {
  const LlamaConfig c = small_config();
  LlamaWeights<float> w = ft::random_weights<float>(c, 1);
  LlamaModel<float> model(c, w);
  Context ctx;
  ft::FullFineTuning full(ctx.ctx, ft::OptimizerSettings{});
  full.attach(model);
  const auto next = [&](int64_t step) { return random_batch(c, 2, 5, static_cast<uint64_t>(step)); };
  ft::TrainSettings s;
  s.steps = 0;
  EXPECT_THROW(ft::train(model, full, next, s), std::invalid_argument);
  s.steps = 10;
  s.lr = 0.0;
  EXPECT_THROW(ft::train(model, full, next, s), std::invalid_argument);
  s.lr = 1e-3;
  const ft::TrainStats st = ft::train(model, full, next, s, [](int64_t step, double, double) { return step < 2; });
  EXPECT_EQ(st.losses.size(), 3u);
  EXPECT_GT(st.activation_bytes, 0);
}

TEST(FinetuneTraining, MethodsCountWhatTheyTrain) {
  const LlamaConfig c = small_config();
  Context ctx;
  {
    LlamaWeights<float> w = ft::random_weights<float>(c, 2);
    LlamaModel<float> model(c, w);
    ft::FullFineTuning full(ctx.ctx, ft::OptimizerSettings{});
    full.attach(model);
    EXPECT_EQ(full.trainable_parameters(), ft::parameter_count(w));
    EXPECT_EQ(full.gradient_bytes(), 4 * ft::parameter_count(w));
    EXPECT_EQ(full.optimizer_bytes(), 8 * ft::parameter_count(w));
  }
  {
    LlamaWeights<float> w = ft::random_weights<float>(c, 2);
    LlamaModel<float> model(c, w);
    ft::LoraFineTuning lora(ctx.ctx, ft::OptimizerSettings{}, 3, 6.0, 7);
    lora.attach(model);
    EXPECT_EQ(lora.trainable_parameters(), 3 * ft::lora_parameters_per_rank(c, ft::LoraFineTuning::kPaperTargets));
  }
  EXPECT_THROW(ft::LoraFineTuning(ctx.ctx, ft::OptimizerSettings{}, 0, 1.0, 1), std::invalid_argument);
  EXPECT_THROW(ft::LoraFineTuning(ctx.ctx, ft::OptimizerSettings{}, 2, 0.0, 1), std::invalid_argument);
}

TEST(FinetuneTraining, S2ftPermutationKeepsTheFunctionAndVerifies) {
  const LlamaConfig c = small_config();
  Context ctx;
  LlamaWeights<float> base = ft::random_weights<float>(c, 3);
  LlamaWeights<float> w = base;
  LlamaModel<float> model(c, w);
  const ft::Batch b = random_batch(c, 2, 6, 4);
  model.forward(b.tokens.data(), b.batch, b.seq, nullptr, false);
  const std::vector<float> before = model.logits();

  ft::S2ftSettings ss;
  ss.targets |= S2FT_TARGET_BIT(S2FT_TARGET_UP);
  ss.count[S2FT_TARGET_DOWN] = 3;
  ss.count[S2FT_TARGET_UP] = 2;
  ft::S2ftFineTuning s2ft(ctx.ctx, ft::OptimizerSettings{}, ss, {b});
  EXPECT_THROW(s2ft.permute(w, S2FT_PERMUTE_FORWARD), std::logic_error);  // before attach
  s2ft.attach(model);
  // One KV group (2 heads x 4 columns) of O, 3 Down columns, 2 Up rows, per layer.
  EXPECT_EQ(s2ft.trainable_parameters(), c.n_layers * (8 * c.d_model + 3 * c.d_model + 2 * c.d_model));
  model.forward(b.tokens.data(), b.batch, b.seq, nullptr, false);
  EXPECT_LT(s2ft_test::rel_error(std::vector<double>(model.logits().begin(), model.logits().end()),
                                 std::vector<double>(before.begin(), before.end())),
            1e-5);

  // Back in base order nothing changed yet; then one frozen and one trained element.
  s2ft.permute(w, S2FT_PERMUTE_INVERSE);
  ft::FrozenCheck fc = ft::check_frozen(c, s2ft.selection(), base, w);
  EXPECT_EQ(fc.changed_frozen, 0);
  EXPECT_EQ(fc.changed_trained, 0);
  EXPECT_EQ(fc.trained_elements, s2ft.trainable_parameters());
  w.layers[1].k[5] += 1.0f;
  int64_t lines[3] = {}, count = 0;
  ASSERT_EQ(s2ft_selection_indices(s2ft.selection(), 0, S2FT_TARGET_DOWN, S2FT_INDEX_LINES, lines, 3, &count), S2FT_OK);
  w.layers[0].down[static_cast<size_t>(lines[0])] += 1.0f;  // row 0, a trained column
  fc = ft::check_frozen(c, s2ft.selection(), base, w);
  EXPECT_EQ(fc.changed_frozen, 1);
  EXPECT_EQ(fc.first_changed, "layer 1 k_proj[0, 5]");
  EXPECT_EQ(fc.changed_trained, 1);

  ft::S2ftFineTuning needs_data(ctx.ctx, ft::OptimizerSettings{}, ft::S2ftSettings{}, {});
  LlamaWeights<float> w2 = base;
  LlamaModel<float> m2(c, w2);
  EXPECT_THROW(needs_data.attach(m2), std::invalid_argument);  // activation strategy, no calibration
  LlamaWeights<float> short_w = base;
  short_w.layers[0].o.pop_back();
  EXPECT_THROW(ft::layer_tensors(c, short_w), std::invalid_argument);
}

TEST(FinetuneTraining, SyntheticTasksFollowTheirDefinition) {
  EXPECT_THROW(ft::SyntheticTasks(3, 4, 1), std::invalid_argument);
  EXPECT_THROW(ft::SyntheticTasks(8, 0, 1), std::invalid_argument);
  const ft::SyntheticTasks tasks(10, 4, 5);
  EXPECT_EQ(tasks.vocab(), 13);
  EXPECT_EQ(tasks.seq_len(), 10);
  EXPECT_THROW(tasks.answer(ft::Task::A, 10), std::out_of_range);
  ft::Rng rng(1);
  EXPECT_THROW(tasks.sample(ft::Task::A, 0, rng), std::invalid_argument);
  for (ft::Task t : {ft::Task::A, ft::Task::B, ft::Task::C}) {
    const ft::Batch b = tasks.sample(t, 20, rng);
    for (int64_t r = 0; r < b.batch; ++r) {
      const int32_t *row = b.tokens.data() + r * b.seq, *tgt = b.targets.data() + r * b.seq;
      EXPECT_EQ(row[0], t == ft::Task::A ? ft::SyntheticTasks::kMarker1 : ft::SyntheticTasks::kMarker2);
      EXPECT_EQ(row[5], ft::SyntheticTasks::kSep);
      for (int i = 0; i < 4; ++i) {
        const int64_t x = row[1 + i] - ft::SyntheticTasks::kFirstSymbol;
        if (t == ft::Task::A) {
          EXPECT_LT(x, 5);  // first half
        }
        if (t == ft::Task::B) {
          EXPECT_GE(x, 5);  // second half
        }
        EXPECT_EQ(row[6 + i], ft::SyntheticTasks::kFirstSymbol + tasks.answer(t, x));
        EXPECT_EQ(tgt[5 + i], row[6 + i]);  // position p predicts p + 1
      }
      for (int p : {0, 1, 2, 3, 4, 9}) EXPECT_EQ(tgt[p], -1);
    }
  }
}

// A tokenizer of 3 control tokens and the 256 byte tokens: any text encodes
// to its bytes (+3), after the dummy-prefix space.
ft::Tokenizer byte_tokenizer() {
  std::vector<uint8_t> img;
  auto put = [&](const void *p, size_t n) { img.insert(img.end(), static_cast<const uint8_t *>(p), static_cast<const uint8_t *>(p) + n); };
  const int32_t max_len = 6;
  put(&max_len, 4);
  auto token = [&](const std::string &text) {
    const float score = 0.0f;
    const int32_t len = static_cast<int32_t>(text.size());
    put(&score, 4);
    put(&len, 4);
    put(text.data(), text.size());
  };
  token("<unk>");
  token("<s>");
  token("</s>");
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    token(name);
  }
  return ft::Tokenizer::parse(img, 259, "bytes.bin");
}

struct TempFile {
  explicit TempFile(const std::string &text)
      : path((std::filesystem::temp_directory_path() / ("s2ft-ft-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" + std::to_string(reinterpret_cast<uintptr_t>(this)) + ".txt")).string()) {
    std::ofstream(path) << text;
  }
  ~TempFile() { std::filesystem::remove(path); }
  std::string path;
};

TEST(FinetuneTraining, TextDataWindowsAndErrors) {
  const ft::Tokenizer tok = byte_tokenizer();
  EXPECT_THROW(ft::TextData("/nonexistent/s2ft.txt", tok), std::runtime_error);
  {
    TempFile blank("\n  \n\n");
    EXPECT_THROW(ft::TextData(blank.path, tok), std::runtime_error);
  }
  TempFile two("abc\ndef\n\n\nxyz\n");
  const ft::TextData data(two.path, tok, 0.0);
  EXPECT_EQ(data.documents(), 2);
  EXPECT_EQ(data.eval_documents(), 0);
  EXPECT_EQ(data.train_tokens(), 1 + 8 + 1 + 4);  // BOS, " abc\ndef", BOS, " xyz"
  EXPECT_EQ(data.eval_tokens(), 0);
  ft::Rng rng(3);
  const ft::Batch b = data.sample(4, 5, rng);
  ASSERT_EQ(b.tokens.size(), 20u);
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t i = 0; i + 1 < 5; ++i) EXPECT_EQ(b.targets[r * 5 + i], b.tokens[r * 5 + i + 1]);
  EXPECT_THROW(data.sample(1, 14, rng), std::runtime_error);  // longer than the text
  EXPECT_THROW(data.sample(0, 4, rng), std::invalid_argument);
  EXPECT_THROW(ft::TextData(two.path, tok, 1.5), std::invalid_argument);
  EXPECT_THROW(ft::TextData(two.path, tok, -0.1), std::invalid_argument);

  // The default split of two documents holds out the second, whole.
  const ft::TextData split(two.path, tok);
  EXPECT_EQ(split.eval_documents(), 1);
  EXPECT_EQ(split.train_tokens(), 1 + 8);
  EXPECT_EQ(split.eval_tokens(), 1 + 4);
  // holdout 1: everything is evaluation text (a text only scored on).
  const ft::TextData all(two.path, tok, 1.0);
  EXPECT_EQ(all.eval_documents(), 2);
  EXPECT_EQ(all.train_tokens(), 0);
  EXPECT_EQ(all.eval_tokens(), 14);
  EXPECT_THROW(all.sample(1, 4, rng), std::runtime_error);
}

TEST(FinetuneTraining, TextDataHoldsOutWholeDocuments) {
  const ft::Tokenizer tok = byte_tokenizer();
  // Ten documents, each one letter repeated, so every token names its document.
  std::string text;
  for (char c = 'a'; c < 'a' + 10; ++c) text += std::string(6, c) + "\n\n";
  TempFile ten(text);
  const ft::TextData data(ten.path, tok, 0.2);
  EXPECT_EQ(data.documents(), 10);
  ASSERT_EQ(data.eval_documents(), 2);
  const int32_t bos = 1, space = ' ' + 3;
  auto letter = [](char c) { return static_cast<int32_t>(static_cast<unsigned char>(c)) + 3; };  // byte b is token b + 3
  // Spread over the file: the middles of its two halves, documents 2 and 7.
  std::vector<int32_t> want;
  for (char c : {'c', 'h'}) {
    want.push_back(bos);
    want.push_back(space);
    for (int i = 0; i < 6; ++i) want.push_back(letter(c));
  }
  EXPECT_EQ(data.eval_tokens(), static_cast<int64_t>(want.size()));
  EXPECT_EQ(data.train_tokens(), 8 * 8);
  // One window over the whole held-out part reads back both documents, whole and in order.
  const std::vector<ft::Batch> eval = data.eval_batches(1, data.eval_tokens() - 1, 4);
  ASSERT_EQ(eval.size(), 1u);
  std::vector<int32_t> got = eval[0].tokens;
  got.push_back(eval[0].targets.back());
  EXPECT_EQ(got, want);
  // No training window, input or target, holds a token of a held-out document.
  ft::Rng rng(11);
  for (int k = 0; k < 50; ++k) {
    const ft::Batch b = data.sample(8, 12, rng);
    for (size_t i = 0; i < b.tokens.size(); ++i)
      for (int32_t t : {b.tokens[i], b.targets[i]}) {
        ASSERT_NE(t, letter('c'));
        ASSERT_NE(t, letter('h'));
      }
  }

  // One document cannot be split: the error says why.
  TempFile one("just one story,\nover two lines\n");
  try {
    ft::TextData d(one.path, tok);
    FAIL() << "a one-document file was split";
  } catch (const std::invalid_argument &e) {
    EXPECT_NE(std::string(e.what()).find("at least two documents separated by blank lines"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(ft::TextData(one.path, tok, 0.0).eval_documents(), 0);  // no split asked for
  EXPECT_EQ(ft::TextData(one.path, tok, 1.0).eval_documents(), 1);  // all of it scored
}

TEST(FinetuneTraining, GreedyGenerationAndErrors) {
  const LlamaConfig c = small_config();
  LlamaWeights<float> w = ft::random_weights<float>(c, 9);
  LlamaModel<float> model(c, w);
  EXPECT_THROW(ft::generate_greedy(model, {}, 3), std::invalid_argument);
  const std::vector<int32_t> out = ft::generate_greedy(model, {1, 4}, 5);
  ASSERT_EQ(out.size(), 7u);
  // Each new token is the argmax after its prefix.
  model.forward(out.data(), 1, 6, nullptr, false);
  const float *last = model.logits().data() + 5 * c.vocab;
  EXPECT_EQ(out[6], std::max_element(last, last + c.vocab) - last);
  const std::vector<int32_t> stopped = ft::generate_greedy(model, {1, 4}, 5, out[2]);
  EXPECT_EQ(stopped.size(), 3u);
}

TEST(FinetuneTraining, SampledGenerationIsSeededAndValid) {
  const LlamaConfig c = small_config();
  LlamaWeights<float> w = ft::random_weights<float>(c, 9);
  LlamaModel<float> model(c, w);
  auto sample = [&](uint64_t seed, double temperature) {
    ft::Rng rng(seed);
    return ft::generate_sampled(model, {1}, 40, rng, temperature);
  };
  const std::vector<int32_t> a = sample(5, 1.0);
  ASSERT_EQ(a.size(), 41u);
  EXPECT_EQ(a.front(), 1);
  for (int32_t t : a) {
    EXPECT_GE(t, 0);
    EXPECT_LT(t, c.vocab);
  }
  EXPECT_EQ(sample(5, 1.0), a);  // the same seed, the same text
  bool differs = false;
  for (uint64_t seed = 6; seed < 10 && !differs; ++seed) differs = sample(seed, 1.0) != a;
  EXPECT_TRUE(differs) << "the seed does not reach the draws";
  // Near temperature 0 every draw is the most likely token: greedy decoding.
  EXPECT_EQ(sample(5, 1e-4), ft::generate_greedy(model, {1}, 40));
  ft::Rng rng(1);
  EXPECT_THROW(ft::generate_sampled(model, {}, 3, rng), std::invalid_argument);
  EXPECT_THROW(ft::generate_sampled(model, {1}, 3, rng, 0.0), std::invalid_argument);
  // With a stop token: the same draws, cut after the first one that is it.
  const int32_t stop = a[3];
  const size_t first = static_cast<size_t>(std::find(a.begin() + 1, a.end(), stop) - a.begin());
  ft::Rng again(5);
  EXPECT_EQ(ft::generate_sampled(model, {1}, 40, again, 1.0, stop),
            std::vector<int32_t>(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(first + 1)));
}

}  // namespace
