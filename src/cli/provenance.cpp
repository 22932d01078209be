#include "provenance.hpp"

#include <cstdlib>
#include <ctime>
#include <set>

#include "errors.hpp"
#include "handles.hpp"

namespace s2ft {
namespace cli {

namespace {

// 9999-12-31T23:59:59Z: the last second ISO-8601's four-digit years hold.
const unsigned long long kLastSecond = 253402300799ull;

// The library's message without the "s2ft_adapter_set_meta: " it starts with.
std::string reason(const std::string &message) {
  const std::string prefix = "s2ft_adapter_set_meta: ";
  return message.compare(0, prefix.size(), prefix) == 0 ? message.substr(prefix.size()) : message;
}

}  // namespace

std::string created_time() {
  std::time_t t = std::time(nullptr);
  const char *epoch = std::getenv("SOURCE_DATE_EPOCH");
  if (epoch != nullptr && *epoch != '\0') {
    const std::string text = epoch;
    bool ok = text.size() <= 12;
    for (char c : text) ok = ok && c >= '0' && c <= '9';
    if (!ok || std::strtoull(epoch, nullptr, 10) > kLastSecond)
      die("SOURCE_DATE_EPOCH must be a whole number of seconds since 1970-01-01 (at most " +
          std::to_string(kLastSecond) + "), got '" + text + "'");
    t = static_cast<std::time_t>(std::strtoull(epoch, nullptr, 10));
  }
  std::tm utc{};
  char buf[32];
  if (gmtime_r(&t, &utc) == nullptr || std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc) == 0)
    die("cannot express the time " + std::to_string(static_cast<long long>(t)) + " in UTC");
  return buf;
}

std::string meta_problem(const std::string &key, const std::string &value) {
  // A C string ends at NUL: a key or value holding one would be cut, not refused.
  if (key.find('\0') != std::string::npos) return "key holds a NUL character";
  if (value.find('\0') != std::string::npos) return "the value of key \"" + key + "\" holds a NUL character";
  // Otherwise the library's own rules, on an adapter of the smallest shape.
  s2ft_model_shape one{};
  one.n_layers = one.d_model = one.n_heads = one.n_kv_heads = one.head_dim = one.d_ff = 1;
  s2ft_adapter *made = nullptr;
  check(s2ft_adapter_create(&one, "", 1.0, &made));
  AdapterPtr scratch(made);
  if (s2ft_adapter_set_meta(scratch.get(), key.c_str(), value.c_str()) == S2FT_OK) return "";
  return reason(s2ft_last_error());
}

MetaPairs parse_meta_options(const std::string &option, const std::vector<std::string> &texts) {
  MetaPairs out;
  std::set<std::string> keys;
  for (const std::string &text : texts) {
    const size_t eq = text.find('=');
    if (eq == std::string::npos) die(option + " expects KEY=VALUE, got '" + text + "'");
    std::string key = text.substr(0, eq), value = text.substr(eq + 1);
    const std::string why = meta_problem(key, value);
    if (!why.empty()) die(option + " '" + text + "': " + why);
    if (!keys.insert(key).second) die(option + " gives the key " + key + " twice");
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

void set_meta(s2ft_adapter *adapter, const std::string &key, const std::string &value) {
  const std::string why = meta_problem(key, value);
  if (!why.empty()) die("cannot record " + key + ": " + why);
  check(s2ft_adapter_set_meta(adapter, key.c_str(), value.c_str()));
}

void set_derived_meta(s2ft_adapter *adapter, const std::string &command, const std::string &key,
                      const std::string &value) {
  const std::string why = meta_problem(key, value);
  if (!why.empty()) {
    warn(command, key + " is not recorded in the adapter: " + why);
    return;
  }
  check(s2ft_adapter_set_meta(adapter, key.c_str(), value.c_str()));
}

void record_tool_provenance(s2ft_adapter *adapter, const std::string &created) {
  set_meta(adapter, "library_version", s2ft_version_string());
  set_meta(adapter, "created", created);
}

}  // namespace cli
}  // namespace s2ft
