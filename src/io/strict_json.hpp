// Parsing JSON from hostile files. nlohmann keeps one of two duplicate keys
// silently and recurses as deep as the input nests; every reader of this
// library refuses both instead, through this one parser.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace s2ft {
namespace io {

// Parses [begin, end) as UTF-8 JSON, keeping object keys in file order.
// Calls bad(message) (which must throw) for malformed JSON or invalid UTF-8
// ("malformed JSON or invalid UTF-8 (...)"), a key that appears twice in one
// object ("JSON has the key \"k\" in \"obj\" more than once"), or nesting
// deeper than max_depth ("JSON nesting is deeper than N levels"). Messages
// are printable ASCII whatever bytes the input holds.
nlohmann::ordered_json parse_strict_json(const char *begin, const char *end, size_t max_depth,
                                         const std::function<void(const std::string &)> &bad);

// s as a JSON string literal: quoted, escaped and pure ASCII, so any byte
// sequence from a hostile file reads safely in an error message.
std::string json_quoted(const std::string &s);

}  // namespace io
}  // namespace s2ft
