// A text file as training data for a language model: documents separated by
// blank lines, each tokenized as BOS + text. Whole documents are held out
// for evaluation, so the held-out loss measures text the model has not
// trained on in any window (a split of one token stream would put the start
// of a held-out story in the training part). The training documents are
// concatenated into one stream from which random windows are drawn; the
// held-out documents into another that is read in order.
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
  // Reads and tokenizes `path` (UTF-8, at most 64 MiB). `holdout` is the
  // fraction of the documents kept for evaluation, spread evenly over the
  // file (every k-th document): 0 keeps none, a fraction in (0, 1) at least
  // one and at least one for training (std::invalid_argument when the file
  // has a single document), 1 all of them (a text only evaluated on).
  TextData(const std::string &path, const Tokenizer &tok, double holdout = 0.1);

  int64_t documents() const { return documents_; }
  int64_t eval_documents() const { return eval_documents_; }
  int64_t train_tokens() const { return static_cast<int64_t>(train_.size()); }
  int64_t eval_tokens() const { return static_cast<int64_t>(eval_.size()); }

  // `batch` random windows of `seq` tokens from the training documents,
  // each position's target the next token.
  Batch sample(int64_t batch, int64_t seq, Rng &rng) const;
  // Consecutive windows covering the held-out documents (at most max_batches).
  std::vector<Batch> eval_batches(int64_t batch, int64_t seq, int64_t max_batches) const;

 private:
  std::vector<int32_t> train_, eval_;
  int64_t documents_ = 0, eval_documents_ = 0;
};

}  // namespace ft
