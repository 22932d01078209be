// Reading and writing safetensors files (the Hugging Face tensor format):
//   8 bytes little-endian header length N, N bytes of JSON header
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...,
//    "__metadata__": {"key": "string", ...}}, then the data buffer.
// Readers treat every file as hostile: all offsets, sizes, dtypes and names
// are checked before any byte of data is touched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace s2ft {
namespace io {

struct TensorInfo {
  std::string name;
  std::string dtype;            // "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range inside the data buffer
};

// Bytes per element of a safetensors dtype name; 0 when unknown.
size_t safetensors_dtype_size(const std::string &dtype);

// A safetensors header without the data: what a summary or a reader that
// loads tensors one at a time needs.
struct SafetensorsHeader {
  std::map<std::string, std::string> metadata;
  std::vector<TensorInfo> tensors;  // in file order
  uint64_t data_start = 0;          // 8 + header length: where the data buffer begins
  uint64_t file_size = 0;
};

// Reads and validates only the header of a file (8 + header-length bytes,
// whatever the size of the tensors), with every check the whole-file reader
// makes: offsets against the file's size, dtypes and byte counts, no
// overlaps, no duplicate keys. Throws as SafetensorsFile::read does.
SafetensorsHeader read_safetensors_header(const std::string &path);

// The same checks on a whole file image already in memory (a mapped file):
// `size` bytes at `bytes`; `what` names it in messages.
SafetensorsHeader parse_safetensors_header(const uint8_t *bytes, uint64_t size, const std::string &what);

class SafetensorsFile {
 public:
  // Reads and validates a whole file. Throws s2ft::Error with S2FT_ERR_IO
  // (cannot open/read) or S2FT_ERR_FORMAT (malformed), naming the file.
  static SafetensorsFile read(const std::string &path);
  // Validates an in-memory image; `what` names it in messages.
  static SafetensorsFile parse(std::vector<uint8_t> bytes, const std::string &what);

  const std::map<std::string, std::string> &metadata() const { return metadata_; }
  const std::vector<TensorInfo> &tensors() const { return tensors_; }  // in file order
  const TensorInfo *find(const std::string &name) const;               // nullptr when absent
  const uint8_t *data(const TensorInfo &t) const { return bytes_.data() + data_start_ + t.begin; }

 private:
  std::vector<uint8_t> bytes_;
  size_t data_start_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> tensors_;
};

class SafetensorsWriter {
 public:
  void set_metadata(const std::string &key, const std::string &value);
  // Copies `bytes` bytes of data; bytes must equal product(shape) * dtype size.
  void add(const std::string &name, const std::string &dtype, const std::vector<int64_t> &shape, const void *data,
           size_t bytes);
  std::vector<uint8_t> serialize() const;
  // Writes atomically (temporary file + rename). Throws S2FT_ERR_IO.
  void write(const std::string &path) const;

 private:
  std::map<std::string, std::string> metadata_;
  struct Entry {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;
  };
  std::vector<Entry> entries_;
};

}  // namespace io
}  // namespace s2ft
