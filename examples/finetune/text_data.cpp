#include "text_data.hpp"

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
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot open the data file");
  std::ostringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  if (text.size() > (64u << 20)) throw std::runtime_error(path + ": larger than 64 MiB");
  std::vector<int32_t> stream;
  for (const std::string &d : documents_of(text)) {
    const std::vector<int32_t> t = tok.encode(d, true, false);
    stream.insert(stream.end(), t.begin(), t.end());
    ++documents_;
  }
  if (documents_ == 0) throw std::runtime_error(path + ": no text");
  if (!(holdout >= 0.0 && holdout < 1.0)) throw std::invalid_argument("TextData: holdout must be in [0, 1)");
  const size_t split = stream.size() - static_cast<size_t>(holdout * static_cast<double>(stream.size()));
  train_.assign(stream.begin(), stream.begin() + static_cast<std::ptrdiff_t>(split));
  eval_.assign(stream.begin() + static_cast<std::ptrdiff_t>(split), stream.end());
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
