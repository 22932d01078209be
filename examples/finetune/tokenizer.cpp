#include "tokenizer.hpp"

#include <cstring>
#include <stdexcept>

#include "file_io.hpp"

namespace ft {

namespace {

const uint64_t kMaxTokenizerBytes = uint64_t{1} << 30;
const int64_t kMaxVocab = int64_t{1} << 24;  // as LlamaConfig::check()

[[noreturn]] void fail(const std::string &what, const std::string &problem) {
  throw std::runtime_error(what + ": " + problem);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte of a byte-fallback piece "<0xXX>", or -1.
int byte_piece_value(const std::string &p) {
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return -1;
  const int hi = hex_digit(p[3]), lo = hex_digit(p[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// Reads little-endian values from a byte range, failing on truncation.
class Cursor {
 public:
  Cursor(const std::vector<uint8_t> &bytes, const std::string &what) : bytes_(bytes), what_(what) {}
  uint32_t u32(const std::string &field) {
    need(4, field);
    uint32_t v = uint32_t{bytes_[pos_]} | uint32_t{bytes_[pos_ + 1]} << 8 | uint32_t{bytes_[pos_ + 2]} << 16 |
                 uint32_t{bytes_[pos_ + 3]} << 24;
    pos_ += 4;
    return v;
  }
  int32_t i32(const std::string &field) {
    const uint32_t u = u32(field);
    int32_t v;
    std::memcpy(&v, &u, sizeof v);
    return v;
  }
  float f32(const std::string &field) {
    const uint32_t u = u32(field);
    float v;
    std::memcpy(&v, &u, sizeof v);
    return v;
  }
  std::string text(size_t n, const std::string &field) {
    need(n, field);
    std::string s(reinterpret_cast<const char *>(bytes_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  size_t remaining() const { return bytes_.size() - pos_; }

 private:
  void need(size_t n, const std::string &field) {
    if (remaining() < n)
      fail(what_, "truncated: " + field + " needs " + std::to_string(n) + " bytes at offset " + std::to_string(pos_) +
                      ", the file has " + std::to_string(remaining()) + " left");
  }
  const std::vector<uint8_t> &bytes_;
  const std::string &what_;
  size_t pos_ = 0;
};

// The length of the UTF-8 character starting at text[i]: the byte plus the
// continuation bytes (10xxxxxx) after it, at most 4 in all. Malformed UTF-8
// still splits into groups, which then fall back to byte tokens.
size_t utf8_char_length(const std::string &text, size_t i) {
  size_t n = 1;
  while (n < 4 && i + n < text.size() && (static_cast<unsigned char>(text[i + n]) & 0xC0) == 0x80) ++n;
  return n;
}

}  // namespace

Tokenizer Tokenizer::load(const std::string &path, int64_t vocab_size) {
  if (vocab_size < 3 || vocab_size > kMaxVocab)
    fail(path, "vocab_size " + std::to_string(vocab_size) + " is outside [3, " + std::to_string(kMaxVocab) + "]");
  return parse(read_file_bytes(path, kMaxTokenizerBytes), vocab_size, path);
}

Tokenizer Tokenizer::parse(const std::vector<uint8_t> &bytes, int64_t vocab_size, const std::string &what) {
  if (vocab_size < 3 || vocab_size > kMaxVocab)
    fail(what, "vocab_size " + std::to_string(vocab_size) + " is outside [3, " + std::to_string(kMaxVocab) + "]");
  Cursor in(bytes, what);
  Tokenizer t;
  t.max_token_length_ = in.i32("the max_token_length header");
  if (t.max_token_length_ <= 0)
    fail(what, "max_token_length is " + std::to_string(t.max_token_length_) + ", expected positive");
  // Every token takes at least 8 bytes; check before reserving memory.
  if (static_cast<uint64_t>(vocab_size) > in.remaining() / 8)
    fail(what, "truncated: " + std::to_string(vocab_size) + " tokens need at least " + std::to_string(8 * vocab_size) +
                   " bytes after the header, the file has " + std::to_string(in.remaining()));
  t.pieces_.reserve(static_cast<size_t>(vocab_size));
  t.scores_.reserve(static_cast<size_t>(vocab_size));
  for (int64_t id = 0; id < vocab_size; ++id) {
    const std::string token = "token " + std::to_string(id);
    t.scores_.push_back(in.f32(token + "'s score"));
    const int32_t length = in.i32(token + "'s length");
    if (length < 0) fail(what, token + " has the negative length " + std::to_string(length));
    if (length > t.max_token_length_)
      fail(what, token + " has length " + std::to_string(length) + ", above max_token_length " +
                     std::to_string(t.max_token_length_));
    t.pieces_.push_back(in.text(static_cast<size_t>(length), token + "'s text"));
  }
  if (in.remaining() != 0)
    fail(what, "has " + std::to_string(in.remaining()) + " bytes after the " + std::to_string(vocab_size) +
                   " tokens (is the vocabulary size right?)");

  t.byte_ids_.fill(0);
  t.byte_value_.assign(t.pieces_.size(), -1);
  for (int32_t id = 0; id < static_cast<int32_t>(t.pieces_.size()); ++id) {
    const int b = byte_piece_value(t.pieces_[static_cast<size_t>(id)]);
    if (b >= 0) {
      t.byte_value_[static_cast<size_t>(id)] = static_cast<int16_t>(b);
      if (t.byte_ids_[static_cast<size_t>(b)] == 0) t.byte_ids_[static_cast<size_t>(b)] = id;
    } else if (id > 2) {
      t.text_ids_.emplace(t.pieces_[static_cast<size_t>(id)], id);  // the first of duplicates wins
    }
  }
  return t;
}

int32_t Tokenizer::lookup(const std::string &text) const {
  auto it = text_ids_.find(text);
  return it == text_ids_.end() ? -1 : it->second;
}

float Tokenizer::score(int32_t token) const {
  if (token < 0 || token >= size())
    throw std::runtime_error("tokenizer: token " + std::to_string(token) + " is outside the vocabulary [0, " +
                             std::to_string(size()) + ")");
  return scores_[static_cast<size_t>(token)];
}

std::vector<int32_t> Tokenizer::encode(const std::string &text, bool bos, bool eos) const {
  // 1. Characters (or their bytes) as tokens, after the dummy prefix that
  //    makes the first word look like every other word (" word").
  std::vector<int32_t> symbols;
  const std::string prefixed = text.empty() ? text : " " + text;
  for (size_t i = 0; i < prefixed.size();) {
    const size_t n = utf8_char_length(prefixed, i);
    const int32_t id = lookup(prefixed.substr(i, n));
    if (id >= 0) {
      symbols.push_back(id);
    } else {
      for (size_t k = i; k < i + n; ++k) symbols.push_back(byte_ids_[static_cast<unsigned char>(prefixed[k])]);
    }
    i += n;
  }

  // 2. Greedy BPE: merge the best-scoring adjacent pair until none merges.
  //    merged[i] is the token of symbols[i] + symbols[i+1] (or -1); only the
  //    two pairs touching a merge change, so each step is one scan.
  auto pair_token = [&](size_t i) {
    return lookup(pieces_[static_cast<size_t>(symbols[i])] + pieces_[static_cast<size_t>(symbols[i + 1])]);
  };
  std::vector<int32_t> merged;
  for (size_t i = 0; i + 1 < symbols.size(); ++i) merged.push_back(pair_token(i));
  for (;;) {
    size_t best = merged.size();
    for (size_t i = 0; i < merged.size(); ++i)
      if (merged[i] >= 0 && (best == merged.size() || scores_[static_cast<size_t>(merged[i])] >
                                                          scores_[static_cast<size_t>(merged[best])]))
        best = i;
    if (best == merged.size()) break;
    symbols[best] = merged[best];
    symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    merged.erase(merged.begin() + static_cast<std::ptrdiff_t>(best));
    if (best < merged.size()) merged[best] = pair_token(best);
    if (best > 0) merged[best - 1] = pair_token(best - 1);
  }

  std::vector<int32_t> out;
  out.reserve(symbols.size() + 2);
  if (bos) out.push_back(this->bos());
  out.insert(out.end(), symbols.begin(), symbols.end());
  if (eos) out.push_back(this->eos());
  return out;
}

std::string Tokenizer::piece(int32_t prev_token, int32_t token) const {
  score(token);  // range check
  if (token == bos() || token == eos()) return std::string();
  const size_t id = static_cast<size_t>(token);
  std::string text = byte_value_[id] >= 0 ? std::string(1, static_cast<char>(byte_value_[id])) : pieces_[id];
  if (prev_token == bos() && !text.empty() && text[0] == ' ') text.erase(0, 1);
  return text;
}

std::string Tokenizer::decode(const std::vector<int32_t> &tokens) const {
  std::string out;
  int32_t prev = bos();
  for (int32_t token : tokens) {
    out += piece(prev, token);
    prev = token;
  }
  return out;
}

}  // namespace ft
