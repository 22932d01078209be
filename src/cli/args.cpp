#include "args.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "errors.hpp"

namespace s2ft {
namespace cli {

std::string ParsedArgs::get(const std::string &name, const std::string &fallback) const {
  auto it = values.find(name);
  return it == values.end() ? fallback : it->second;
}

namespace {

bool contains(const std::vector<std::string> &names, const std::string &name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

ParsedArgs parse_args(const std::vector<std::string> &tokens, const std::vector<std::string> &value_options,
                      const std::vector<std::string> &flag_options, const std::vector<std::string> &repeatable_options) {
  ParsedArgs out;
  bool options_done = false;
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string token = tokens[i];
    // A lone "-" is a positional (conventionally stdin), as is anything after "--".
    if (options_done || token.size() < 2 || token[0] != '-') {
      out.positional.push_back(token);
      continue;
    }
    if (token == "--") {
      options_done = true;
      continue;
    }
    if (token == "-o") token = "--output";
    if (token == "-h") token = "--help";
    if (token.compare(0, 2, "--") != 0) die("unknown option '" + token + "' (see --help)");

    std::string value;
    bool inline_value = false;
    const size_t eq = token.find('=');
    if (eq != std::string::npos) {
      value = token.substr(eq + 1);
      token = token.substr(0, eq);
      inline_value = true;
    }
    if (token == "--help" || contains(flag_options, token)) {
      if (inline_value) die("option " + token + " takes no value");
      if (out.flags.count(token) != 0) die("option " + token + " is given twice");
      out.flags.insert(token);
    } else if (contains(value_options, token) || contains(repeatable_options, token)) {
      if (!inline_value) {
        if (i + 1 >= tokens.size()) die("option " + token + " needs a value");
        value = tokens[++i];
      }
      if (contains(repeatable_options, token)) {
        out.lists[token].push_back(value);
        continue;
      }
      if (out.values.count(token) != 0) die("option " + token + " is given twice");
      out.values[token] = value;
    } else {
      die("unknown option '" + token + "' (see --help)");
    }
  }
  return out;
}

namespace {
// strto* skip leading white space (and strtoull then takes a '-' and wraps:
// " -17" became 2^64 - 17); a number on the command line starts at once.
bool starts_with_space(const std::string &text) { return !text.empty() && std::isspace(static_cast<unsigned char>(text[0])); }
}  // namespace

double parse_double(const std::string &option, const std::string &text) {
  const char *begin = text.c_str();
  char *end = nullptr;
  errno = 0;
  const double v = std::strtod(begin, &end);
  if (text.empty() || starts_with_space(text) || end != begin + text.size() || errno == ERANGE || !std::isfinite(v))
    die(option + " expects a finite number, got '" + text + "'");
  return v;
}

int64_t parse_int64(const std::string &option, const std::string &text) {
  const char *begin = text.c_str();
  char *end = nullptr;
  errno = 0;
  const long long v = std::strtoll(begin, &end, 10);
  if (text.empty() || starts_with_space(text) || end != begin + text.size() || errno == ERANGE)
    die(option + " expects an integer, got '" + text + "'");
  return static_cast<int64_t>(v);
}

uint64_t parse_uint64(const std::string &option, const std::string &text) {
  const char *begin = text.c_str();
  char *end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(begin, &end, 10);
  // strtoull accepts a leading '-' and wraps; only digits are taken.
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0])) || end != begin + text.size() || errno == ERANGE)
    die(option + " expects a non-negative integer, got '" + text + "'");
  return static_cast<uint64_t>(v);
}

std::vector<std::string> split_list(const std::string &text, char separator) {
  std::vector<std::string> parts;
  std::string current;
  for (char c : text) {
    if (c == separator) {
      if (!current.empty()) parts.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) parts.push_back(current);
  return parts;
}

}  // namespace cli
}  // namespace s2ft
