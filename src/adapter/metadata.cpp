// Adapter metadata: free key/value strings that record an adapter's
// provenance (docs/adapter-format.md). The rules are checked here for the
// API (s2ft_adapter_set_meta) and, through meta_key_problem and
// meta_value_problem, for files (adapter_file.cpp) and fusion (fuse.cpp):
// keys are 1 to 255 bytes of [A-Za-z0-9._-], so they go into a
// safetensors __metadata__ under "meta." without escaping and never clash
// with the format's own keys; values are UTF-8 of at most 64 KiB; an
// adapter holds at most 256 keys.
#include <cstdio>
#include <cstring>
#include <iterator>
#include <string>

#include "adapter/adapter.hpp"
#include "common/error.hpp"

namespace s2ft {

namespace {

bool key_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

}  // namespace

std::string meta_key_problem(const std::string &key) {
  if (key.empty()) return "is empty";
  if (key.size() > kMaxMetaKeyBytes) return "is longer than " + std::to_string(kMaxMetaKeyBytes) + " bytes";
  for (size_t i = 0; i < key.size(); ++i)
    if (!key_char(key[i])) {
      const unsigned char c = static_cast<unsigned char>(key[i]);
      char shown[16];
      if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
        std::snprintf(shown, sizeof shown, "'%c'", c);
      else
        std::snprintf(shown, sizeof shown, "byte 0x%02x", c);
      return "holds " + std::string(shown) + " at byte " + std::to_string(i) +
             " (keys use only A-Z, a-z, 0-9, '.', '_' and '-')";
    }
  return "";
}

std::string meta_value_problem(const std::string &value) {
  if (value.size() > kMaxMetaValueBytes) return "is longer than " + std::to_string(kMaxMetaValueBytes) + " bytes";
  if (value.find('\0') != std::string::npos) return "holds a NUL character";
  if (!valid_utf8(value)) return "is not valid UTF-8";
  return "";
}

}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_adapter_set_meta(s2ft_adapter *adapter, const char *key, const char *value) {
  return s2ft::guard("s2ft_adapter_set_meta", [&] {
    s2ft::require_live(adapter, "adapter");
    s2ft::require_not_null(key, "key");
    // Bounded reads: the limits are checked on at most one byte past them.
    const std::string k(key, strnlen(key, s2ft::kMaxMetaKeyBytes + 1));
    const std::string why = s2ft::meta_key_problem(k);
    if (!why.empty()) s2ft::fail_arg("key " + why);
    if (value == nullptr) {
      adapter->meta.erase(k);
      return;
    }
    std::string v(value, strnlen(value, s2ft::kMaxMetaValueBytes + 1));
    const std::string bad = s2ft::meta_value_problem(v);
    if (!bad.empty()) s2ft::fail_arg("the value of key \"" + k + "\" " + bad);
    auto it = adapter->meta.find(k);
    if (it != adapter->meta.end()) {
      it->second = std::move(v);
      return;
    }
    if (adapter->meta.size() >= s2ft::kMaxMetaEntries)
      s2ft::fail_arg("the adapter already has " + std::to_string(s2ft::kMaxMetaEntries) +
                     " metadata keys, the most it may hold; cannot add \"" + k + "\"");
    adapter->meta.emplace(k, std::move(v));
  });
}

S2FT_API s2ft_status s2ft_adapter_meta(const s2ft_adapter *adapter, const char *key, const char **value) {
  return s2ft::guard("s2ft_adapter_meta", [&] {
    s2ft::require_not_null(value, "value");
    *value = nullptr;
    const s2ft_adapter &a = s2ft::require_live(adapter, "adapter");
    s2ft::require_not_null(key, "key");
    // No stored key is longer than the limit, so a longer one is absent.
    const size_t len = strnlen(key, s2ft::kMaxMetaKeyBytes + 1);
    if (len > s2ft::kMaxMetaKeyBytes) return;
    auto it = a.meta.find(std::string(key, len));
    if (it != a.meta.end()) *value = it->second.c_str();
  });
}

S2FT_API s2ft_status s2ft_adapter_meta_count(const s2ft_adapter *adapter, int64_t *count) {
  return s2ft::guard("s2ft_adapter_meta_count", [&] {
    const s2ft_adapter &a = s2ft::require_live(adapter, "adapter");
    s2ft::require_not_null(count, "count");
    *count = static_cast<int64_t>(a.meta.size());
  });
}

S2FT_API s2ft_status s2ft_adapter_meta_at(const s2ft_adapter *adapter, int64_t index, const char **key,
                                          const char **value) {
  return s2ft::guard("s2ft_adapter_meta_at", [&] {
    if (key != nullptr) *key = nullptr;
    if (value != nullptr) *value = nullptr;
    const s2ft_adapter &a = s2ft::require_live(adapter, "adapter");
    const int64_t n = static_cast<int64_t>(a.meta.size());
    if (index < 0 || index >= n)
      s2ft::fail_arg("index " + std::to_string(index) + " is out of range [0, " + std::to_string(n) + ")");
    const auto it = std::next(a.meta.begin(), static_cast<std::ptrdiff_t>(index));
    if (key != nullptr) *key = it->first.c_str();
    if (value != nullptr) *value = it->second.c_str();
  });
}

}  // extern "C"
