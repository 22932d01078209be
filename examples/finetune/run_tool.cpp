#include "run_tool.hpp"

#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

extern char **environ;

namespace ft {

int run_tool(const std::vector<std::string> &argv) {
  if (argv.empty()) throw std::invalid_argument("run_tool: no program");
  std::vector<char *> args;
  for (const std::string &a : argv) args.push_back(const_cast<char *>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int err = posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ);
  if (err != 0) throw std::runtime_error("cannot run " + argv[0] + ": " + std::strerror(err));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw std::runtime_error("waiting for " + argv[0] + " failed");
  if (!WIFEXITED(status)) throw std::runtime_error(argv[0] + " did not exit normally");
  return WEXITSTATUS(status);
}

}  // namespace ft
