#!/usr/bin/env python3
"""Writes a gzip-compressed initramfs (cpio "newc" format) from a directory tree.

Usage: mkcpio.py [--dev NAME:c|b:MAJOR:MINOR:MODE ...] ROOT OUT.cpio.gz

Every entry is owned by root (uid/gid 0) and has mtime 0, and entries are sorted, so the same
tree always gives the same bytes and no root privileges are needed, not even for the device
nodes (--dev adds /dev/NAME, e.g. the console the kernel opens before /init runs).
Format: the kernel's Documentation/driver-api/early-userspace/buffer-format.rst ("070701"
header of 13 eight-digit hex fields, NUL-terminated name, 4-byte alignment of name and data).
"""
import argparse
import gzip
import os
import stat
import sys


class CpioWriter:
    def __init__(self, out):
        self.out = out
        self.ino = 1
        self.pos = 0

    def _write(self, data):
        self.out.write(data)
        self.pos += len(data)

    def _pad(self):
        if self.pos % 4:
            self._write(b"\0" * (4 - self.pos % 4))

    def entry(self, name, mode, data=b"", rdev=(0, 0), nlink=1):
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self.ino += 1
        self._write(b"070701" + b"".join(b"%08X" % f for f in fields))
        self._write(encoded)
        self._pad()
        self._write(data)
        self._pad()

    def trailer(self):
        self.ino = 0
        self.entry("TRAILER!!!", 0)


def add_tree(writer, root):
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for n in sorted(dirnames + filenames):
            names.append(os.path.normpath(os.path.join(rel, n)))
    for name in sorted(names):
        path = os.path.join(root, name)
        st = os.lstat(path)
        perm = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            writer.entry(name, stat.S_IFDIR | perm, nlink=2)
        elif stat.S_ISLNK(st.st_mode):
            writer.entry(name, stat.S_IFLNK | 0o777, os.readlink(path).encode())
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                writer.entry(name, stat.S_IFREG | perm, f.read())
        else:
            raise ValueError(f"{path}: unsupported file type")


def parse_dev(spec):
    try:
        name, kind, major, minor, mode = spec.split(":")
        ftype = {"c": stat.S_IFCHR, "b": stat.S_IFBLK}[kind]
        return "dev/" + name, ftype | int(mode, 8), (int(major), int(minor))
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"bad --dev '{spec}' (want NAME:c|b:MAJOR:MINOR:MODE)")


def main():
    ap = argparse.ArgumentParser(description="build a gzip-compressed newc initramfs")
    ap.add_argument("--dev", action="append", default=[], type=parse_dev)
    ap.add_argument("root")
    ap.add_argument("out")
    args = ap.parse_args()
    if not os.path.isdir(args.root):
        print(f"mkcpio: {args.root} is not a directory", file=sys.stderr)
        return 1
    try:
        with open(args.out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz:
            w = CpioWriter(gz)
            add_tree(w, args.root)
            for name, mode, rdev in args.dev:
                w.entry(name, mode, rdev=rdev)
            w.trailer()
    except (OSError, ValueError) as e:
        print(f"mkcpio: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
