#!/usr/bin/env python3
"""virtio-blk with direct=on (the image opened with O_DIRECT) under the Debian guest.

Two disks, both direct=on, in an image directory under build/ (O_DIRECT needs a file system
that supports it; /tmp may be tmpfs, and where the build's disk refuses O_DIRECT too the test
says "# SKIP"):
- vda: a copy of the ext4 root disk (guest/rootfs.sh, 1 KiB blocks): the guest boots from it,
  which needs 512-byte sectors whatever the host's O_DIRECT block is;
- vdb: 8 MiB of random bytes the test keeps, serial "kumo-direct".
Checks: the VMM holds both images with O_DIRECT (proc(5) fdinfo); the guest sees 512-byte
logical and 4096-byte physical blocks on vdb; it reads the whole disk (md5 as on the host) and
odd sector ranges with dd iflag=direct; it writes random data with dd: sectors inside and
across 4 KiB blocks with oflag=direct, and 2 MiB at an odd sector through the page cache; it
reads those back with iflag=direct, writes a file on the root disk, syncs and powers off. The
host then finds each written range with the guest's md5, every other byte of vdb unchanged, the
root file system e2fsck-clean and the file in it (debugfs).
TAP lines: ok/not ok - virtio/direct: ... . Environment: KUMO_BIN, KUMO_TEST_BOOT_TIMEOUT
(default 300), KUMO_TEST_CMD_TIMEOUT (default 90).
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "net"))
import harness as h  # noqa: E402
from test_net import rootfs_image  # noqa: E402

BOOT_TIMEOUT = h.env_seconds("KUMO_TEST_BOOT_TIMEOUT", 300)
CMD_TIMEOUT = h.env_seconds("KUMO_TEST_CMD_TIMEOUT", 90)
LOG_DIR = os.path.join(h.ROOT, "build", "test-logs", "console")
DATA_BYTES = 8 << 20
SERIAL = "kumo-direct"
FLOW = "virtio/direct"
_tap = h.Tap(FLOW + ": ")
ok, not_ok = _tap.ok, _tap.not_ok
# Guest writes: (name, first sector, sectors, dd options). bs=512 throughout.
WRITES = [
    ("3 sectors across a 4 KiB block, oflag=direct", 7, 3, "oflag=direct"),
    ("1 sector inside a block, oflag=direct", 4097, 1, "oflag=direct"),
    ("8 aligned sectors, oflag=direct", 64, 8, "oflag=direct"),
    ("2 MiB at an odd sector, page cache", 6145, 4096, ""),
]
# Guest reads with iflag=direct: (first sector, sectors) of the untouched original.
READS = [(1, 1), (5, 6), (1023, 3), (16383, 1)]


def check(name, cond, why):
    if cond:
        ok(name)
    else:
        not_ok(name, why)
    return cond


def direct_supported(directory):
    """Whether files in directory can be opened with O_DIRECT (tmpfs and some others refuse)."""
    probe = os.path.join(directory, "o_direct.probe")
    with open(probe, "wb") as f:
        f.write(b"\0" * 4096)
    try:
        fd = os.open(probe, os.O_RDWR | os.O_DIRECT)
        os.close(fd)
        return True
    except OSError:
        return False
    finally:
        os.unlink(probe)


def open_flags(pid, path):
    """The flags (proc(5) fdinfo, octal) of every fd of pid open on path."""
    flags = []
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(os.path.join(fd_dir, fd)) != path:
                continue
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                for line in f:
                    if line.startswith("flags:"):
                        flags.append(int(line.split()[1], 8))
        except OSError:
            continue
    return flags


def md5(data):
    return hashlib.md5(data).hexdigest()


def run_guest(vm, root, data, original):
    def r(cmd, timeout=CMD_TIMEOUT, **kw):
        return vm.run(cmd, timeout=timeout, **kw)

    check("root ext4 (1 KiB blocks) boots from a direct=on disk", "KUMO-ROOTFS-OK" in vm.text(),
          "no KUMO-ROOTFS-OK: the initramfs could not mount /dev/vda")
    for path in (root, data):
        fl = open_flags(vm.pid, path)
        check("VMM holds %s with O_DIRECT" % os.path.basename(path), fl and all(f & os.O_DIRECT for f in fl),
              "fdinfo flags %s" % [oct(f) for f in fl])
    serial = r("echo $(cat /sys/block/vdb/serial)")
    check("vdb is the data disk", serial == SERIAL, "vdb serial %r" % serial)
    sizes = r("cat /sys/block/vdb/queue/logical_block_size /sys/block/vdb/queue/physical_block_size").split()
    check("512-byte sectors, 4096-byte physical block", sizes == ["512", "4096"], "sysfs says %s" % sizes)

    whole = r("md5sum /dev/vdb", timeout=300).split()[:1]
    check("guest reads the whole disk (md5)", whole == [md5(original)], "guest %s, host %s" % (whole, md5(original)))
    bad = []
    for first, count in READS:
        out = r("dd if=/dev/vdb bs=512 skip=%d count=%d iflag=direct 2>/dev/null | md5sum" % (first, count))
        want = md5(original[first * 512:(first + count) * 512])
        if out.split()[:1] != [want]:
            bad.append("sectors %d+%d: %r" % (first, count, out[-120:]))
    check("dd iflag=direct reads odd sector ranges", not bad, "; ".join(bad))

    sums = []
    for i, (name, first, count, opt) in enumerate(WRITES):
        r("dd if=/dev/urandom of=/tmp/w%d bs=512 count=%d 2>/dev/null" % (i, count))
        sums.append(r("md5sum /tmp/w%d" % i).split()[0])
        out = r("dd if=/tmp/w%d of=/dev/vdb bs=512 seek=%d conv=notrunc %s 2>&1" % (i, first, opt))
        check("guest write: %s" % name, "%d+0 records out" % count in out, "dd said %r" % out[-200:])
    r("sync")
    bad = []
    for i, (name, first, count, _) in enumerate(WRITES):
        out = r("dd if=/dev/vdb bs=512 skip=%d count=%d iflag=direct 2>/dev/null | md5sum" % (first, count))
        if out.split()[:1] != [sums[i]]:
            bad.append("%s: %r" % (name, out[-80:]))
    check("guest reads its writes back with iflag=direct", not bad, "; ".join(bad))
    r("echo direct root file > /root/direct.txt && sync")
    vm.poweroff("poweroff", timeout=120, expect_status=0)
    ok("guest synced and powered off (exit 0)")
    return sums


def check_host(root, data, original, sums):
    with open(data, "rb") as f:
        now = f.read()
    check("data disk keeps its size", len(now) == DATA_BYTES, "%d bytes" % len(now))
    expect = bytearray(original)
    bad = []
    for i, (name, first, count, _) in enumerate(WRITES):
        got = now[first * 512:(first + count) * 512]
        if md5(got) != sums[i]:
            bad.append(name)
        expect[first * 512:(first + count) * 512] = got
    check("host finds every guest write (md5)", not bad, "differs: %s" % ", ".join(bad))
    if bytes(expect) == now:
        ok("every other byte of the data disk unchanged")
    else:
        first = next(k for k in range(len(now)) if now[k] != expect[k])
        not_ok("every other byte of the data disk unchanged", "byte %d (sector %d) changed" % (first, first // 512))
    p = subprocess.run(["e2fsck", "-f", "-n", root], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    check("root disk e2fsck -fn clean", p.returncode == 0,
          "exit %d: %s" % (p.returncode, p.stdout.decode(errors="replace")[-300:]))
    p = subprocess.run(["debugfs", "-R", "cat /root/direct.txt", root], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    check("root disk holds the guest's file", p.stdout == b"direct root file\n", "debugfs: %r" % p.stdout[:80])


def main():
    if not shutil.which("e2fsck") or not shutil.which("debugfs"):
        not_ok("tools", "e2fsck and debugfs (e2fsprogs) are needed")
        return 1
    try:
        image = h.default_image()
        rootfs = rootfs_image()
    except RuntimeError as e:
        not_ok("guest image", str(e))
        return 1
    build = os.path.join(h.ROOT, "build")
    os.makedirs(build, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kumo-direct-", dir=build) as tmp:
        if not direct_supported(tmp):
            print("ok - %s # SKIP the file system of %s refuses O_DIRECT" % (FLOW, build), flush=True)
            return 0
        root = os.path.join(tmp, "root.ext4")
        shutil.copyfile(rootfs, root)
        data = os.path.join(tmp, "data.img")
        original = os.urandom(DATA_BYTES)
        with open(data, "wb") as f:
            f.write(original)
        argv = h.kumo_argv(kernel=image["kernel"], initrd=image["initramfs"], append="console=ttyS0 root=/dev/vda rw",
                           extra=["--disk", "path=%s,direct=on" % root,
                                  "--disk", "path=%s,direct=on,serial=%s" % (data, SERIAL)])
        os.makedirs(LOG_DIR, exist_ok=True)
        vm = h.Console(argv, name="direct", log_path=os.path.join(LOG_DIR, "virtio-direct.log"))
        try:
            vm.boot(timeout=BOOT_TIMEOUT)
            ok("boot")
            sums = run_guest(vm, root, data, original)
        except h.GuestFailure as e:
            not_ok(e.phase, e.detail, e.report())
            return 1
        finally:
            vm.close()
        check_host(root, data, original, sums)
    return 1 if _tap.failures else 0


if __name__ == "__main__":
    sys.exit(main())
