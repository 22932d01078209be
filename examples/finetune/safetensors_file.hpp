// A small reader and writer for safetensors files, the example's own (it is
// user code and links only the public library).
//
// Layout: [u64 little-endian N][N bytes of JSON header][data section]. The
// header maps each tensor name to {"dtype", "shape", "data_offsets": [begin,
// end]} with offsets relative to the start of the data section, plus an
// optional "__metadata__" object of strings.
//
// The reader treats every file as hostile: it checks the header length, the
// JSON, every dtype, shape and offset (with overflow checks) before it reads
// a byte of tensor data, and throws std::runtime_error("<file>: <problem>").
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ft {

// A tensor converted to float, row-major.
struct FloatTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct SafetensorsContents {
  std::map<std::string, FloatTensor> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__"
};

// Reads a whole file; F32, F16 and BF16 tensors are converted to float, any
// other dtype is an error.
SafetensorsContents read_safetensors(const std::string &path);

// The same for a file image in memory; `what` names it in error messages.
SafetensorsContents parse_safetensors(const std::vector<uint8_t> &bytes, const std::string &what);

// A tensor to write: `data` must hold the product of `shape` floats.
struct TensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  const std::vector<float> *data;
};

// The file image of F32 tensors in the given order, with `metadata` as
// "__metadata__" when it is not empty.
std::vector<uint8_t> serialize_safetensors(const std::vector<TensorToWrite> &tensors,
                                           const std::map<std::string, std::string> &metadata = {});

// serialize_safetensors, written atomically to `path`.
void write_safetensors(const std::string &path, const std::vector<TensorToWrite> &tensors,
                       const std::map<std::string, std::string> &metadata = {});

// File helpers the checkpoint readers share.

// The bytes of a regular file, refusing files larger than `max_bytes`.
std::vector<uint8_t> read_file_bytes(const std::string &path, uint64_t max_bytes);

// Writes `bytes` to a temporary file beside `path`, then renames it over
// `path`, so a reader never sees a half-written file.
void write_file_atomically(const std::string &path, const void *bytes, size_t size);

// A name from a hostile file, made safe to print in a message (quoted,
// non-printable bytes as \xNN, long names shortened).
std::string quoted_name(const std::string &name);

}  // namespace ft
