"""A C handle shared by threads: calls hold it, freeing waits for them, finalizers free it."""

import ctypes
import threading
import weakref

from ._lib import Status
from .errors import MeshError

#: Handles currently held (tests check that close() and garbage collection release them).
live = [0]
_live_lock = threading.Lock()


def _count(delta: int) -> None:
    with _live_lock:
        live[0] += delta


class Handle:
    """Owns one pointer. `use()` lends it to a call; `close(before)` runs `before` (which may
    wake blocked calls), waits until no call holds the pointer, then frees it."""

    def __init__(self, owner, ptr: int, free, what: str):
        self._ptr = ptr
        self._free = free
        self._what = what
        self._users = 0
        self._cond = threading.Condition()
        _count(1)
        self._finalizer = weakref.finalize(owner, Handle._release, ptr, free)

    @staticmethod
    def _release(ptr, free):
        free(ctypes.c_void_p(ptr))
        _count(-1)

    def __enter__(self) -> ctypes.c_void_p:
        with self._cond:
            if self._ptr is None:
                raise MeshError(Status.CLOSED, f"the {self._what} is closed")
            self._users += 1
            return ctypes.c_void_p(self._ptr)

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._users -= 1
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def close(self, before=None) -> None:
        with self._cond:
            if self._ptr is None:
                return
            ptr = self._ptr
        if before is not None:
            before(ctypes.c_void_p(ptr))
        with self._cond:
            if self._ptr is None:
                return
            while self._users:
                self._cond.wait()
            self._ptr = None
        self._finalizer()
