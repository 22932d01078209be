"""Ownership of C handles: each is destroyed exactly once, after everything that borrows it.

A :class:`Resource` owns one handle and holds strong references to what the
C object borrows (its context, a checkpoint, tensor views, applied
adapters). The public classes hold their Resource; ``close()`` drops that
reference. CPython then destroys the handle at once, unless another open
object still borrows it (a Statistics borrows its Context, a Model its
Checkpoint, a NumPy view its Checkpoint): then the handle is destroyed when
the last of those goes. So closing in any order, or not at all, never
frees memory the library still uses, and never destroys twice.
"""

from .errors import state_error


class Resource:
    """One C handle (``ptr``), its destroy function, and the objects it borrows (``keep``)."""

    __slots__ = ("ptr", "_destroy", "keep", "attached", "__weakref__")

    def __init__(self, ptr, destroy, keep=()):
        """Owns ``ptr`` (an int address); ``destroy(ptr)`` is called once, when this object dies."""
        self.ptr = ptr
        self._destroy = destroy
        self.keep = list(keep)
        # Named borrowed objects that a later call may replace (a context's stream).
        self.attached = {}

    def __reduce_ex__(self, protocol):
        """Refuses pickling and deep copies: a copy would destroy the same handle twice."""
        raise TypeError("libs2ft handles cannot be pickled or deep-copied")

    def borrow(self, obj):
        """Keeps ``obj`` alive until after this handle is destroyed."""
        if not any(k is obj for k in self.keep):
            self.keep.append(obj)

    def __del__(self):
        """Destroys the handle, then lets go of what it borrowed."""
        ptr, self.ptr = self.ptr, None
        if ptr:
            self._destroy(ptr)
        self.keep = None
        self.attached = None


class Handle:
    """Base of the public handle classes: context manager, idempotent close(), closed checks."""

    __slots__ = ("_res", "__weakref__")
    _what = "handle"

    def _init_resource(self, ptr, destroy, keep=()):
        """Takes ownership of a handle just created."""
        self._res = Resource(ptr, destroy, keep)

    def _live(self):
        """The Resource; raises StateError when closed. Hold it in a local during a call."""
        res = getattr(self, "_res", None)
        if res is None:
            raise state_error("the %s is closed" % self._what)
        return res

    @property
    def closed(self):
        """True once close() was called (or creation failed)."""
        return getattr(self, "_res", None) is None

    def __reduce_ex__(self, protocol):
        """Refuses pickling and deep copies (a handle is a process-local object); copy.copy() shares it."""
        raise TypeError("s2ft.%s objects cannot be pickled or deep-copied" % type(self).__name__)

    def __copy__(self):
        """A second Python object over the same handle (closing one leaves the other open)."""
        other = type(self).__new__(type(self))
        other.__dict__.update(getattr(self, "__dict__", {}))
        other._res = getattr(self, "_res", None)
        return other

    def close(self):
        """Releases this object's handle; idempotent. What still borrows it keeps it until they close."""
        self._res = None

    def __enter__(self):
        """Returns the object."""
        return self

    def __exit__(self, *exc):
        """Closes the object."""
        self.close()

    def __repr__(self):
        """The class name and whether it is open."""
        return "<s2ft.%s %s>" % (type(self).__name__, "closed" if self.closed else "open")


def live(obj, cls, name, optional=False):
    """The Resource of ``obj``, a ``cls`` handle argument named ``name``; None allowed when optional."""
    from .errors import invalid

    if obj is None:
        if optional:
            return None
        raise invalid("%s is None; expected a %s" % (name, cls.__name__))
    if not isinstance(obj, cls):
        raise invalid("%s is a %s; expected a %s" % (name, type(obj).__name__, cls.__name__))
    res = getattr(obj, "_res", None)
    if res is None:
        raise state_error("%s: the %s is closed" % (name, cls.__name__))
    return res
