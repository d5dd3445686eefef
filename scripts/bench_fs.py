#!/usr/bin/env python3
"""Timing loops for scripts/bench: the same code measures the native file
system and a realize mount, so the ratios compare like with like.

usage: bench_fs.py write FILE MIB          -> prints MB/s (10^6 bytes/s)
       bench_fs.py read FILE MIB [drop]   -> prints read and re-read MB/s
       bench_fs.py meta DIR COUNT          -> prints create stat readdir unlink ops/s
       bench_fs.py mkfiles DIR COUNT KIB   -> makes COUNT files of KIB KiB
       bench_fs.py arrive DIR COUNT KIB    -> waits until DIR lists COUNT files,
                                              then reads each (KIB KiB); prints
                                              seconds from start to the last byte
"""
import os
import subprocess
import sys
import time

CHUNK = 1 << 20


def dd(*args):
    start = time.perf_counter()
    subprocess.run(["dd", "bs=1M", "status=none", *args], check=True)
    return time.perf_counter() - start


def write(path, mib):
    """Sequential write with dd bs=1M into a new file (page cache, no fsync)."""
    if os.path.exists(path):
        os.unlink(path)
    return mib * CHUNK / dd("if=/dev/zero", f"of={path}", f"count={mib}") / 1e6


def read(path, mib, drop):
    """Sequential read with dd bs=1M of a file just written, then a re-read
    through a fresh open. With `drop`, the file's own page cache is dropped
    first (on a realize mount without passthrough: the FUSE cache, so the
    first read goes through realize; the backing file stays warm, as the
    native file does)."""
    if drop:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    first = mib * CHUNK / dd(f"if={path}", "of=/dev/null") / 1e6
    again = mib * CHUNK / dd(f"if={path}", "of=/dev/null") / 1e6
    return first, again


def meta(directory, count):
    os.makedirs(directory, exist_ok=True)
    names = [os.path.join(directory, f"f{i:05}") for i in range(count)]
    rates = []
    start = time.perf_counter()
    for name in names:
        os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o644))
    rates.append(count / (time.perf_counter() - start))
    start = time.perf_counter()
    for name in names:
        os.stat(name)
    rates.append(count / (time.perf_counter() - start))
    start = time.perf_counter()
    for _ in range(5):
        assert len(os.listdir(directory)) == count
    rates.append(5 * count / (time.perf_counter() - start))
    start = time.perf_counter()
    for name in names:
        os.unlink(name)
    rates.append(count / (time.perf_counter() - start))
    return rates


def mkfiles(directory, count, kib):
    os.makedirs(directory, exist_ok=True)
    body = os.urandom(kib * 1024)
    for i in range(count):
        with open(os.path.join(directory, f"f{i:06}"), "wb") as f:
            f.write(body[:8] + i.to_bytes(8, "little") + body[16:])


def arrive(directory, count, kib):
    """Polls the listing (every 50 ms, for at most 10 minutes) until it
    holds COUNT files, then reads every file whole."""
    start = time.perf_counter()
    while True:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            names = []
        if len(names) >= count:
            break
        if time.perf_counter() - start > 600:
            sys.exit(f"only {len(names)} of {count} files arrived")
        time.sleep(0.05)
    for name in names:
        with open(os.path.join(directory, name), "rb") as f:
            assert len(f.read()) == kib * 1024, name
    return time.perf_counter() - start


if __name__ == "__main__":
    what, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if what == "write":
        print(f"{write(path, n):.0f}")
    elif what == "read":
        drop = sys.argv[4:] == ["drop"]
        print(" ".join(f"{r:.0f}" for r in read(path, n, drop)))
    elif what == "meta":
        print(" ".join(f"{r:.0f}" for r in meta(path, n)))
    elif what == "mkfiles":
        mkfiles(path, n, int(sys.argv[4]))
    elif what == "arrive":
        print(f"{arrive(path, n, int(sys.argv[4])):.3f}")
    else:
        sys.exit(__doc__)
