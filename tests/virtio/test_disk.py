#!/usr/bin/env python3
"""virtio devices under the default Debian guest (TAP): disks, entropy, virtio-console.

Flow "disk-sigkill" (serial console): an ext4 image made with mkfs.ext4 -d (no root needed) as
a writable disk with a serial, a second copy as a read-only disk, and --rng. In the guest:
the serial and read-only flags in sysfs, mount the disk, read the host's file, write files,
`sync`; the test kills the VMM with SIGKILL as soon as the guest prints its marker after
sync. The host then replays the journal on a copy (as the next mount would), finds
e2fsck -fn clean and reads the files back with debugfs. The read-only disk mounts with -o ro
and rejects a raw dd write; /dev/hwrng gives bytes from virtio-rng.

Flow "vconsole-poweroff" (--console virtio, console=ttyS0 console=hvc0: Debian's virtio_mmio
is a module, so hvc0 cannot be the only console): the shell runs on hvc0; write
files, power off (exit 0); e2fsck -fn is clean and debugfs shows the bytes.

Each failure names its phase (did not boot, no shell, command failed, ...). Environment:
KUMO_BIN, KUMO_TEST_BOOT_TIMEOUT (default 300), KUMO_TEST_CMD_TIMEOUT (default 90).
"""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))
import harness as h  # noqa: E402
_tap = h.Tap("")
ok, not_ok = _tap.ok, _tap.not_ok

BOOT_TIMEOUT = h.env_seconds("KUMO_TEST_BOOT_TIMEOUT", 300)
CMD_TIMEOUT = h.env_seconds("KUMO_TEST_CMD_TIMEOUT", 90)
LOG_DIR = os.path.join(h.ROOT, "build", "test-logs", "console")


def check(name, cond, why):
    if cond:
        ok(name)
    else:
        not_ok(name, why)
    return cond


def make_image(path, files, size="32M"):
    src = path + ".d"
    os.makedirs(src)
    for name, data in files.items():
        with open(os.path.join(src, name), "wb") as f:
            f.write(data)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", src, path, size], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def debugfs_cat(img, path):
    p = subprocess.run(["debugfs", "-R", "cat " + path, img], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    return p.stdout


def fsck(img, repair=False):
    p = subprocess.run(["e2fsck", "-f", "-y" if repair else "-n", img], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    return p.returncode, p.stdout.decode(errors="replace")


def boot(name, argv):
    os.makedirs(LOG_DIR, exist_ok=True)
    vm = h.Console(argv, name=name, log_path=os.path.join(LOG_DIR, "virtio-%s.log" % name))
    vm.boot(timeout=BOOT_TIMEOUT)
    return vm


def report(flow, e):
    not_ok("%s: %s" % (flow, e.phase), e.report() if hasattr(e, "report") else str(e))


def flow_sigkill(img, tmp):
    flow = "virtio/disk-sigkill"
    ro = os.path.join(tmp, "ro.img")
    shutil.copy(img, ro)
    payload = os.urandom(200 * 1024)
    argv = h.kumo_argv(kernel=KERNEL, initrd=INITRD, extra=[
        "--disk", "path=%s,serial=kumo-disk-0,discard=on" % img,
        "--disk", "path=%s,readonly=on" % ro, "--rng"])
    vm = None
    try:
        vm = boot("sigkill", argv)
        r = lambda cmd, **kw: vm.run(cmd, timeout=CMD_TIMEOUT, **kw)  # noqa: E731
        serial = r("echo $(cat /sys/block/vda/serial)")  # sysfs has no trailing newline
        check(flow + ": serial via GET_ID", serial == "kumo-disk-0", "serial %r" % serial)
        check(flow + ": read-only flags", r("cat /sys/block/vda/ro /sys/block/vdb/ro").split()
              == ["0", "1"], "vda/vdb ro flags")
        r("mkdir -p /mnt/a /mnt/b && mount -t ext4 /dev/vda /mnt/a")
        check(flow + ": host file read in the guest", r("cat /mnt/a/hello.txt") ==
              "hello from the host", "hello.txt")
        # The payload travels as hex through the console and is rebuilt with busybox printf.
        hexdata = payload[:4096].hex()
        chunks = [hexdata[i:i + 512] for i in range(0, len(hexdata), 512)]
        r(": > /tmp/p.hex")
        for c in chunks:
            r("echo %s >> /tmp/p.hex" % c)
        r("tr -d '\\n' < /tmp/p.hex | sed 's/\\(..\\)/\\\\x\\1/g' > /tmp/p.esc && "
          "printf \"$(cat /tmp/p.esc)\" > /mnt/a/payload.bin")
        r("echo written by the guest > /mnt/a/guest.txt")
        r("dd if=/dev/urandom of=/mnt/a/random.bin bs=64k count=8 2>/dev/null")
        guest_md5 = r("md5sum /mnt/a/random.bin").split()[0]
        r("mount -o ro -t ext4 /dev/vdb /mnt/b")
        check(flow + ": read-only disk mounts with -o ro", r("cat /mnt/b/hello.txt") ==
              "hello from the host", "ro hello.txt")
        out = r("dd if=/dev/zero of=/dev/vdb bs=512 count=1 2>&1; echo rc=$?", check=False)
        check(flow + ": raw write to the read-only disk fails", "rc=0" not in out and
              ("Operation not permitted" in out or "Read-only" in out or "I/O error" in out),
              "dd said %r" % out[-200:])
        out = r("head -c 64 /dev/hwrng | wc -c; cat /sys/class/misc/hw_random/rng_current",
                check=False)
        check(flow + ": virtio-rng gives bytes", out.split()[:1] == ["64"] and "virtio" in out,
              "hwrng: %r" % out)
        # The marker is computed by the shell, so the echo of the typed line cannot match it.
        vm.send("sync && echo SYNC-$((40+2))-DONE\n")
        vm.expect("SYNC-42-DONE", CMD_TIMEOUT, h.COMMAND_FAILED, "sync did not finish")
        os.kill(vm.pid, signal.SIGKILL)
        vm.proc.wait(timeout=30)
        ok(flow + ": VMM killed with SIGKILL right after sync")
    except h.GuestFailure as e:
        report(flow, e)
        return
    finally:
        if vm:
            vm.close()
    copy = os.path.join(tmp, "after-kill.img")
    shutil.copy(img, copy)
    rc, text = fsck(copy, repair=True)  # replays the journal, as the next mount would
    check(flow + ": journal replays", rc in (0, 1), "e2fsck -fy exited %d: %s" % (rc, text[-300:]))
    rc, text = fsck(copy)
    check(flow + ": e2fsck -fn clean after the kill", rc == 0, "exit %d: %s" % (rc, text[-300:]))
    check(flow + ": guest file intact", debugfs_cat(copy, "/guest.txt") ==
          b"written by the guest\n", "guest.txt")
    check(flow + ": payload bytes intact", debugfs_cat(copy, "/payload.bin") == payload[:4096],
          "payload.bin differs")
    check(flow + ": random file intact", hashlib.md5(debugfs_cat(copy, "/random.bin"))
          .hexdigest() == guest_md5, "md5 differs from the guest's")


def flow_vconsole(img):
    flow = "virtio/vconsole-poweroff"
    argv = h.kumo_argv(kernel=KERNEL, initrd=INITRD, append="console=ttyS0 console=hvc0",
                       extra=["--console", "virtio", "--disk", "path=%s" % img])
    vm = None
    try:
        vm = boot("vconsole", argv)
        ok(flow + ": shell on hvc0")
        r = lambda cmd, **kw: vm.run(cmd, timeout=CMD_TIMEOUT, **kw)  # noqa: E731
        check(flow + ": console is hvc0", "hvc0" in r("cat /sys/class/tty/console/active"),
              "active console")
        r("mkdir -p /mnt/a && mount -t ext4 /dev/vda /mnt/a")
        r("seq 1 5000 > /mnt/a/seq.txt && echo second boot > /mnt/a/second.txt")
        vm.poweroff(command="poweroff", timeout=CMD_TIMEOUT)
        ok(flow + ": powered off with exit 0")
    except h.GuestFailure as e:
        report(flow, e)
        return
    finally:
        if vm:
            vm.close()
    rc, text = fsck(img)
    check(flow + ": e2fsck -fn clean", rc == 0, "exit %d: %s" % (rc, text[-300:]))
    want = "".join("%d\n" % i for i in range(1, 5001)).encode()
    check(flow + ": files intact", debugfs_cat(img, "/seq.txt") == want and
          debugfs_cat(img, "/second.txt") == b"second boot\n", "seq.txt/second.txt differ")


def main():
    global KERNEL, INITRD
    if not shutil.which("mkfs.ext4") or not shutil.which("debugfs"):
        not_ok("virtio/disk", "mkfs.ext4 and debugfs (e2fsprogs) are needed")
        return 1
    try:
        img = h.default_image()
    except RuntimeError as e:
        not_ok("virtio/disk: guest image", str(e))
        return 1
    KERNEL, INITRD = img["kernel"], img["initramfs"]
    with tempfile.TemporaryDirectory(prefix="kumo-virtio-") as tmp:
        disk = os.path.join(tmp, "disk.img")
        make_image(disk, {"hello.txt": b"hello from the host\n"})
        flow_sigkill(disk, tmp)
        disk2 = os.path.join(tmp, "disk2.img")
        make_image(disk2, {"hello.txt": b"hello from the host\n"})
        flow_vconsole(disk2)
    return 1 if _tap.failures else 0


if __name__ == "__main__":
    sys.exit(main())
