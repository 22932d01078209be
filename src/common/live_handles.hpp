// The first member of every handle struct. It counts live objects, so
// bindings and tests can check that every handle they created was destroyed
// (s2ft_live_handles()), and it carries a tag naming the handle's kind while
// the object lives: an entry point given a destroyed handle, or a pointer to
// something else, says so (require_live) instead of using garbage, and
// destroying a handle twice does nothing the second time. The check costs
// one load and is best effort: freed memory may already hold a new object of
// the same kind, so it is never something to rely on, only a better failure.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "common/error.hpp"

namespace s2ft {

std::atomic<int64_t> &live_handle_count();

// Tags: 8 ASCII bytes each, "s2ft" and the kind.
enum class HandleKind : uint64_t {
  context = 0x7874636c74663273ull,     // "s2ftlctx"
  statistics = 0x7461747374663273ull,  // "s2ftstat"
  selection = 0x6c65736c74663273ull,   // "s2ftlsel"
  optimizer = 0x7470306f74663273ull,   // "s2fto0pt"
  adapter = 0x7061646174663273ull,     // "s2ftadap"
  model = 0x6c646f6d74663273ull,       // "s2ftmodl"
  sparse_delta = 0x6174646c74663273ull,  // "s2ftldta"
  checkpoint = 0x74706b6374663273ull,    // "s2ftckpt"
  sparse_set = 0x7465737374663273ull,    // "s2ftsset"
  spiel = 0x6c65697074663273ull,         // "s2ftpiel"
};

const char *handle_type_name(HandleKind kind);  // "s2ft_context", ...

template <HandleKind K>
struct LiveHandle {
  uint64_t tag = static_cast<uint64_t>(K);
  LiveHandle() { live_handle_count().fetch_add(1, std::memory_order_relaxed); }
  LiveHandle(const LiveHandle &) : LiveHandle() {}
  LiveHandle &operator=(const LiveHandle &) { return *this; }
  ~LiveHandle() {
    // Volatile: a store to an object that is about to die is otherwise dead
    // to the optimizer, and the tag must read "destroyed" afterwards.
    *static_cast<volatile uint64_t *>(&tag) = 0;
    live_handle_count().fetch_sub(1, std::memory_order_relaxed);
  }
  bool alive() const { return *static_cast<const volatile uint64_t *>(&tag) == static_cast<uint64_t>(K); }
  static constexpr HandleKind kind = K;
};

// *p, after checking that p is not NULL and points at a live handle of its
// type: S2FT_ERR_INVALID_ARGUMENT "<name> is NULL" / "<name> is not a live
// s2ft_x (it was destroyed, or is another object)".
template <typename T>
T &require_live(T *p, const char *name) {
  require_not_null(p, name);
  if (!p->live.alive())
    fail_arg(std::string(name) + " is not a live " + handle_type_name(decltype(p->live)::kind) +
             " (it was destroyed, or is another object)");
  return *p;
}

// The same for an optional handle: NULL passes.
template <typename T>
T *require_live_or_null(T *p, const char *name) {
  return p == nullptr ? p : &require_live(p, name);
}

// For ..._destroy(p): true when p should be deleted (not NULL and live);
// a second destroy of the same handle is then a no-op.
template <typename T>
bool destroyable(const T *p) {
  return p != nullptr && p->live.alive();
}

}  // namespace s2ft
