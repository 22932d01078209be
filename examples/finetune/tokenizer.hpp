// llama2.c's tokenizer: a SentencePiece BPE vocabulary in llama2.c's binary
// format (e.g. tok512.bin), with SentencePiece-style encoding and decoding.
//
// File layout, little-endian: int32 max_token_length, then for each of the
// model's vocab_size tokens: float score, int32 length, `length` bytes of
// the token's text. (Some documentation calls the header a float; it is an
// int32 in the files llama2.c writes.)
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace ft {

class Tokenizer {
 public:
  // Reads `path`, which must hold exactly `vocab_size` tokens (the model's
  // vocabulary size). Throws std::runtime_error naming the file and the
  // problem (truncated, negative or too long token, trailing bytes, ...).
  static Tokenizer load(const std::string &path, int64_t vocab_size);

  // The same for a file image in memory; `what` names it in messages.
  static Tokenizer parse(const std::vector<uint8_t> &bytes, int64_t vocab_size, const std::string &what);

  // SentencePiece BPE as llama2.c does it: a dummy-prefix " " before
  // non-empty text, each UTF-8 character as its token (else its bytes as
  // byte tokens <0xXX>), then repeatedly merge the adjacent pair whose
  // concatenation is a token with the highest score (the leftmost on ties).
  // Control tokens (<unk>, BOS, EOS) and byte tokens are never matched from
  // text, so any text round-trips through decode().
  std::vector<int32_t> encode(const std::string &text, bool bos, bool eos) const;

  // The concatenated pieces, as if the sequence started after a BOS (so the
  // dummy-prefix space is dropped): decode(encode(text, ...)) == text.
  std::string decode(const std::vector<int32_t> &tokens) const;

  // One token's text as generated after `prev_token`: byte tokens <0xXX>
  // give that raw byte, BOS and EOS give "", and after BOS a leading space
  // is dropped. Throws for a token outside the vocabulary.
  std::string piece(int32_t prev_token, int32_t token) const;

  int64_t size() const { return static_cast<int64_t>(pieces_.size()); }
  int32_t bos() const { return 1; }
  int32_t eos() const { return 2; }
  int32_t max_token_length() const { return max_token_length_; }
  float score(int32_t token) const;

 private:
  // The id of `text` as an ordinary token (not control, not byte), or -1.
  int32_t lookup(const std::string &text) const;

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int32_t> text_ids_;  // ordinary tokens only
  std::array<int32_t, 256> byte_ids_{};                // <0xXX> tokens; 0 (<unk>) where absent
  std::vector<int16_t> byte_value_;                    // per token: the byte of a <0xXX> token, else -1
  int32_t max_token_length_ = 0;
};

}  // namespace ft
