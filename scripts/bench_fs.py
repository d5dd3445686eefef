#!/usr/bin/env python3
"""Timing loops for scripts/bench: the same code measures the native file
system and a realize mount, so the ratios compare like with like.

usage: bench_fs.py table RUNS MIB FILES NATIVE PASS USER
                                           -> the native/passthrough/userspace table:
                                              runs alternate (native, passthrough,
                                              userspace, native, …); medians with
                                              min-max and ratios of the medians
       bench_fs.py latency MOUNT COUNT     -> prints median and 99th percentile (us)
                                              of a lookup of a new name and of a read
                                              of MOUNT/.ctl/peers: 4 numbers
       bench_fs.py mkfiles DIR COUNT KIB   -> makes COUNT files of KIB KiB
       bench_fs.py arrive DIR COUNT KIB    -> waits until DIR lists COUNT files,
                                              then reads each (KIB KiB); prints
                                              seconds from start to the last byte
       bench_fs.py create DIR COUNT KIB    -> mkfiles, timed: prints ops/s
       bench_fs.py rewrite DIR COUNT KIB   -> rewrites each file of mkfiles whole
                                              (O_TRUNC) with new bytes starting
                                              REWRITE: prints ops/s
       bench_fs.py rewritten DIR COUNT     -> waits until each of the COUNT files
                                              starts REWRITE; prints seconds
       bench_fs.py unlink DIR COUNT        -> unlinks them: prints ops/s
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
    """Sequential write with dd bs=1M into a new file, ending with fsync
    (conv=fsync): the figure is the disk's, not the page cache's."""
    if os.path.exists(path):
        os.unlink(path)
    return mib * CHUNK / dd("if=/dev/zero", f"of={path}", f"count={mib}", "conv=fsync") / 1e6


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


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def cell(values, native=None):
    """`median (min-max)`, with the ratio of the median to native's."""
    m = median(values)
    text = f"{m:.0f} ({min(values):.0f}-{max(values):.0f})"
    if native is not None:
        text += f" x{m / median(native):.2f}"
    return text


def table(runs, mib, files, places):
    """Runs every measurement `runs` times, alternating the places, and
    prints one row per measurement."""
    names = ["native", "passthrough", "userspace"]
    got = {n: {} for n in names}
    # A first round that is not counted: on this VM, writing blocks of the
    # disk never written before is several times slower than writing
    # blocks freed a moment ago, so whichever place wrote first lost.
    for name, where in zip(names, places):
        write(os.path.join(where, "big"), mib)
        os.unlink(os.path.join(where, "big"))
    for _ in range(runs):
        for name, where in zip(names, places):
            big = os.path.join(where, "big")
            got[name].setdefault("sequential write MB/s", []).append(write(big, mib))
            first, again = read(big, mib, name == "userspace")
            got[name].setdefault("sequential read MB/s", []).append(first)
            got[name].setdefault("re-read MB/s", []).append(again)
            os.unlink(big)
        for name, where in zip(names[:2], places[:2]):
            rates = meta(os.path.join(where, "meta"), files)
            for op, rate in zip(["create", "stat", "readdir", "unlink"], rates):
                got[name].setdefault(f"{op} ops/s", []).append(rate)
    print(f"{'':24}{'native':>22}{'passthrough':>30}{'userspace':>30}")
    for row in got["native"]:
        cells = [cell(got["native"][row])]
        for name in names[1:]:
            if row in got[name]:
                cells.append(cell(got[name][row], got["native"][row]))
        print(f"{row:24}" + "".join(f"{c:>{22 if i == 0 else 30}}" for i, c in enumerate(cells)))


def latency(mount, count):
    """Median and 99th percentile, in microseconds, of a lookup that
    reaches the daemon (a name never asked for) and of a read of the
    control file `.ctl/peers`."""
    lookups, reads = [], []
    tag = os.getpid()
    for i in range(count):
        start = time.perf_counter()
        try:
            os.stat(os.path.join(mount, f"missing-{tag}-{i}"))
        except FileNotFoundError:
            pass
        lookups.append(time.perf_counter() - start)
        start = time.perf_counter()
        with open(os.path.join(mount, ".ctl/peers"), "rb") as f:
            f.read()
        reads.append(time.perf_counter() - start)
    out = []
    for values in (lookups, reads):
        values.sort()
        out += [values[len(values) // 2] * 1e6, values[min(len(values) - 1, len(values) * 99 // 100)] * 1e6]
    return out


def mkfiles(directory, count, kib):
    os.makedirs(directory, exist_ok=True)
    body = os.urandom(kib * 1024)
    for i in range(count):
        with open(os.path.join(directory, f"f{i:06}"), "wb") as f:
            f.write(body[:8] + i.to_bytes(8, "little") + body[16:])


REWRITE = b"rewrite!"


def names(directory, count):
    return [os.path.join(directory, f"f{i:06}") for i in range(count)]


def rewrite(directory, count, kib):
    body = os.urandom(kib * 1024)
    start = time.perf_counter()
    for i, name in enumerate(names(directory, count)):
        with open(name, "wb") as f:
            f.write(REWRITE + i.to_bytes(8, "little") + body[16:])
    return count / (time.perf_counter() - start)


def rewritten(directory, count):
    """Polls each file (every 50 ms, for at most 10 minutes) until it
    starts with REWRITE."""
    start = time.perf_counter()
    for name in names(directory, count):
        while True:
            with open(name, "rb") as f:
                if f.read(len(REWRITE)) == REWRITE:
                    break
            if time.perf_counter() - start > 600:
                sys.exit(f"{name} was not rewritten")
            time.sleep(0.05)
    return time.perf_counter() - start


def unlink(directory, count):
    start = time.perf_counter()
    for name in names(directory, count):
        os.unlink(name)
    return count / (time.perf_counter() - start)


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
    what = sys.argv[1]
    if what == "table":
        runs, mib, files = (int(a) for a in sys.argv[2:5])
        table(runs, mib, files, sys.argv[5:8])
        sys.exit()
    path, n = sys.argv[2], int(sys.argv[3])
    if what == "latency":
        print(" ".join(f"{v:.0f}" for v in latency(path, n)))
    elif what == "mkfiles":
        mkfiles(path, n, int(sys.argv[4]))
    elif what == "arrive":
        print(f"{arrive(path, n, int(sys.argv[4])):.3f}")
    elif what == "create":
        start = time.perf_counter()
        mkfiles(path, n, int(sys.argv[4]))
        print(f"{n / (time.perf_counter() - start):.0f}")
    elif what == "rewrite":
        print(f"{rewrite(path, n, int(sys.argv[4])):.0f}")
    elif what == "rewritten":
        print(f"{rewritten(path, n):.3f}")
    elif what == "unlink":
        print(f"{unlink(path, n):.0f}")
    else:
        sys.exit(__doc__)
