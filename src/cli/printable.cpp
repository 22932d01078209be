#include "printable.hpp"

#include <cstdint>

namespace s2ft {
namespace cli {

namespace {

std::string hex_escape(unsigned char byte) {
  static const char kDigits[] = "0123456789abcdef";
  return std::string("\\x") + kDigits[byte >> 4] + kDigits[byte & 0xf];
}

std::string control_escape(unsigned char byte) {
  switch (byte) {
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    default: return hex_escape(byte);
  }
}

// The length of the valid UTF-8 sequence at s[i] (0 when the bytes there
// are not one): no overlong forms, no surrogates, nothing past U+10FFFF.
size_t utf8_length(const std::string &s, size_t i) {
  const auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b = at(i);
  size_t n = 0;
  uint32_t code = 0, min = 0;
  if (b >= 0xc2 && b <= 0xdf) n = 2, code = b & 0x1f, min = 0x80;
  else if (b >= 0xe0 && b <= 0xef) n = 3, code = b & 0x0f, min = 0x800;
  else if (b >= 0xf0 && b <= 0xf4) n = 4, code = b & 0x07, min = 0x10000;
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((at(i + k) & 0xc0) != 0x80) return 0;
    code = (code << 6) | (at(i + k) & 0x3f);
  }
  if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return 0;
  return n;
}

// C1 controls (U+0080..U+009F, e.g. U+009B, a one-character CSI) are two
// bytes in UTF-8: C2 80 to C2 9F.
bool is_c1_control(const std::string &s, size_t i, size_t n) {
  return n == 2 && static_cast<unsigned char>(s[i]) == 0xc2 && static_cast<unsigned char>(s[i + 1]) <= 0x9f;
}

}  // namespace

std::string printable(const std::string &text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const unsigned char b = static_cast<unsigned char>(text[i]);
    if (b < 0x20 || b == 0x7f) {
      out += control_escape(b);
      ++i;
      continue;
    }
    if (b < 0x80) {
      out += static_cast<char>(b);
      ++i;
      continue;
    }
    const size_t n = utf8_length(text, i);
    if (n == 0 || is_c1_control(text, i, n)) {
      for (size_t k = 0; k < (n == 0 ? 1 : n); ++k) out += hex_escape(static_cast<unsigned char>(text[i + k]));
      i += n == 0 ? 1 : n;
      continue;
    }
    out.append(text, i, n);
    i += n;
  }
  return out;
}

void say_to(std::FILE *to, const std::string &line) {
  const std::string shown = printable(line) + "\n";
  std::fwrite(shown.data(), 1, shown.size(), to);
}

void say(const std::string &line) { say_to(stdout, line); }

}  // namespace cli
}  // namespace s2ft
