#include "text_data.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace ft {

namespace {

// Splits on blank lines, dropping empty documents and trailing newlines.
std::vector<std::string> documents_of(const std::string &text) {
  std::vector<std::string> docs;
  std::istringstream in(text);
  std::string line, doc;
  auto flush = [&] {
    while (!doc.empty() && (doc.back() == '\n' || doc.back() == '\r')) doc.pop_back();
    if (!doc.empty()) docs.push_back(doc);
    doc.clear();
  };
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) {
      flush();
      continue;
    }
    doc += line + "\n";
  }
  flush();
  return docs;
}

void window(const std::vector<int32_t> &stream, int64_t start, int64_t seq, Batch &b) {
  for (int64_t i = 0; i < seq; ++i) {
    b.tokens.push_back(stream[static_cast<size_t>(start + i)]);
    b.targets.push_back(stream[static_cast<size_t>(start + i + 1)]);
  }
}

}  // namespace

TextData::TextData(const std::string &path, const Tokenizer &tok, double holdout) {
  if (!(holdout >= 0.0 && holdout <= 1.0)) throw std::invalid_argument("TextData: holdout must be in [0, 1]");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot open the data file");
  std::ostringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  if (text.size() > (64u << 20)) throw std::runtime_error(path + ": larger than 64 MiB");
  const std::vector<std::string> docs = documents_of(text);
  documents_ = static_cast<int64_t>(docs.size());
  if (documents_ == 0) throw std::runtime_error(path + ": no text");

  int64_t held = 0;
  if (holdout >= 1.0) {
    held = documents_;
  } else if (holdout > 0.0) {
    if (documents_ < 2)
      throw std::invalid_argument(path + ": the held-out split needs at least two documents separated by blank "
                                         "lines (this file has one)");
    held = std::min(documents_ - 1, std::max<int64_t>(1, std::llround(holdout * static_cast<double>(documents_))));
  }
  // Held-out document i of `held` is the middle one of the i-th of `held`
  // equal stretches of the file, so that a file ordered by topic or time
  // is sampled across its length rather than only at its end.
  std::vector<bool> is_held(docs.size(), false);
  for (int64_t i = 0; i < held; ++i)
    is_held[static_cast<size_t>((2 * i + 1) * documents_ / (2 * held))] = true;
  for (size_t d = 0; d < docs.size(); ++d) {
    const std::vector<int32_t> t = tok.encode(docs[d], true, false);
    std::vector<int32_t> &to = is_held[d] ? eval_ : train_;
    to.insert(to.end(), t.begin(), t.end());
  }
  eval_documents_ = held;
}

Batch TextData::sample(int64_t batch, int64_t seq, Rng &rng) const {
  if (seq < 1 || batch < 1) throw std::invalid_argument("TextData::sample: batch and seq must be >= 1");
  if (train_tokens() < seq + 1)
    throw std::runtime_error("the training text has " + std::to_string(train_tokens()) + " tokens, fewer than a window of " +
                             std::to_string(seq + 1));
  Batch b;
  b.batch = batch;
  b.seq = seq;
  for (int64_t r = 0; r < batch; ++r) window(train_, rng.below(train_tokens() - seq), seq, b);
  return b;
}

std::vector<Batch> TextData::eval_batches(int64_t batch, int64_t seq, int64_t max_batches) const {
  std::vector<Batch> out;
  int64_t start = 0;
  while (static_cast<int64_t>(out.size()) < max_batches && start + seq + 1 <= eval_tokens()) {
    Batch b;
    b.seq = seq;
    for (; b.batch < batch && start + seq + 1 <= eval_tokens(); ++b.batch, start += seq) window(eval_, start, seq, b);
    out.push_back(std::move(b));
  }
  return out;
}

}  // namespace ft
