#include "io/atomic_file.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <random>
#include <vector>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.hpp"
#include "io/input_file.hpp"

namespace s2ft {
namespace io {

namespace {

std::string errno_text() { return std::strerror(errno); }

// Renaming over a device or FIFO would replace it (as root, /dev/null with
// a regular file); refuse anything but a regular file or nothing.
void require_replaceable(const std::string &path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return;  // absent (or unreadable: the rename will say)
  if (!S_ISREG(st.st_mode))
    fail(S2FT_ERR_IO, "cannot write '" + path + "': it is " + file_type_name(st.st_mode) + ", not a regular file");
}

// Writes all of `size` bytes to fd, retrying after interruptions.
bool write_all(int fd, const char *p, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Fails naming `path`, after removing the temporary file (errno preserved).
[[noreturn]] void fail_removing(const std::string &tmp, int fd, const std::string &what, const std::string &path) {
  const std::string why = errno_text();
  if (fd >= 0) ::close(fd);
  ::unlink(tmp.c_str());
  fail(S2FT_ERR_IO, "cannot " + what + " '" + path + "': " + why);
}

// The pid in "<base>.tmp.<pid>.<digits>", or 0 when `name` is not a
// temporary of `base`.
pid_t temporary_pid(const std::string &name, const std::string &base) {
  const std::string prefix = base + ".tmp.";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return 0;
  const std::string rest = name.substr(prefix.size());
  const size_t dot = rest.find('.');
  if (dot == 0 || dot == std::string::npos || dot + 1 == rest.size() || dot > 9) return 0;
  for (size_t i = 0; i < rest.size(); ++i)
    if (i != dot && (rest[i] < '0' || rest[i] > '9')) return 0;
  return static_cast<pid_t>(std::stol(rest.substr(0, dot)));
}

bool process_exists(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

// Removes one stale temporary (a regular file or a folder, never what a
// link points to) unless a live writer holds it locked.
void remove_if_unlocked(const std::string &path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) return;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return;
  if (lock_temporary(fd)) {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  ::close(fd);
}

}  // namespace

std::string temporary_name(const std::string &path) {
  std::random_device rd;
  return path + ".tmp." + std::to_string(static_cast<unsigned long>(getpid())) + "." +
         std::to_string(static_cast<unsigned long>(rd()));
}

bool lock_temporary(int fd) { return ::flock(fd, LOCK_EX | LOCK_NB) == 0; }

void remove_stale_temporaries(const std::string &path) {
  const std::filesystem::path p(path);
  const std::string base = p.filename().string();
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
  if (base.empty()) return;
  DIR *d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> stale;
  while (const struct dirent *e = ::readdir(d)) {
    const pid_t pid = temporary_pid(e->d_name, base);
    if (pid > 0 && !process_exists(pid)) stale.push_back(dir + "/" + e->d_name);
  }
  ::closedir(d);
  for (const std::string &s : stale) remove_if_unlocked(s);
}

namespace {

// Makes `path` atomically: `fill` writes the content into the temporary
// file's descriptor (returning false with errno set when a write fails, or
// throwing), which is then flushed and renamed over `path`.
template <typename Fill>
void replace_atomically(const std::string &path, Fill fill) {
  if (path.empty()) fail_arg("path is empty");
  require_replaceable(path);
  remove_stale_temporaries(path);
  const std::string tmp = temporary_name(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail(S2FT_ERR_IO, "cannot create '" + path + "': " + errno_text());
  // Held locked until renamed (best effort: the pid in its name marks it as in use too).
  lock_temporary(fd);
  bool written = false;
  try {
    written = fill(fd);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (!written) fail_removing(tmp, fd, "write", path);
  if (::fsync(fd) != 0) fail_removing(tmp, fd, "flush", path);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail_removing(tmp, fd, "replace", path);
  ::close(fd);  // the data is synced and in place: nothing left to fail
}

}  // namespace

void write_file_atomic(const std::string &path, const void *data, size_t size) {
  replace_atomically(path, [&](int fd) { return write_all(fd, static_cast<const char *>(data), size); });
}

void write_file_atomic_streamed(const std::string &path, const std::function<void(const PutBytes &)> &produce) {
  replace_atomically(path, [&](int fd) {
    bool ok = true;
    int saved_errno = 0;
    produce([&](const void *data, size_t size) {
      if (ok && !write_all(fd, static_cast<const char *>(data), size)) ok = false, saved_errno = errno;
    });
    errno = saved_errno;
    return ok;
  });
}

void copy_file_atomic(const std::string &from, const std::string &to) {
  const InputFile source(from);  // a regular file only, opened without blocking
  replace_atomically(to, [&](int fd) {
    // In pieces, so that copying a file of any size needs 4 MiB of memory.
    std::vector<char> piece(size_t{4} << 20);
    for (uint64_t done = 0; done < source.size();) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(piece.size(), source.size() - done));
      source.read_at(done, piece.data(), n);
      if (!write_all(fd, piece.data(), n)) return false;
      done += n;
    }
    return true;
  });
}

}  // namespace io
}  // namespace s2ft
