// The process's peak resident set size (Linux VmHWM; getrusage elsewhere).
#pragma once

#include <cstdint>

namespace ft {

int64_t peak_rss_bytes();

}  // namespace ft
