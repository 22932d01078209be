package org.s2ft;

/**
 * A libs2ft call failed. {@link #status()} is the library's S2FT_ERR_* code and
 * {@link #getMessage()} the library's message (s2ft_last_error()), which names
 * the argument and what was wrong with it.
 */
public class S2ftException extends RuntimeException {
  private static final long serialVersionUID = 1L;
  private final int status;

  /** An exception for a failed call: the library status and its message. */
  public S2ftException(int status, String message) {
    super(message);
    this.status = status;
  }

  /** The negative S2FT_ERR_* status, e.g. {@link S2ft#ERR_INVALID_ARGUMENT}. */
  public int status() {
    return status;
  }

  /** The status's short name, e.g. "invalid argument". */
  public String statusName() {
    return S2ft.statusString(status);
  }

  @Override
  public String toString() {
    return "S2ftException(" + statusName() + "): " + getMessage();
  }
}
