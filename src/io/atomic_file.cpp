#include "io/atomic_file.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <random>
#include <unistd.h>

#include "common/error.hpp"

namespace s2ft {
namespace io {

namespace {
std::string errno_text() { return std::strerror(errno); }
}  // namespace

void write_file_atomic(const std::string &path, const void *data, size_t size) {
  if (path.empty()) fail_arg("path is empty");
  std::random_device rd;
  const std::string tmp = path + ".tmp." + std::to_string(static_cast<unsigned long>(getpid())) + "." +
                          std::to_string(static_cast<unsigned long>(rd()));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail(S2FT_ERR_IO, "cannot create '" + tmp + "': " + errno_text());
  const char *p = static_cast<const char *>(data);
  size_t left = size;
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string why = errno_text();
      ::close(fd);
      ::unlink(tmp.c_str());
      fail(S2FT_ERR_IO, "cannot write '" + tmp + "': " + why);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::string why = errno_text();
    ::unlink(tmp.c_str());
    fail(S2FT_ERR_IO, "cannot flush '" + tmp + "': " + why);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = errno_text();
    ::unlink(tmp.c_str());
    fail(S2FT_ERR_IO, "cannot rename '" + tmp + "' to '" + path + "': " + why);
  }
}

}  // namespace io
}  // namespace s2ft
