// s2ft: the command-line tool of libs2ft. Dispatches to one subcommand and
// turns any failure into one line "s2ft <cmd>: error: <reason>" on stderr
// and exit status 1 (2 for usage errors before a command is known).
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "commands.hpp"
#include "errors.hpp"
#include "printable.hpp"
#include "s2ft/s2ft.h"

namespace s2ft {
namespace cli {

void warn(const std::string &command, const std::string &message) {
  say_to(stderr, "s2ft " + command + ": warning: " + message);
}

namespace {

const Command kCommands[] = {
    {"inspect", "summarize a checkpoint folder, adapter, selection or safetensors file", kInspectHelp, run_inspect},
    {"select", "choose the heads and channels to train; write a selection", kSelectHelp, run_select},
    {"permute", "co-permute a checkpoint so the selection comes first (or undo it)", kPermuteHelp, run_permute},
    {"merge", "merge adapters into a checkpoint", kMergeHelp, run_merge},
    {"fuse", "fuse several adapters into one", kFuseHelp, run_fuse},
    {"diff", "make an adapter from a base and a fine-tuned checkpoint", kDiffHelp, run_diff},
    {"export", "write an adapter as a PEFT LoRA adapter folder", kExportHelp, run_export},
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

// The one line of a failure (printable() escapes any line break in it).
void error_line(const std::string &command, const std::string &message) {
  say_to(stderr, (command.empty() ? "s2ft" : "s2ft " + command) + ": error: " + message);
}

}  // namespace
}  // namespace cli
}  // namespace s2ft

int main(int argc, char **argv) {
  using namespace s2ft::cli;
  // Past a file-size limit (ulimit -f) the kernel would kill the process
  // with SIGXFSZ, leaving its temporary files and no message; ignored, the
  // write fails with EFBIG, and the writer removes what it wrote and says so.
  std::signal(SIGXFSZ, SIG_IGN);
  if (argc < 2) {
    error_line("", "no command given (see s2ft --help)");
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
    error_line("", "unknown command '" + first + "' (see s2ft --help)");
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
  } catch (const std::bad_alloc &) {
    error_line(command->name, "out of memory");
  } catch (const std::exception &e) {  // CliError, or a library error the command did not reword
    error_line(command->name, e.what());
  }
  return 1;
}
