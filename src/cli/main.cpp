// s2ft: the command-line tool of libs2ft. Dispatches to one subcommand and
// turns any failure into one line "s2ft <cmd>: error: <reason>" on stderr
// and exit status 1 (2 for usage errors before a command is known).
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "commands.hpp"
#include "errors.hpp"
#include "s2ft/s2ft.h"

namespace s2ft {
namespace cli {

void warn(const std::string &command, const std::string &message) {
  std::fprintf(stderr, "s2ft %s: warning: %s\n", command.c_str(), message.c_str());
}

namespace {

const Command kCommands[] = {
    {"inspect", "summarize a checkpoint folder, adapter, selection or safetensors file", kInspectHelp, run_inspect},
    {"select", "choose the heads and channels to train; write a selection", kSelectHelp, run_select},
    {"permute", "co-permute a checkpoint so the selection comes first (or undo it)", kPermuteHelp, run_permute},
    {"merge", "merge adapters into a checkpoint", kMergeHelp, run_merge},
    {"fuse", "fuse several adapters into one", kFuseHelp, run_fuse},
    {"diff", "make an adapter from a base and a fine-tuned checkpoint", kDiffHelp, run_diff},
};

void print_usage(std::FILE *to) {  // to stdout for --help
  std::fprintf(to,
               "usage: s2ft <command> [options]\n"
               "\n"
               "Structured Sparse Fine-Tuning (S2FT) on Hugging Face LLaMA checkpoints.\n"
               "\n"
               "commands:\n");
  for (const Command &c : kCommands) std::fprintf(to, "  %-9s %s\n", c.name, c.summary);
  std::fprintf(to,
               "\n"
               "  s2ft <command> --help    options of a command\n"
               "  s2ft --version           the library version\n");
}

// The message without line breaks, so every failure is exactly one line.
std::string one_line(std::string s) {
  for (char &c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace
}  // namespace cli
}  // namespace s2ft

int main(int argc, char **argv) {
  using namespace s2ft::cli;
  if (argc < 2) {
    std::fprintf(stderr, "s2ft: error: no command given (see s2ft --help)\n");
    return 2;
  }
  const std::string first = argv[1];
  if (first == "--help" || first == "-h" || first == "help") {
    print_usage(stdout);
    return 0;
  }
  if (first == "--version" || first == "-V") {
    std::printf("s2ft %s\n", s2ft_version_string());
    return 0;
  }
  const Command *command = nullptr;
  for (const Command &c : kCommands)
    if (first == c.name) command = &c;
  if (command == nullptr) {
    std::fprintf(stderr, "s2ft: error: unknown command '%s' (see s2ft --help)\n", one_line(first).c_str());
    return 2;
  }
  const Words words(argv + 2, argv + argc);
  for (const std::string &w : words) {
    if (w == "--") break;
    if (w == "--help" || w == "-h") {
      std::fputs(command->help, stdout);
      return 0;
    }
  }
  try {
    return command->run(words);
  } catch (const CliError &e) {
    std::fprintf(stderr, "s2ft %s: error: %s\n", command->name, one_line(e.what()).c_str());
  } catch (const std::bad_alloc &) {
    std::fprintf(stderr, "s2ft %s: error: out of memory\n", command->name);
  } catch (const std::exception &e) {
    std::fprintf(stderr, "s2ft %s: error: %s\n", command->name, one_line(e.what()).c_str());
  }
  return 1;
}
