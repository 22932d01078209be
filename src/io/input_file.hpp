// Reading files the library is given, treating the path as hostile: only a
// regular file (after following links) is read. A FIFO, a device or a
// directory is refused before any read, and opening never blocks (a FIFO
// without a writer would otherwise hang the caller).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <sys/types.h>

namespace s2ft {
namespace io {

// What a file of this st_mode is, for messages: "a directory", "a FIFO",
// "a socket", "a device", "a regular file" or "not a regular file".
const char *file_type_name(mode_t mode);

class InputFile {
 public:
  // Throws s2ft::Error(S2FT_ERR_IO) naming the path when it cannot be
  // opened or is not a regular file.
  explicit InputFile(const std::string &path);
  ~InputFile();
  InputFile(const InputFile &) = delete;
  InputFile &operator=(const InputFile &) = delete;

  uint64_t size() const { return size_; }
  int fd() const { return fd_; }
  // Reads exactly n bytes at `offset` (S2FT_ERR_IO when the file is shorter now).
  void read_at(uint64_t offset, void *out, size_t n) const;

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// Reads a whole regular file, refusing files larger than max_bytes. Throws S2FT_ERR_IO.
std::string read_file(const std::string &path, size_t max_bytes);
std::vector<uint8_t> read_file_bytes(const std::string &path, size_t max_bytes);

}  // namespace io
}  // namespace s2ft
