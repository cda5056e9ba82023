"""Give freed memory back to the operating system between the phases of a large run.

glibc keeps memory that Python and calamine have freed in its allocation arenas (one per thread
that allocated), so the process's resident size stays at its high-water mark: after reading 1.4M
rows about 350 MB of freed memory stays resident and every later phase starts from there.
``malloc_trim(0)`` returns it. On a C library without it (macOS, musl) this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
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
