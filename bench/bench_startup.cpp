// Start-up cost of a whole process that uses libs2ft: wall time and peak RSS.
//
// Each command runs as a child process (fork + execv, reaped with wait4); the
// wall time is CLOCK_MONOTONIC from just before fork to just after wait4, the
// peak RSS is the child's rusage ru_maxrss (KiB). Commands:
//   - this program re-executed as `s2ft-bench-startup --child-context`, which
//     only creates and destroys a default (CPU) context and exits;
//   - `s2ft --version` (the CLI; --cli PATH, default the build tree's s2ft).
// One warm-up run of each command first (not counted), then N runs that
// interleave the commands (a, b, a, b, ...) so drift hits them alike; medians.
// Targets: <= 30 ms wall and <= 20 MB (20 * 10^6 bytes) peak RSS per process.
// The children's stdout goes to /dev/null; their stderr is kept.
//
//   s2ft-bench-startup [--runs N] [--cli PATH] [--json PATH]
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "s2ft/s2ft.h"

namespace {

constexpr double kTargetMs = 30.0;
constexpr double kTargetBytes = 20e6;  // 20 MB

struct Command {
  std::string label;              // as shown in the table
  std::vector<std::string> argv;  // argv[0] is the executable's path
  std::vector<double> wall_ms;
  std::vector<double> rss_kib;
};

double now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

std::string describe_status(int status) {
  char buf[64];
  if (WIFEXITED(status)) std::snprintf(buf, sizeof buf, "exit status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status)) std::snprintf(buf, sizeof buf, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  else std::snprintf(buf, sizeof buf, "wait status 0x%x", status);
  return buf;
}

// Runs cmd once; on success appends its wall time and peak RSS when `record`.
// A child that fails makes the benchmark exit 1.
void run_once(Command &cmd, int devnull, bool record) {
  std::vector<char *> argv;
  for (auto &a : cmd.argv) argv.push_back(const_cast<char *>(a.c_str()));
  argv.push_back(nullptr);

  const double t0 = now_ms();
  const pid_t pid = fork();
  if (pid < 0) {
    std::fprintf(stderr, "fork failed: %s\n", std::strerror(errno));
    std::exit(1);
  }
  if (pid == 0) {
    if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
    execv(argv[0], argv.data());
    const char *msg = "s2ft-bench-startup: execv failed\n";
    ssize_t ignored = write(STDERR_FILENO, msg, std::strlen(msg));
    (void)ignored;
    _exit(127);
  }
  int status = 0;
  rusage ru{};
  pid_t r;
  do r = wait4(pid, &status, 0, &ru);
  while (r < 0 && errno == EINTR);
  const double t1 = now_ms();
  if (r != pid) {
    std::fprintf(stderr, "wait4 failed: %s\n", std::strerror(errno));
    std::exit(1);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "command `%s` failed: %s\n", cmd.label.c_str(), describe_status(status).c_str());
    std::exit(1);
  }
  if (record) {
    cmd.wall_ms.push_back(t1 - t0);
    cmd.rss_kib.push_back(static_cast<double>(ru.ru_maxrss));
  }
}

// This process's anonymous resident memory (KiB) from /proc/self/status, or -1.
// A forked child starts with these pages mapped, and Linux carries the
// pre-exec high-water mark over into the child's ru_maxrss, so it is the floor
// of what this method can report.
long self_rss_anon_kib() {
  FILE *f = std::fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "RssAnon: %ld kB", &kib) == 1) break;
  std::fclose(f);
  return kib;
}

std::string json_string(const std::string &s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string self_path(const char *argv0) {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) return std::string(buf, static_cast<size_t>(n));
  return argv0;
}

int child_context() {
  s2ft_context *ctx = nullptr;
  const s2ft_status st = s2ft_context_create(nullptr, &ctx);
  if (st != S2FT_OK) {
    std::fprintf(stderr, "s2ft_context_create failed: %s: %s\n", s2ft_status_string(st), s2ft_last_error());
    return 1;
  }
  s2ft_context_destroy(ctx);
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  if (argc == 2 && std::strcmp(argv[1], "--child-context") == 0) return child_context();

  int runs = 20;
#ifdef S2FT_CLI_PATH
  std::string cli = S2FT_CLI_PATH;
#else
  std::string cli;
#endif
  std::string json;
  for (int i = 1; i < argc; i += 2) {  // every option takes one value
    const std::string a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--help" || a == "-h") {
      std::printf("usage: %s [--runs N] [--cli PATH] [--json PATH]\n", argv[0]);
      return 0;
    }
    if (a == "--child-context") {
      std::fprintf(stderr, "--child-context takes no other options\n");
      return 2;
    }
    if (v == nullptr) {
      std::fprintf(stderr, "%s needs a value (see --help)\n", a.c_str());
      return 2;
    }
    if (a == "--runs") runs = std::atoi(v);
    else if (a == "--cli") cli = v;
    else if (a == "--json") json = v;
    else {
      std::fprintf(stderr, "unknown option %s (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (runs < 1) {
    std::fprintf(stderr, "bad arguments: --runs must be >= 1\n");
    return 2;
  }
  if (!cli.empty() && access(cli.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "--cli %s: not an executable file: %s\n", cli.c_str(), std::strerror(errno));
    return 2;
  }

  std::vector<Command> cmds;
  cmds.push_back({"s2ft-bench-startup --child-context", {self_path(argv[0]), "--child-context"}, {}, {}});
  if (!cli.empty()) cmds.push_back({"s2ft --version", {cli, "--version"}, {}, {}});

  const int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
  const long floor_kib = self_rss_anon_kib();
  for (auto &c : cmds) run_once(c, devnull, false);  // warm-up, not counted
  for (int r = 0; r < runs; ++r)
    for (auto &c : cmds) run_once(c, devnull, true);
  if (devnull >= 0) close(devnull);

  std::printf("start-up of a whole process (fork + execv + wait4), %d runs each, interleaved, 1 warm-up\n", runs);
  std::printf("library %s; targets: <= %.0f ms wall, <= %.0f MB (%.0f bytes) peak RSS\n", s2ft_version_string(),
              kTargetMs, kTargetBytes / 1e6, kTargetBytes);
  for (auto &c : cmds) std::printf("  %s: %s\n", c.label.c_str(), c.argv[0].c_str());
  std::printf("%-36s %10s %8s %8s %14s  %s\n", "command", "median ms", "min ms", "max ms", "median RSS MiB",
              "targets");
  struct Row {
    double med_ms, min_ms, max_ms, rss_kib;
    bool time_ok, rss_ok;
  };
  std::vector<Row> rows;
  for (auto &c : cmds) {
    Row row{};
    row.med_ms = median(c.wall_ms);
    row.min_ms = *std::min_element(c.wall_ms.begin(), c.wall_ms.end());
    row.max_ms = *std::max_element(c.wall_ms.begin(), c.wall_ms.end());
    row.rss_kib = median(c.rss_kib);
    row.time_ok = row.med_ms <= kTargetMs;
    row.rss_ok = row.rss_kib * 1024.0 <= kTargetBytes;
    rows.push_back(row);
    std::string verdict = "meets";
    if (!row.time_ok || !row.rss_ok) {
      verdict = "MISSES (";
      if (!row.time_ok) verdict += "time";
      if (!row.time_ok && !row.rss_ok) verdict += ", ";
      if (!row.rss_ok) verdict += "RSS";
      verdict += ")";
    }
    std::printf("%-36s %10.1f %8.1f %8.1f %14.1f  %s\n", c.label.c_str(), row.med_ms, row.min_ms, row.max_ms,
                row.rss_kib / 1024.0, verdict.c_str());
  }
  if (cli.empty())
    std::printf("%-36s (skipped: no --cli PATH given and no built-in default)\n", "s2ft --version");
  if (floor_kib >= 0)
    std::printf("note: this benchmark had %.1f MiB of anonymous RSS at fork time; Linux counts the forked\n"
                "      child's pre-exec peak in ru_maxrss, so no row can read lower than that\n",
                static_cast<double>(floor_kib) / 1024.0);

  if (!json.empty()) {
    FILE *f = std::fopen(json.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "cannot write %s: %s\n", json.c_str(), std::strerror(errno));
      return 1;
    }
    std::fprintf(f, "{\n  \"library_version\": %s,\n  \"runs\": %d,\n  \"warmup_runs\": 1,\n",
                 json_string(s2ft_version_string()).c_str(), runs);
    std::fprintf(f, "  \"target_wall_ms\": %.1f,\n  \"target_peak_rss_bytes\": %.0f,\n", kTargetMs, kTargetBytes);
    std::fprintf(f, "  \"fork_floor_rss_anon_kib\": %ld,\n", floor_kib);
    std::fprintf(f, "  \"cli_skipped\": %s,\n  \"commands\": [", cli.empty() ? "true" : "false");
    for (size_t i = 0; i < cmds.size(); ++i) {
      const Command &c = cmds[i];
      const Row &row = rows[i];
      std::fprintf(f, "%s\n    {\n      \"command\": %s,\n      \"path\": %s,\n", i ? "," : "",
                   json_string(c.label).c_str(), json_string(c.argv[0]).c_str());
      std::fprintf(f, "      \"median_wall_ms\": %.3f,\n      \"min_wall_ms\": %.3f,\n      \"max_wall_ms\": %.3f,\n",
                   row.med_ms, row.min_ms, row.max_ms);
      std::fprintf(f, "      \"median_peak_rss_kib\": %.1f,\n      \"median_peak_rss_mib\": %.3f,\n", row.rss_kib,
                   row.rss_kib / 1024.0);
      std::fprintf(f, "      \"meets_time_target\": %s,\n      \"meets_rss_target\": %s,\n",
                   row.time_ok ? "true" : "false", row.rss_ok ? "true" : "false");
      std::fprintf(f, "      \"meets\": %s,\n", row.time_ok && row.rss_ok ? "true" : "false");
      std::fprintf(f, "      \"wall_ms\": [");
      for (size_t k = 0; k < c.wall_ms.size(); ++k) std::fprintf(f, "%s%.3f", k ? ", " : "", c.wall_ms[k]);
      std::fprintf(f, "],\n      \"peak_rss_kib\": [");
      for (size_t k = 0; k < c.rss_kib.size(); ++k) std::fprintf(f, "%s%.0f", k ? ", " : "", c.rss_kib[k]);
      std::fprintf(f, "]\n    }");
    }
    std::fprintf(f, "\n  ]\n}\n");
    if (std::fclose(f) != 0) {
      std::fprintf(stderr, "cannot write %s\n", json.c_str());
      return 1;
    }
  }
  return 0;
}
