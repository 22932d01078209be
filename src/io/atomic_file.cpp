#include "io/atomic_file.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <random>
#include <sys/stat.h>
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

namespace {
// Reads a whole regular file into a byte container (std::string or vector).
template <typename Bytes>
Bytes read_whole(const std::string &path, size_t max_bytes) {
  if (path.empty()) fail_arg("path is empty");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(S2FT_ERR_IO, "cannot open '" + path + "': " + errno_text());
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(S2FT_ERR_IO, "'" + path + "' is not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    fail(S2FT_ERR_IO, "'" + path + "' is larger than the " + std::to_string(max_bytes) + "-byte limit");
  }
  Bytes out(static_cast<size_t>(st.st_size), typename Bytes::value_type{});
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd, reinterpret_cast<char *>(&out[0]) + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(got);  // a file that shrank while reading is read as it is now
  return out;
}
}  // namespace

std::string read_file(const std::string &path, size_t max_bytes) { return read_whole<std::string>(path, max_bytes); }

std::vector<uint8_t> read_file_bytes(const std::string &path, size_t max_bytes) {
  return read_whole<std::vector<uint8_t>>(path, max_bytes);
}

}  // namespace io
}  // namespace s2ft
