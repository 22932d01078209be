/* An LD_PRELOAD library for the hostile tests: it kills the process with
 * SIGKILL at a chosen call, to stop a writer at an exact moment, the way a
 * crash, an OOM kill or kill -9 would, but deterministically.
 *
 *   S2FT_KILL_AT=rename:N   killed on the N-th rename(), before it happens
 *   S2FT_KILL_AT=write:N    the N-th write() to a regular file writes half of
 *                           its bytes, then the process is killed
 *
 * A process that makes fewer calls is not killed (the test sees exit 0). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { kNone, kRename, kWrite };

static int kill_kind = kNone;
static long kill_at = 0;
static long calls = 0;

__attribute__((constructor)) static void read_setting(void) {
  const char *s = getenv("S2FT_KILL_AT");
  if (s == NULL) return;
  if (strncmp(s, "rename:", 7) == 0) kill_kind = kRename, kill_at = atol(s + 7);
  if (strncmp(s, "write:", 6) == 0) kill_kind = kWrite, kill_at = atol(s + 6);
}

/* Whether this call is the chosen one. */
static int is_fatal(int kind) { return kind == kill_kind && ++calls == kill_at; }

int rename(const char *from, const char *to) {
  static int (*real)(const char *, const char *) = NULL;
  if (real == NULL) real = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
  if (is_fatal(kRename)) kill(getpid(), SIGKILL);
  return real(from, to);
}

static int is_regular_file(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

ssize_t write(int fd, const void *data, size_t n) {
  static ssize_t (*real)(int, const void *, size_t) = NULL;
  if (real == NULL) real = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
  if (is_regular_file(fd) && is_fatal(kWrite)) {
    real(fd, data, n / 2); /* a torn write */
    kill(getpid(), SIGKILL);
  }
  return real(fd, data, n);
}
