#!/usr/bin/env python3
"""Hostile virtio guest (TAP): runs tests/virtio/hostile.S (built by `make test-programs`
into build/virtio/hostile.bin) with a writable disk in slot 0 that it feeds malformed
descriptor chains and a read-only disk in slot 1 that must keep working. Each malformed case
must end in DEVICE_NEEDS_RESET with a configuration-change interrupt (isr=0x2), bad requests in
IOERR (status 1), good reads in status 0 with the right bytes, and kumo must exit 0.

Environment: KUMO_BIN (default build/kumo).
"""
import os
import subprocess
import sys
import tempfile

ROOT = os.environ.get("KUMO_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
KUMO = os.environ.get("KUMO_BIN", os.path.join(ROOT, "build", "kumo"))
BIN = os.path.join(ROOT, "build", "virtio", "hostile.bin")

EXPECT = [
    ("loop", "needs-reset isr=0x2"),
    ("length-past-ram", "needs-reset isr=0x2"),
    ("address-outside-ram", "needs-reset isr=0x2"),
    ("address-wraps", "needs-reset isr=0x2"),
    ("too-many-descriptors", "needs-reset isr=0x2"),
    ("indirect-outside-ram", "needs-reset isr=0x2"),
    ("nested-indirect", "needs-reset isr=0x2"),
    ("indirect-loop", "needs-reset isr=0x2"),
    ("head-out-of-range", "needs-reset isr=0x2"),
    ("read-beyond-capacity", "status 1"),
    ("disk-A-after-reset", "status 0"),
    ("write-read-only-disk", "status 1"),
    ("disk-B-read", "status 0"),
]


def tap(ok, name, why=""):
    print(("ok - %s" % name) if ok else ("not ok - %s: %s" % (name, why)))
    sys.stdout.flush()


def main():
    if not os.path.exists(BIN):
        tap(False, "virtio/hostile", "%s is not built (make test-programs)" % BIN)
        return 1
    with tempfile.TemporaryDirectory(prefix="kumo-hostile-") as tmp:
        a = os.path.join(tmp, "a.img")
        b = os.path.join(tmp, "b.img")
        with open(a, "wb") as f:
            f.write(b"A" * 512 + bytes(1024 * 1024 - 512))
        with open(b, "wb") as f:
            f.write(b"KUMO-GOOD-SECTOR" + bytes(1024 * 1024 - 16))
        cmd = [KUMO, "run", "--bios", BIN, "--mem", "64M", "--disk", "path=" + a,
               "--disk", "path=%s,readonly=on" % b, "--stats"]
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=120)
        except subprocess.TimeoutExpired:
            tap(False, "virtio/hostile: exit status", "timed out")
            return 1
        out = p.stdout.decode(errors="replace").replace("\r", "").split("\n")
        err = p.stderr.decode(errors="replace")
        results = {}
        for line in out:
            if line.startswith("case ") and ": " in line:
                name, res = line[5:].split(": ", 1)
                results[name] = res
        for name, want in EXPECT:
            got = results.get(name)
            tap(got == want, "virtio/hostile: %s -> %s" % (name, want),
                "got %r" % got if got else "not printed")
        tap("disk B sector 0: KUMO-GOOD-SECTOR" in out, "virtio/hostile: disk B data intact",
            "disk B line: %r" % [l for l in out if l.startswith("disk B")])
        tap("virtio hostile guest: done" in out, "virtio/hostile: guest finished")
        resets = [l for l in err.split("\n") if "virtio-blk@slot0" in l]
        tap(bool(resets) and "9 resets needed" in resets[0],
            "virtio/hostile: device counters record 9 resets", resets[0] if resets else err[-300:])
        if p.returncode < 0:
            tap(False, "virtio/hostile: exit status", "kumo killed by signal %d" % -p.returncode)
        else:
            tap(p.returncode == 0, "virtio/hostile: exit status 0",
                "kumo exited %d: %s" % (p.returncode, err.strip().split("\n")[-1][:200]))
        if p.returncode != 0 or any(r != w for (n, w), r in
                                    zip(EXPECT, [results.get(n) for n, _ in EXPECT])):
            for line in out[-30:]:
                print("#   " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
