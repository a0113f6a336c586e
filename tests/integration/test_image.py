#!/usr/bin/env python3
"""Checks the default guest image that guest/debian-image.sh builds (TAP-style output).

- the cached image exists (built from Debian's archive when missing) and a second run changes
  nothing;
- vmlinux is a RISC-V Image (header magic, text_offset 0x200000) of the kernel VERSION names;
- the initramfs holds /init, busybox and its applet links, /dev/console, and every module of
  the load order, dependencies first;
- a rebuild into another directory (--out, from the cached packages) gives identical bytes;
- bad input and an unreachable archive fail with one "debian-image:" line and a non-zero status.
"""
import gzip
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
_tap = h.Tap("")
ok, not_ok = _tap.ok, _tap.not_ok


def check(name, fn):
    try:
        fn()
    except (AssertionError, OSError, ValueError, KeyError, RuntimeError) as e:
        not_ok(name, str(e) or type(e).__name__)
    else:
        ok(name)


def need(cond, why):
    if not cond:
        raise AssertionError(why)


def read_newc(data):
    """{name: (mode, rdev_major, rdev_minor, bytes)} of a cpio newc archive."""
    entries = {}
    pos = 0
    while True:
        need(data[pos : pos + 6] == b"070701", f"bad cpio magic at offset {pos}")
        f = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        body = (name_start + namesize + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, rmaj, rmin, data[body : body + filesize])
        pos = (body + filesize + 3) & ~3


def run_script(*args, env=None):
    return subprocess.run(
        ["bash", h.IMAGE_SCRIPT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def parse_version(path):
    fields = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts:
                fields[parts[0]] = parts[1:]
    return fields


def main():
    try:
        image = h.default_image()
    except RuntimeError as e:
        not_ok("image builds", str(e))
        return 1
    ok("image builds")
    kernel, initramfs = image["kernel"], image["initramfs"]
    folder = os.path.dirname(kernel)
    version = parse_version(os.path.join(folder, "VERSION"))

    def cached_run_is_a_no_op():
        files = [os.path.join(folder, n) for n in os.listdir(folder)]
        before = {p: os.stat(p).st_mtime_ns for p in files}
        p = run_script()
        need(p.returncode == 0, f"second run exited {p.returncode}: {p.stderr.strip()}")
        need(f"kernel:    {kernel}" in p.stdout, f"second run printed {p.stdout!r}")
        need(p.stderr == "", f"second run said {p.stderr.strip()!r}")
        after = {p: os.stat(p).st_mtime_ns for p in files}
        need(before == after, "second run rewrote files")

    def kernel_header():
        with open(kernel, "rb") as f:
            head = f.read(64)
        need(head[48:53] == b"RISCV", "no 'RISCV' magic at offset 48 of vmlinux")
        need(head[56:60] == b"RSC\x05", "no 'RSC\\x05' magic at offset 56")
        need(int.from_bytes(head[8:16], "little") == 0x200000, "text_offset is not 0x200000")
        need(version["kernel"][0].startswith("linux-image-"), f"VERSION names {version['kernel']}")
        with open(kernel, "rb") as f:
            blob = f.read()
        need(f"Linux version {version['kabi'][0]} ".encode() in blob, "vmlinux is not the kernel VERSION names")

    def initramfs_contents():
        with open(initramfs, "rb") as f:
            files = read_newc(gzip.decompress(f.read()))
        mode, _, _, init = files["init"]
        need(mode & 0o111 and init.startswith(b"#!/bin/busybox sh"), "/init is not an executable busybox script")
        need(b"KUMO-INIT-OK" in init, "/init prints no KUMO-INIT-OK")
        need(files["bin/busybox"][3][:4] == b"\x7fELF", "bin/busybox is not an ELF file")
        need(files["bin/busybox"][3][18] == 243, "bin/busybox is not a RISC-V binary")  # EM_RISCV
        links = {os.path.basename(n) for n, e in files.items() if e[0] & 0o170000 == 0o120000}
        for applet in ("sh", "insmod", "setsid", "cttyhack", "awk", "date", "uname", "poweroff"):
            need(applet in links, f"no applet link for {applet}")

        need(files["bin/sh"][3] == b"/bin/busybox", "bin/sh does not point to /bin/busybox")
        mode, major, minor, _ = files["dev/console"]
        need(mode & 0o170000 == 0o020000 and (major, minor) == (5, 1), "dev/console is not char 5:1")
        moddir = f"lib/modules/{version['kabi'][0]}"
        order = files[f"{moddir}/kumo.load-order"][3].decode().split()
        names = [os.path.basename(m).split(".ko")[0].replace("-", "_") for m in order]
        for m in order:
            need(f"{moddir}/{m}" in files and m.endswith(".ko.xz"), f"module {m} missing")
        for m in ("virtio_mmio", "virtio_blk", "virtio_net", "virtio_rng", "virtio_balloon", "ext4"):
            need(m in names, f"{m} not in the load order")
        for before, after in (("virtio_mmio", "virtio_blk"), ("jbd2", "ext4"), ("net_failover", "virtio_net")):
            need(names.index(before) < names.index(after), f"{before} must load before {after}")
        need(f"{moddir}/modules.dep" in files, "no modules.dep")

    def rebuild_is_identical():
        with tempfile.TemporaryDirectory(prefix="kumo-image-") as tmp:
            out = os.path.join(tmp, "guest")
            p = run_script("--quiet", "--out", out)
            need(p.returncode == 0, f"--out build exited {p.returncode}: {p.stderr.strip()}")
            for name in ("RECIPE", "vmlinux", "initramfs.cpio.gz", "VERSION"):
                with open(os.path.join(out, name), "rb") as a, open(os.path.join(folder, name), "rb") as b:
                    need(a.read() == b.read(), f"{name} differs between two builds" +
                         (" (guest/ changed during the test)" if name == "RECIPE" else ""))
            need(not [n for n in os.listdir(tmp) if n != "guest"], "a temporary directory was left behind")

    def bad_argument():
        p = run_script("--no-such-flag")
        lines = p.stderr.strip().splitlines()
        need(p.returncode != 0, "exited 0")
        need(len(lines) == 1 and lines[0].startswith("debian-image: "), f"stderr was {p.stderr!r}")

    def unreachable_archive():
        with tempfile.TemporaryDirectory(prefix="kumo-cache-") as tmp:
            env = dict(os.environ, XDG_CACHE_HOME=tmp, KUMO_DEBIAN_MIRROR="http://127.0.0.1:9/debian")
            p = run_script("--quiet", env=env)
            lines = p.stderr.strip().splitlines()
            need(p.returncode != 0, "exited 0")
            need(len(lines) == 1 and "apt-get update failed" in lines[0], f"stderr was {p.stderr!r}")
            need(not os.path.exists(os.path.join(tmp, "kumo", "guest", "debian-trixie")), "left a cache entry")

    check("cached run changes nothing", cached_run_is_a_no_op)
    check("vmlinux is the Debian RISC-V kernel", kernel_header)
    check("initramfs contents and module order", initramfs_contents)
    check("rebuild with --out is byte-identical", rebuild_is_identical)
    check("bad argument: one error line", bad_argument)
    check("unreachable archive: one error line, no cache entry", unreachable_archive)
    return 1 if _tap.failures else 0


if __name__ == "__main__":
    sys.exit(main())
