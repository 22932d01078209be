// The s2ft subcommands. Each takes the words after its name, prints its
// results on stdout, and throws CliError on failure (main() turns that into
// the one-line message and a non-zero exit status).
#pragma once

#include <string>
#include <vector>

namespace s2ft {
namespace cli {

using Words = std::vector<std::string>;

struct Command {
  const char *name;
  const char *summary;  // one line for `s2ft --help`
  const char *help;     // the full --help text
  int (*run)(const Words &args);
};

int run_inspect(const Words &args);
int run_select(const Words &args);
int run_permute(const Words &args);
int run_merge(const Words &args);
int run_fuse(const Words &args);
int run_diff(const Words &args);
int run_export(const Words &args);

extern const char *const kInspectHelp;
extern const char *const kSelectHelp;
extern const char *const kPermuteHelp;
extern const char *const kMergeHelp;
extern const char *const kFuseHelp;
extern const char *const kDiffHelp;
extern const char *const kExportHelp;

}  // namespace cli
}  // namespace s2ft
