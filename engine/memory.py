"""Memory housekeeping for large runs: give freed memory back to the operating system between
phases, and pause the cyclic garbage collector while millions of objects are built.

glibc keeps memory that Python and calamine have freed in its allocation arenas (one per thread
that allocated), so the process's resident size stays at its high-water mark: after reading 1.4M
rows about 350 MB of freed memory stays resident and every later phase starts from there.
``malloc_trim(0)`` returns it. On a C library without it (macOS, musl) this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@contextmanager
def gc_paused(freeze: bool = False) -> Iterator[None]:
    """Pause Python's cyclic garbage collector (nests: only the outermost pause turns it back on).
    Reading and evaluating build millions of objects with no reference cycles; each full collection
    would rescan all of them. Reference counting still frees everything as usual.

    ``freeze``: at the end, move every object alive into the collector's permanent generation
    (``gc.freeze``), so the collections that follow do not rescan them either; ``gc.unfreeze()``
    hands them back. Only for phases known to build no cyclic garbage: a frozen cycle is never freed
    until then. (A stored exception's traceback once tied the reader's frames, raw rows included, into
    such a cycle: +800 MB for the rest of the run; tests/test_readers.py guards against it.)"""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if was_enabled:
            gc.enable()
