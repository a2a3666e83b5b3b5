"""runner.keep_freed_memory: a large freed block stays in the process for the next allocation instead of going
back to the kernel (and coming back page by page, zero-filled)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from kdstgcn.runtime.runner import keep_freed_memory

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="mallopt is glibc's")

BLOCK_PAGES = 16384  # 64 MiB, above glibc's largest default mmap threshold (32 MiB)
FREED_PAGES_RETURNED = f"""
import numpy as np
from kdstgcn.runtime.runner import keep_freed_memory

def resident_pages():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1])

print(keep_freed_memory())
block = np.ones({BLOCK_PAGES} * 4096, dtype=np.uint8)
before = resident_pages()
del block
print(before - resident_pages())
"""


def freed_pages_returned(env: dict) -> tuple[bool, int]:
    """In a fresh interpreter: keep_freed_memory's answer, and how many resident pages freeing a filled 64 MiB
    block gave back to the kernel."""
    out = subprocess.run([sys.executable, "-c", FREED_PAGES_RETURNED], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0] == "True", int(out[1])


def clean_environment() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                                             "GLIBC_TUNABLES")}


def test_a_freed_large_block_stays_in_the_process():
    kept, returned = freed_pages_returned(clean_environment())
    assert kept
    assert returned < BLOCK_PAGES // 16, f"freeing a 64 MiB block returned {returned} pages to the kernel"


def test_the_users_malloc_settings_win_and_the_block_goes_back():
    env = clean_environment() | {"MALLOC_MMAP_THRESHOLD_": str(32 << 20)}  # glibc's largest default threshold
    kept, returned = freed_pages_returned(env)
    assert not kept
    assert returned >= BLOCK_PAGES // 2


def test_malloc_tunables_are_left_alone(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")
    assert keep_freed_memory() is False
