// Running the s2ft tool as a hostile input's victim: in a child process with
// a wall-clock timeout, an address-space limit (or, under AddressSanitizer,
// which reserves terabytes of address space, a check of the peak resident
// memory instead), an optional file-size limit and extra environment, with
// stdout and stderr captured. And snapshots of folders, to check that a run
// changed no input and left nothing behind.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define HOSTILE_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HOSTILE_UNDER_ASAN 1
#endif
#endif
#ifndef HOSTILE_UNDER_ASAN
#define HOSTILE_UNDER_ASAN 0
#endif

namespace hostile {

namespace fs = std::filesystem;

// Memory the tool may use on inputs of this size (a few MB of model): far
// below what any claim of a hostile file would make it allocate.
constexpr uint64_t kMemoryLimit = uint64_t(1) << 30;
// No run on these inputs takes more than a second; a hang is caught here.
constexpr int kTimeoutSeconds = 60;

struct Limits {
  uint64_t file_size = 0;  // RLIMIT_FSIZE in bytes; 0: none
  std::vector<std::pair<std::string, std::string>> env;
  std::string cwd;         // the folder to run in; "": the test's
};

struct Outcome {
  bool timed_out = false;
  int exit_code = -1;     // -1 when killed by a signal
  int signal = 0;
  long max_rss_kb = 0;
  std::string out, err;
  std::vector<std::string> err_lines() const {
    std::vector<std::string> lines;
    std::stringstream ss(err);
    for (std::string l; std::getline(ss, l);) lines.push_back(l);
    return lines;
  }
};

inline std::string slurp(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The child's side: limits, environment, redirections, then the tool.
// Output goes to pipes, not files, so a file-size limit leaves it whole.
[[noreturn]] inline void exec_tool(const std::vector<std::string> &args, const Limits &limits, int out_fd,
                                   int err_fd) {
  const int in_fd = ::open("/dev/null", O_RDONLY);
  if (in_fd < 0) _exit(126);
  ::dup2(in_fd, 0);
  ::dup2(out_fd, 1);
  ::dup2(err_fd, 2);
  if (!HOSTILE_UNDER_ASAN) {
    const struct rlimit as {kMemoryLimit, kMemoryLimit};
    ::setrlimit(RLIMIT_AS, &as);
  }
  if (limits.file_size != 0) {
    const struct rlimit fsize {limits.file_size, limits.file_size};
    ::setrlimit(RLIMIT_FSIZE, &fsize);
  }
  for (const auto &kv : limits.env) ::setenv(kv.first.c_str(), kv.second.c_str(), 1);
  if (!limits.cwd.empty() && ::chdir(limits.cwd.c_str()) != 0) _exit(126);
  std::vector<char *> argv;
  static const std::string tool = S2FT_CLI;
  argv.push_back(const_cast<char *>(tool.c_str()));
  for (const std::string &a : args) argv.push_back(const_cast<char *>(a.c_str()));
  argv.push_back(nullptr);
  ::execv(tool.c_str(), argv.data());
  _exit(127);
}

// Reads what is there on the open pipes, closing those that reached their end.
inline void drain(int fds[2], std::string *texts[2]) {
  struct pollfd p[2];
  nfds_t n = 0;
  for (int i = 0; i < 2; ++i)
    if (fds[i] >= 0) p[n++] = {fds[i], POLLIN, 0};
  if (n == 0 || ::poll(p, n, 2) <= 0) return;
  for (int i = 0; i < 2; ++i) {
    if (fds[i] < 0) continue;
    char buf[65536];
    const ssize_t got = ::read(fds[i], buf, sizeof buf);
    if (got > 0) texts[i]->append(buf, static_cast<size_t>(got));
    if (got == 0) {
      ::close(fds[i]);
      fds[i] = -1;
    }
  }
}

// Runs `s2ft args...`; never waits longer than kTimeoutSeconds.
inline Outcome run_tool(const std::vector<std::string> &args, const Limits &limits = {}) {
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  for (int fd : {out_pipe[0], err_pipe[0]}) ::fcntl(fd, F_SETFL, O_NONBLOCK);
  const pid_t pid = ::fork();
  if (pid == 0) exec_tool(args, limits, out_pipe[1], err_pipe[1]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  Outcome o;
  int fds[2] = {out_pipe[0], err_pipe[0]};
  std::string *texts[2] = {&o.out, &o.err};
  int status = 0;
  struct rusage ru {};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kTimeoutSeconds);
  while (::wait4(pid, &status, WNOHANG, &ru) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      o.timed_out = true;
      ::kill(pid, SIGKILL);
      ::wait4(pid, &status, 0, &ru);
      break;
    }
    drain(fds, texts);
  }
  // What the child wrote last (bounded: a descendant could hold the pipes open).
  const auto last = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while ((fds[0] >= 0 || fds[1] >= 0) && std::chrono::steady_clock::now() < last) drain(fds, texts);
  for (int fd : fds)
    if (fd >= 0) ::close(fd);
  if (WIFEXITED(status)) o.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) o.signal = WTERMSIG(status);
  o.max_rss_kb = ru.ru_maxrss;
  return o;
}

// A hash of a file's bytes; for a file too large to read in a test (the
// sparse files of terabytes the suite makes), its size and modification time.
inline std::string file_fingerprint(const std::string &path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "unreadable";
  if (st.st_size > (off_t(64) << 20))
    return "size " + std::to_string(st.st_size) + " mtime " + std::to_string(st.st_mtim.tv_sec) + "." +
           std::to_string(st.st_mtim.tv_nsec);
  return std::to_string(std::hash<std::string>()(slurp(path)));
}

// What a folder holds, recursively, without following links or opening
// anything but regular files (a FIFO among the inputs must not block the
// test): relative path -> kind and, for a regular file, a hash of its bytes.
using Snapshot = std::map<std::string, std::string>;

inline Snapshot snapshot(const std::string &root) {
  Snapshot s;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    const std::string rel = fs::relative(it->path(), root).string();
    const fs::file_status st = it->symlink_status();
    if (fs::is_symlink(st))
      s[rel] = "link " + fs::read_symlink(it->path()).string();
    else if (fs::is_regular_file(st))
      s[rel] = "file " + file_fingerprint(it->path().string());
    else if (fs::is_directory(st))
      s[rel] = "folder";
    else
      s[rel] = "special";
  }
  return s;
}

// "" when equal; else what was added, removed or changed.
inline std::string snapshot_diff(const Snapshot &before, const Snapshot &after) {
  std::string out;
  for (const auto &kv : after) {
    auto it = before.find(kv.first);
    if (it == before.end()) out += " left behind: " + kv.first + ";";
    else if (it->second != kv.second) out += " changed: " + kv.first + ";";
  }
  for (const auto &kv : before)
    if (after.count(kv.first) == 0) out += " removed: " + kv.first + ";";
  return out;
}

// The paths under `root` whose names hold ".tmp." (temporaries of writers).
inline std::vector<std::string> temporaries_under(const std::string &root) {
  std::vector<std::string> found;
  for (const auto &kv : snapshot(root))
    if (fs::path(kv.first).filename().string().find(".tmp.") != std::string::npos) found.push_back(kv.first);
  return found;
}

}  // namespace hostile
