package org.s2ft;

/**
 * Owner of one library object. close() destroys it and is idempotent; a
 * closed handle throws IllegalStateException when used. There are no
 * finalizers: close handles explicitly (try-with-resources), children
 * (selections, models, ...) before the context they were made from.
 */
abstract class NativeHandle implements AutoCloseable {
  private long ptr;

  NativeHandle(long ptr) {
    this.ptr = ptr;
  }

  /** The C pointer; throws when the handle is closed. */
  final long ptr() {
    if (ptr == 0) throw new IllegalStateException(getClass().getSimpleName() + " is closed");
    return ptr;
  }

  static long ptrOrZero(NativeHandle h) {
    return h == null ? 0 : h.ptr();
  }

  /** True once close() has run. */
  public final boolean isClosed() {
    return ptr == 0;
  }

  abstract void destroy(long ptr);

  /** Forgets the C pointer without destroying it (for objects the library owns). */
  final void detach() {
    ptr = 0;
  }

  @Override
  public void close() {
    if (ptr != 0) {
      long p = ptr;
      ptr = 0;
      destroy(p);
    }
  }
}
