#include "io/input_file.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.hpp"

namespace s2ft {
namespace io {

namespace {
std::string errno_text() { return std::strerror(errno); }
}  // namespace

const char *file_type_name(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "not a regular file";
}

InputFile::InputFile(const std::string &path) : path_(path) {
  if (path.empty()) fail_arg("path is empty");
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) fail(S2FT_ERR_IO, "cannot open '" + path + "': " + errno_text());
  struct stat st;
  if (::fstat(fd_, &st) != 0) {
    const std::string why = errno_text();
    ::close(fd_);
    fail(S2FT_ERR_IO, "cannot stat '" + path + "': " + why);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    fail(S2FT_ERR_IO, "'" + path + "' is " + file_type_name(st.st_mode) + ", not a regular file");
  }
  size_ = static_cast<uint64_t>(st.st_size);
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

void InputFile::read_at(uint64_t offset, void *out, size_t n) const {
  char *p = static_cast<char *>(out);
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(fd_, p + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail(S2FT_ERR_IO, "cannot read '" + path_ + "': " + errno_text());
    if (r == 0)
      fail(S2FT_ERR_IO, "'" + path_ + "' ended at byte " + std::to_string(offset + got) + " (it shrank while being read)");
    got += static_cast<size_t>(r);
  }
}

namespace {
// Reads a whole regular file into a byte container (std::string or vector).
template <typename Bytes>
Bytes read_whole(const std::string &path, size_t max_bytes) {
  const InputFile f(path);
  if (f.size() > max_bytes)
    fail(S2FT_ERR_IO, "'" + path + "' is larger than the " + std::to_string(max_bytes) + "-byte limit");
  Bytes out(static_cast<size_t>(f.size()), typename Bytes::value_type{});
  if (!out.empty()) f.read_at(0, &out[0], out.size());
  return out;
}
}  // namespace

std::string read_file(const std::string &path, size_t max_bytes) { return read_whole<std::string>(path, max_bytes); }

std::vector<uint8_t> read_file_bytes(const std::string &path, size_t max_bytes) {
  return read_whole<std::vector<uint8_t>>(path, max_bytes);
}

}  // namespace io
}  // namespace s2ft
