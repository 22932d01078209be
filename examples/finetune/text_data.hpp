// A text file as training data for a language model: documents separated by
// blank lines, each tokenized as BOS + text, concatenated into one stream
// from which random windows are drawn.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "batch.hpp"
#include "rng.hpp"
#include "tokenizer.hpp"

namespace ft {

class TextData {
 public:
  // Reads and tokenizes `path` (UTF-8, at most 64 MiB). The last
  // `holdout` fraction of the token stream is kept for evaluation.
  TextData(const std::string &path, const Tokenizer &tok, double holdout = 0.1);

  int64_t documents() const { return documents_; }
  int64_t train_tokens() const { return static_cast<int64_t>(train_.size()); }
  int64_t eval_tokens() const { return static_cast<int64_t>(eval_.size()); }

  // `batch` random windows of `seq` tokens from the training part, each
  // position's target the next token.
  Batch sample(int64_t batch, int64_t seq, Rng &rng) const;
  // Consecutive windows covering the held-out part (at most max_batches).
  std::vector<Batch> eval_batches(int64_t batch, int64_t seq, int64_t max_batches) const;

 private:
  std::vector<int32_t> train_, eval_;
  int64_t documents_ = 0;
};

}  // namespace ft
