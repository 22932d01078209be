// What the fuzzers that link the s2ft tool's sources need from its main.cpp,
// which they cannot link (libFuzzer supplies main()): the warning printer,
// here silent, since a fuzzer's output is libFuzzer's status lines.
#include <string>

#include "errors.hpp"

namespace s2ft {
namespace cli {

void warn(const std::string &, const std::string &) {}

}  // namespace cli
}  // namespace s2ft
