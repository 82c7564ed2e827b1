"""Keeping a process's resident memory near what it holds, not what it once held (glibc's malloc)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
_lock = threading.Lock()


def _mallopt():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to tune


@contextlib.contextmanager
def large_blocks_returned():
    """Within: every block of 128 KiB or more is mapped on its own and returned to the system when
    freed. After: blocks up to 32 MiB come from the heap again, which stays grown.

    glibc raises its mmap threshold to the size of any large block freed (up to 32 MiB), so after
    the message catalog's 18 MB JSON text is freed, the automaton builder's vectors (about 40 MB,
    freed once the automaton is made) would come from the heap and stay resident: measured, `kb
    triage` peaked at 210 MB that way and peaks at 184 MB with this. Afterwards the thresholds are
    where glibc's own adjustment takes them, as a log's 1 MB blocks, mapped and unmapped each time,
    would cost a third of triage's speed in page faults."""
    mallopt = _mallopt()
    with _lock:
        if mallopt:
            mallopt(M_MMAP_THRESHOLD, 128 * 1024)
        try:
            yield
        finally:
            if mallopt:
                mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024)
                mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024)
