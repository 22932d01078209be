// llama2.c `.bin` checkpoints (version 0, the "legacy" export of run.c).
//
// Layout, all little-endian:
//   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
//     (vocab_size < 0: the classifier is not shared with the embedding)
//   f32 token_embedding [vocab, dim]
//       rms_att [L, dim], wq [L, dim, dim], wk [L, kv_dim, dim], wv [L, kv_dim, dim],
//       wo [L, dim, dim], rms_ffn [L, dim], w1 [L, hidden, dim], w2 [L, dim, hidden],
//       w3 [L, hidden, dim], rms_final [dim],
//       freq_cis_real [seq_len, head_size/2], freq_cis_imag [seq_len, head_size/2] (unused),
//       wcls [vocab, dim] (only when not shared)
// with head_size = dim / n_heads and kv_dim = n_kv_heads * head_size.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "checkpoint.hpp"

// The floats are read straight into memory.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the llama2.c reader assumes a little-endian host"
#endif

namespace fs = std::filesystem;

namespace ft {

namespace {

[[noreturn]] void fail(const std::string &what, const std::string &problem) {
  throw std::runtime_error(what + ": " + problem);
}

// llama2.c's RoPE rotates interleaved pairs (x[2j], x[2j+1]) of each head;
// Hugging Face's rotate-half pairs (x[j], x[j + hs/2]). Both use frequency
// theta^(-2j/hs) for pair j, so moving row 2j to j and row 2j+1 to hs/2 + j
// within every head (what llama2.c's export to HF does) gives the same
// attention scores: q.k is a sum over pairs, and each pair is rotated alike.
void interleaved_to_rotate_half(std::vector<float> &w, int64_t n_heads, int64_t head_size, int64_t cols) {
  const int64_t half = head_size / 2;
  std::vector<float> head(static_cast<size_t>(head_size * cols));
  for (int64_t h = 0; h < n_heads; ++h) {
    float *rows = w.data() + h * head_size * cols;
    std::memcpy(head.data(), rows, head.size() * sizeof(float));
    for (int64_t j = 0; j < half; ++j) {
      std::memcpy(rows + j * cols, head.data() + (2 * j) * cols, static_cast<size_t>(cols) * sizeof(float));
      std::memcpy(rows + (half + j) * cols, head.data() + (2 * j + 1) * cols, static_cast<size_t>(cols) * sizeof(float));
    }
  }
}

}  // namespace

Checkpoint load_llama2c_checkpoint(const std::string &path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail(path, "no such file");
  const uintmax_t file_size = fs::file_size(path, ec);
  if (ec) fail(path, "cannot read its size (" + ec.message() + ")");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open");

  const uintmax_t header_bytes = 7 * sizeof(int32_t);
  if (file_size < header_bytes)
    fail(path, "the file is " + std::to_string(file_size) + " bytes, too short for the 28-byte llama2.c header");
  int32_t h[7];
  if (!in.read(reinterpret_cast<char *>(h), sizeof h)) fail(path, "cannot read the header");
  const char *const names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  for (int i = 0; i < 7; ++i)
    if (h[i] == 0 || (h[i] < 0 && i != 5))
      fail(path, std::string("header field ") + names[i] + " is " + std::to_string(h[i]) +
                     (i == 5 ? ", expected non-zero" : ", expected positive"));

  Checkpoint ck;
  LlamaConfig &c = ck.config;
  c.d_model = h[0];
  c.d_ff = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  const bool shared = h[5] > 0;
  c.vocab = shared ? int64_t{h[5]} : -int64_t{h[5]};  // int64: -INT32_MIN fits
  c.max_seq = h[6];
  if (c.d_model % c.n_heads != 0)
    fail(path, "dim (" + std::to_string(c.d_model) + ") is not a multiple of n_heads (" + std::to_string(c.n_heads) + ")");
  c.head_dim = c.d_model / c.n_heads;
  c.rms_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tied = shared;
  c.bos = 1;
  c.eos = 2;
  try {
    c.check();
  } catch (const std::runtime_error &e) {
    fail(path, e.what());
  }

  // check() bounds every size by 2^24 and every weight matrix by 2^31
  // elements, so none of these products overflows 64 bits.
  const uint64_t L = static_cast<uint64_t>(c.n_layers), d = static_cast<uint64_t>(c.d_model),
                 kv = static_cast<uint64_t>(c.kv_dim()), ff = static_cast<uint64_t>(c.d_ff),
                 vocab = static_cast<uint64_t>(c.vocab);
  const uint64_t freq_floats = 2 * static_cast<uint64_t>(c.max_seq) * static_cast<uint64_t>(c.head_dim / 2);
  const uint64_t floats = vocab * d + L * (2 * d + 2 * d * d + 2 * kv * d + 3 * ff * d) + d + freq_floats +
                          (shared ? 0 : vocab * d);
  const uint64_t expected = header_bytes + 4 * floats;
  if (file_size < expected)
    fail(path, "truncated: the header (" + c.describe() + ") needs " + std::to_string(expected) +
                   " bytes, the file has " + std::to_string(file_size));
  if (file_size > expected)
    fail(path, "has " + std::to_string(file_size - expected) + " bytes after the weights the header (" + c.describe() +
                   ") describes; not a version-0 llama2.c checkpoint?");

  // The file is exactly as long as the header says, so every read below fits.
  ck.weights = empty_weights<float>(c);
  LlamaWeights<float> &w = ck.weights;
  auto read = [&](std::vector<float> &t) {
    if (!in.read(reinterpret_cast<char *>(t.data()), static_cast<std::streamsize>(t.size() * sizeof(float))))
      fail(path, "cannot read " + std::to_string(t.size() * sizeof(float)) + " bytes");
  };
  auto read_layers = [&](std::vector<float> LayerWeights<float>::*member) {
    for (auto &layer : w.layers) read(layer.*member);
  };
  read(w.embed);
  read_layers(&LayerWeights<float>::attn_norm);
  read_layers(&LayerWeights<float>::q);
  read_layers(&LayerWeights<float>::k);
  read_layers(&LayerWeights<float>::v);
  read_layers(&LayerWeights<float>::o);
  read_layers(&LayerWeights<float>::ffn_norm);
  read_layers(&LayerWeights<float>::gate);
  read_layers(&LayerWeights<float>::down);
  read_layers(&LayerWeights<float>::up);
  read(w.final_norm);
  in.seekg(static_cast<std::streamoff>(4 * freq_floats), std::ios::cur);  // RoPE tables, recomputed by the model
  if (!shared) read(w.lm_head);

  for (auto &layer : w.layers) {
    interleaved_to_rotate_half(layer.q, c.n_heads, c.head_dim, c.d_model);
    interleaved_to_rotate_half(layer.k, c.n_kv_heads, c.head_dim, c.d_model);
  }
  return ck;
}

}  // namespace ft
