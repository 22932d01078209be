#include "io/strict_json.hpp"

#include <set>
#include <vector>

namespace s2ft {
namespace io {

using nlohmann::ordered_json;

namespace {

// nlohmann's messages quote the offending input, which in a hostile file
// may be any bytes; keep messages printable ASCII.
std::string printable(const std::string &s) {
  std::string out = s;
  for (char &c : out)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  return out;
}

}  // namespace

std::string json_quoted(const std::string &s) {
  return ordered_json(s).dump(-1, ' ', true, ordered_json::error_handler_t::replace);
}

ordered_json parse_strict_json(const char *begin, const char *end, size_t max_depth,
                               const std::function<void(const std::string &)> &bad) {
  struct OpenObject {
    std::string name;            // the key this object is the value of ("" for the root)
    std::set<std::string> keys;  // keys seen so far
  };
  std::vector<OpenObject> open_objects;
  std::string last_key;
  size_t depth = 0;
  auto on_event = [&](int, ordered_json::parse_event_t event, ordered_json &parsed) {
    switch (event) {
      case ordered_json::parse_event_t::object_start:
      case ordered_json::parse_event_t::array_start:
        if (++depth > max_depth) bad("JSON nesting is deeper than " + std::to_string(max_depth) + " levels");
        if (event == ordered_json::parse_event_t::object_start)
          open_objects.push_back({open_objects.empty() ? std::string() : last_key, {}});
        break;
      case ordered_json::parse_event_t::object_end:
        --depth;
        open_objects.pop_back();
        break;
      case ordered_json::parse_event_t::array_end:
        --depth;
        break;
      case ordered_json::parse_event_t::key: {
        last_key = parsed.get_ref<const std::string &>();
        OpenObject &o = open_objects.back();
        if (!o.keys.insert(last_key).second)
          bad("JSON has the key " + json_quoted(last_key) +
              (open_objects.size() > 1 ? " in " + json_quoted(o.name) : std::string()) + " more than once");
        break;
      }
      case ordered_json::parse_event_t::value:
        break;
    }
    return true;
  };
  try {
    return ordered_json::parse(begin, end, on_event, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const ordered_json::exception &e) {
    // nlohmann rejects malformed JSON and ill-formed UTF-8 (also in \u escapes).
    bad("malformed JSON or invalid UTF-8 (" + printable(e.what()) + ")");
  }
  bad("malformed JSON");  // unreachable: parse returns or throws
  return ordered_json();
}

}  // namespace io
}  // namespace s2ft
