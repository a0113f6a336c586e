#!/usr/bin/env python3
"""Snapshots of a Linux guest with virtio devices: a disk and user-mode networking (TAP).

The default Debian guest boots with 2 vCPUs, --disk, --net user and --api-sock. Checks:
  before     the guest reads a marker from /dev/vda and gets a DHCP lease on eth0
  snapshot   of the paused VM (virtio-mmio and virtqueue state in devices.bin)
  restore    in a new process: the disk still reads (a different sector: no cached page) and
             takes a write, DHCP on the network works again
  clone      `--restore DIR --disk path=COPY`: a clone on its own copy of the disk sees the
             copy's content and writes go to the copy only; a clone with the wrong number of
             disks is refused with one line
  diff       after disk DMA (O_DIRECT reads into user memory) and network RX (DHCP), with a
             shell loop storing on the other vCPU meanwhile, a diff snapshot on top of the full
             one equals a full snapshot of the same moment (both harts' stores are logged:
             every hart re-arms its TLB's not-dirty flags), and the diff chain restores to a
             guest that still reads its disk

Environment: KUMO_BIN, KUMO_TEST_BOOT_TIMEOUT (default 240 s).
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness as h  # noqa: E402
import kumoapi as api  # noqa: E402
_tap = h.Tap("")
ok, not_ok = _tap.ok, _tap.not_ok

BOOT_TIMEOUT = h.env_seconds("KUMO_TEST_BOOT_TIMEOUT", 240)
SECTOR = 512


def make_disk(path, tag):
    with open(path, "wb") as f:
        f.truncate(16 << 20)
        for n in (1, 2, 3):  # marker strings in sectors 8, 16, 24 (one per phase)
            f.seek(8 * n * SECTOR)
            f.write(f"{tag}-{n}-END".encode())


def read_marker(con, n):
    """The marker in sector 8n, read with O_DIRECT so no page cache can answer."""
    out = con.run(f"dd if=/dev/vda bs=512 skip={8 * n} count=1 iflag=direct 2>/dev/null | head -c 12; echo", timeout=60)
    return out.strip()[-12:]


def dhcp(con):
    out = con.run("ip link set eth0 up; udhcpc -i eth0 -n -q -t 5 -s /bin/true 2>&1 | tail -2", timeout=90, check=False)
    return "10.0.2.15" in out, out


def main():
    try:
        img = h.default_image()
    except RuntimeError as e:
        print(f"not ok - virtio snapshot: setup: {e}")
        return 1
    tmp = tempfile.mkdtemp(prefix="kumo-vsnap-")
    sock = os.path.join(tmp, "api.sock")
    snap = os.path.join(tmp, "snap")
    disk, copy = os.path.join(tmp, "disk.img"), os.path.join(tmp, "copy.img")
    make_disk(disk, "ORIGINAL")
    cons = []
    try:
        # init_on_alloc=0: Debian's kernel otherwise zeroes every page it allocates, so the
        # vCPU (not the device) would be the first to write the page cache the disk fills.
        con = h.Console(h.kumo_argv(img["kernel"], img["initramfs"], "console=ttyS0 init_on_alloc=0", mem="256M",
                                    cpus=2, extra=["--api-sock", sock, "--disk", f"path={disk}", "--net", "user"]),
                        name="original")
        cons.append(con)
        try:
            con.boot(BOOT_TIMEOUT)
            m1 = read_marker(con, 1)
            got, out = dhcp(con)
        except h.GuestFailure as e:
            not_ok("virtio: boot", str(e), e.report())
            return 1
        if m1 == "ORIGINAL-1-E" and got:
            ok("virtio: the guest reads its disk and gets a DHCP lease")
        else:
            not_ok("virtio: before", f"marker {m1!r}, dhcp {out!r}")

        st, body = api.snapshot_paused(sock, snap)
        if st != 204:
            not_ok("virtio: snapshot", f"{st} {body}")
            return 1
        ok("virtio: snapshot of a paused VM with a disk and a network interface")
        # Device DMA while logging: the back ends write guest RAM with preadv/recv, which the
        # devices announce to the memory map (no vCPU store marks those pages).
        api.call(sock, "PATCH", "/vm", {"state": "running"})
        # A background loop keeps storing (on whichever hart the scheduler gives it).
        con.run("(i=0; while [ $i -lt 20000 ]; do i=$((i+1)); echo $i > /tmp/bg; done) & true", timeout=30)
        # Buffered reads of 8 MiB never read before: the page cache takes fresh pages, which
        # the guest has not written since the snapshot.
        dma = con.run("dd if=/dev/vda of=/dev/null bs=64k skip=64 count=128 2>&1 | tail -1", timeout=90, check=False)
        got2, out2 = dhcp(con)
        api.call(sock, "PATCH", "/vm", {"state": "paused"})
        sd, sf = snap + "-d", snap + "-f"
        st1, b1, _ = api.call(sock, "PUT", "/snapshot/create", {"snapshot_path": sd, "snapshot_type": "diff"})
        st2, b2, _ = api.call(sock, "PUT", "/snapshot/create", {"snapshot_path": sf})
        if st1 != 204 or st2 != 204 or "128+0 records out" not in dma or not got2:
            not_ok("virtio: diff", f"diff {st1} {b1}, full {st2} {b2}, dd {dma!r}, dhcp {out2!r}")
        else:
            same, detail = api.diff_equals_full(snap, sd, sf)
            if same:
                ok(f"virtio: after disk DMA and network RX, parent + diff ({detail}) == a full snapshot of the same moment")
            else:
                not_ok("virtio: diff same as full", detail)
        con.kill()
        shutil.copy(disk, copy)
        with open(copy, "r+b") as f:
            f.seek(16 * SECTOR)
            f.write(b"THECOPY!-2-E")

        r = h.Console([h.kumo_bin(), "run", "--restore", snap], name="restored")
        cons.append(r)
        try:
            r.prompt_after_restore()
            m2 = read_marker(r, 2)
            r.run("echo RESTORED-W > /tmp/w; dd if=/tmp/w of=/dev/vda bs=512 seek=40 conv=notrunc,fsync 2>/dev/null")
            got, out = dhcp(r)
        except h.GuestFailure as e:
            not_ok("virtio: restore", str(e), e.report())
            return 1
        with open(disk, "rb") as f:
            f.seek(40 * SECTOR)
            written = f.read(10)
        if m2 == "ORIGINAL-2-E" and written == b"RESTORED-W":
            ok("virtio: the restored guest reads and writes its disk")
        else:
            not_ok("virtio: restored disk", f"read {m2!r}, host sees {written!r}")
        if got:
            ok("virtio: the restored guest gets a DHCP lease again")
        else:
            not_ok("virtio: restored network", f"{out!r}")
        r.close()

        c = h.Console([h.kumo_bin(), "run", "--restore", snap, "--disk", f"path={copy}", "--net", "user"], name="clone")
        cons.append(c)
        try:
            c.prompt_after_restore()
            m2 = read_marker(c, 2)
            c.run("echo CLONEWRITE > /tmp/w; dd if=/tmp/w of=/dev/vda bs=512 seek=48 conv=notrunc,fsync 2>/dev/null")
        except h.GuestFailure as e:
            not_ok("virtio: clone", str(e), e.report())
            return 1
        with open(copy, "rb") as f:
            f.seek(48 * SECTOR)
            in_copy = f.read(10)
        with open(disk, "rb") as f:
            f.seek(48 * SECTOR)
            in_orig = f.read(10)
        if m2 == "THECOPY!-2-E" and in_copy == b"CLONEWRITE" and in_orig != b"CLONEWRITE":
            ok("virtio: a clone restored with --disk path=COPY uses its own disk")
        else:
            not_ok("virtio: clone disk", f"read {m2!r}, copy {in_copy!r}, original {in_orig!r}")
        c.close()
        p = subprocess.run([h.kumo_bin(), "run", "--restore", snap, "--disk", f"path={copy}", "--disk", f"path={disk}"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        lines = p.stderr.strip().splitlines()
        if p.returncode == 1 and len(lines) == 1 and "replaces all" in lines[0]:
            ok("virtio: a clone with the wrong number of disks is refused")
        else:
            not_ok("virtio: clone disk count", f"{p.returncode} {lines}")
    finally:
        for c in cons:
            c.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if _tap.failures else 0


if __name__ == "__main__":
    sys.exit(main())
