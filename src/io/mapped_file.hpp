// A regular file mapped into memory privately (copy-on-write): writes to
// the mapping stay in this process and never reach the file. Opening treats
// the path as hostile, as InputFile does (a FIFO, device or folder is refused
// before anything is mapped). The mapping reserves no swap for the pages a
// writer might copy (MAP_NORESERVE), so a file larger than the machine's
// memory can be mapped; only the pages that are written cost memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace s2ft {
namespace io {

class MappedFile {
 public:
  // Throws s2ft::Error(S2FT_ERR_IO) naming the path when it cannot be
  // opened, is not a regular file or cannot be mapped.
  explicit MappedFile(const std::string &path);
  ~MappedFile();
  MappedFile(const MappedFile &) = delete;
  MappedFile &operator=(const MappedFile &) = delete;

  uint64_t size() const { return size_; }
  // The first byte (nullptr for an empty file); size() bytes, writable.
  uint8_t *data() const { return data_; }

 private:
  uint8_t *data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace io
}  // namespace s2ft
