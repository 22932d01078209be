#include "io/mapped_file.hpp"

#include <cerrno>
#include <cstring>
#include <limits>
#include <sys/mman.h>

#include "common/error.hpp"
#include "io/input_file.hpp"

namespace s2ft {
namespace io {

MappedFile::MappedFile(const std::string &path) {
  const InputFile file(path);  // a regular file only, opened without blocking
  size_ = file.size();
  if (size_ == 0) return;  // mmap refuses length 0; there is nothing to map
  if (size_ > std::numeric_limits<size_t>::max())
    fail(S2FT_ERR_IO, "cannot map '" + path + "': it is larger than the address space");
  void *p = ::mmap(nullptr, static_cast<size_t>(size_), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE,
                   file.fd(), 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    fail(S2FT_ERR_IO, "cannot map '" + path + "' (" + std::to_string(size_) + " bytes) into memory: " +
                          std::strerror(err) +
                          (err == ENOMEM ? " (an address-space limit, ulimit -v, below the file's size?)" : ""));
  }
  data_ = static_cast<uint8_t *>(p);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(data_, static_cast<size_t>(size_));
}

}  // namespace io
}  // namespace s2ft
