// Error handling for the s2ft command-line tool: every failure is a CliError
// whose message becomes the one line "s2ft <cmd>: error: <message>" on stderr.
#pragma once

#include <stdexcept>
#include <string>

#include "printable.hpp"
#include "s2ft/s2ft.h"

namespace s2ft {
namespace cli {

class CliError : public std::runtime_error {
 public:
  explicit CliError(const std::string &message) : std::runtime_error(message) {}
};

// The message is made printable here already: what() is a C string, and a
// NUL byte (from a name in a file) would otherwise cut it short.
[[noreturn]] inline void die(const std::string &message) { throw CliError(printable(message)); }

// Turns a failed library call into a CliError carrying s2ft_last_error()
// (which already names the function and the argument).
inline void check(s2ft_status status) {
  if (status == S2FT_OK) return;
  std::string message = s2ft_last_error();
  if (message.empty()) message = s2ft_status_string(status);
  die(message);
}

// `text` with every `from` replaced by `to`: rewords a library message in
// the tool's terms (a file name for "adapters[1]", a flag for a field).
inline std::string replace_all(std::string text, const std::string &from, const std::string &to) {
  if (from.empty()) return text;
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

// Prints "s2ft <cmd>: warning: <message>" on stderr.
void warn(const std::string &command, const std::string &message);

}  // namespace cli
}  // namespace s2ft
