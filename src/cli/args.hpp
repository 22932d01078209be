// A small, strict command-line parser for the s2ft subcommands: options are
// "--name value" or "--name=value" ("-o" is "--output", "-h" is "--help"),
// flags take no value, "--" ends the options, and anything unknown, repeated
// (except options declared repeatable) or missing its value is an error
// naming it.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace s2ft {
namespace cli {

struct ParsedArgs {
  std::vector<std::string> positional;
  std::map<std::string, std::string> values;  // "--name" -> value
  std::set<std::string> flags;                // "--name"
  std::map<std::string, std::vector<std::string>> lists;  // repeatable "--name" -> values in order

  bool has(const std::string &name) const {
    return values.count(name) != 0 || flags.count(name) != 0 || lists.count(name) != 0;
  }
  std::string get(const std::string &name, const std::string &fallback = "") const;
};

// Parses `tokens` (the words after the command name). value_options and
// flag_options list the accepted names with their dashes ("--seed");
// repeatable_options take a value each time they are given (into `lists`).
// "--help" is always accepted as a flag.
ParsedArgs parse_args(const std::vector<std::string> &tokens, const std::vector<std::string> &value_options,
                      const std::vector<std::string> &flag_options,
                      const std::vector<std::string> &repeatable_options = {});

// Strict number parsing: the whole text must be the number; the error names
// the option ("--seed expects a non-negative integer, got 'x'").
double parse_double(const std::string &option, const std::string &text);
int64_t parse_int64(const std::string &option, const std::string &text);
uint64_t parse_uint64(const std::string &option, const std::string &text);

// Splits "a,b,c" into its non-empty parts.
std::vector<std::string> split_list(const std::string &text, char separator);

}  // namespace cli
}  // namespace s2ft
