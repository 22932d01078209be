// Crash-safe file output: the content goes to a temporary file beside the
// destination, "<path>.tmp.<pid>.<random>", is flushed, and is renamed over
// `path`, so `path` is either the old file or the complete new one, never
// half-written. A writer that fails removes its temporary file; one that is
// killed cannot, so every writer first removes the temporaries of the same
// destination whose writers are gone (remove_stale_temporaries).
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace s2ft {
namespace io {

// Throws s2ft::Error(S2FT_ERR_IO) naming `path` on any failure (a write past
// a file-size limit included, when SIGXFSZ is ignored); the temporary file
// is removed on failure. An existing `path` that is not a regular file (a
// device, a FIFO, a folder) is refused, never replaced.
void write_file_atomic(const std::string &path, const void *data, size_t size);

// Writes `path` as write_file_atomic does, from `produce`, which hands the
// content over in order, in pieces, through put(data, size): a file larger
// than memory is written without assembling it.
using PutBytes = std::function<void(const void *data, size_t size)>;
void write_file_atomic_streamed(const std::string &path, const std::function<void(const PutBytes &put)> &produce);

// Copies the regular file `from` to `to` as write_file_atomic writes, in
// pieces of a few MiB (a file of any size is copied in bounded memory).
// Throws s2ft::Error(S2FT_ERR_IO) naming the file that failed; `from` that
// is not a regular file (a FIFO, a device, a folder) is refused before any
// read, and a `from` that shrinks while being copied is an error.
void copy_file_atomic(const std::string &from, const std::string &to);

// A new name for a temporary of `path`: "<path>.tmp.<our pid>.<random>".
std::string temporary_name(const std::string &path);

// Removes the temporaries of `path` ("<path>.tmp.<pid>.<n>", files or
// folders) that a writer left behind when it was killed. One is removed only
// when the process of its pid no longer exists and no process holds it
// locked (see lock_temporary), so a temporary being written by a live
// process, in this pid namespace or another, is left alone. Never throws:
// what cannot be removed stays.
void remove_stale_temporaries(const std::string &path);

// Locks a temporary file or folder (an exclusive flock on `fd`) for as long
// as the descriptor is open, marking it as in use for
// remove_stale_temporaries(). Returns false when the lock cannot be taken.
bool lock_temporary(int fd);

}  // namespace io
}  // namespace s2ft
