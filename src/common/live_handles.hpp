// A process-wide count of live library objects, so bindings and tests can
// check that every handle they created was destroyed (s2ft_live_handles()).
// Each handle struct holds one LiveHandle member; copies count too, so the
// count stays balanced whatever the struct is copied into.
#pragma once

#include <atomic>
#include <cstdint>

namespace s2ft {

std::atomic<int64_t> &live_handle_count();

struct LiveHandle {
  LiveHandle() { live_handle_count().fetch_add(1, std::memory_order_relaxed); }
  LiveHandle(const LiveHandle &) : LiveHandle() {}
  LiveHandle &operator=(const LiveHandle &) { return *this; }
  ~LiveHandle() { live_handle_count().fetch_sub(1, std::memory_order_relaxed); }
};

}  // namespace s2ft
