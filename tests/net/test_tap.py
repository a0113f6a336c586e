#!/usr/bin/env python3
"""TAP back end test: `kumo run --net tap,ifname=ktap0` with the tap device in a network
namespace of its own, so no packet touches the host's real networking.

As root (skipped otherwise, with an "ok - ... # SKIP" line) the test
- creates the namespace kumo-tap-PID (a crashed run's kumo-tap-* namespaces whose PID is gone
  are deleted first; this run's goes in a finally block) and in it the tap device ktap0 with
  10.214.0.1/24, up;
- starts a Python HTTP server on 10.214.0.1:8080 inside the namespace;
- boots the Debian guest from a copy of the ext4 root disk (guest/rootfs.sh) with kumo running
  inside the namespace. The disk's rcS asks for a DHCP lease, which nobody on the tap side
  answers, so the test configures the guest over the console: 10.214.0.2/24 on eth0;
- pings both ways (busybox ping in the guest; from the namespace an ICMP echo over a raw socket,
  this script run with --ping, as the host has no ping command of its own), fetches a page and a
  1 MiB file (md5) from the namespace's HTTP server with the guest's wget, and fetches a page
  from busybox httpd in the guest from the namespace (this script with --get);
- deletes the tap device under the running VM: the VMM must warn and stay idle, not spin.
TAP lines: ok/not ok - net/tap/... .
Environment: KUMO_TEST_BOOT_TIMEOUT (seconds, default 300).
"""
import hashlib
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("KUMO_ROOT") or os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
from test_net import rootfs_image  # noqa: E402
_tap = harness.Tap("net/tap/")
ok, not_ok = _tap.ok, _tap.not_ok

NS_PREFIX = "kumo-tap-"
TAP = "ktap0"
HOST_ADDR = "10.214.0.1"
GUEST_ADDR = "10.214.0.2"
HTTP_PORT = 8080


# --- helpers this script runs as inside the namespace ---------------------------------------
def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def icmp_ping(addr, count, timeout=5.0):
    """ICMP echo requests (RFC 792) over a raw socket; returns how many replies came back."""
    ident = os.getpid() & 0xFFFF
    got = 0
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        for seq in range(1, count + 1):
            payload = b"kumo-tap-ping" + struct.pack("!d", time.time())
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            pkt = struct.pack("!BBHHH", 8, 0, _checksum(hdr + payload), ident, seq) + payload
            s.sendto(pkt, (addr, 0))
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                s.settimeout(left)
                try:
                    data, src = s.recvfrom(2048)
                except socket.timeout:
                    break
                ihl = (data[0] & 0x0F) * 4  # the raw socket hands us the IP header too
                if src[0] != addr or len(data) < ihl + 8:
                    continue
                typ, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl : ihl + 8])
                if typ == 0 and rid == ident and rseq == seq:
                    got += 1
                    break
            time.sleep(0.2)
    return got


def helper_main(argv):
    if argv[0] == "--ping":
        print(icmp_ping(argv[1], int(argv[2])))
        return 0
    if argv[0] == "--get":
        last = None
        for _ in range(10):
            try:
                with urllib.request.urlopen(argv[1], timeout=10) as r:
                    sys.stdout.write(r.read().decode("utf-8", "replace"))
                    return 0
            except OSError as e:
                last = e
                time.sleep(1)
        print(f"{argv[1]}: {last}", file=sys.stderr)
        return 1
    if argv[0] == "--wait-port":
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection((argv[1], int(argv[2])), timeout=2).close()
                return 0
            except OSError:
                time.sleep(0.2)
        return 1
    print(f"unknown helper mode {argv[0]}", file=sys.stderr)
    return 2


# --- the test -----------------------------------------------------------------------------------
def guest_checks(vm, ns, token, blob):
    vm.run(f"ip addr add {GUEST_ADDR}/24 dev eth0; ip link set eth0 up")
    ok("guest-address", f"eth0 {GUEST_ADDR}/24 set from the console")

    out = vm.run(f"ping -c 3 -W 5 {HOST_ADDR}", timeout=90, check=False)
    m = re.search(r"(\d+) packets transmitted, (\d+) packets received", out)
    if m and m.group(2) == "3":
        ok("guest-ping", f"3/3 replies from {HOST_ADDR}")
    else:
        not_ok("guest-ping", f"busybox ping: {out.strip()[-200:]!r}", vm.tail(5))

    rc, out, err = harness.netns_exec(ns, sys.executable, os.path.abspath(__file__), "--ping", GUEST_ADDR, "3")
    if rc == 0 and out.strip() == "3":
        ok("host-ping", f"3/3 replies from {GUEST_ADDR} (ICMP echo from the namespace)")
    else:
        not_ok("host-ping", f"{out.strip() or '?'} of 3 replies (status {rc}) {err.strip()[-200:]}")

    page = vm.run(f"wget -q -T 20 -O - http://{HOST_ADDR}:{HTTP_PORT}/page.txt", timeout=90, check=False)
    if f"kumo-tap-page {token}" in page:
        ok("guest-to-host-http", f"busybox wget from {HOST_ADDR}:{HTTP_PORT}")
    else:
        not_ok("guest-to-host-http", f"got {page.strip()[:200]!r}")

    want = hashlib.md5(blob).hexdigest()
    t0 = time.monotonic()
    got = vm.run(f"wget -q -T 60 -O - http://{HOST_ADDR}:{HTTP_PORT}/blob.bin | md5sum", timeout=300, check=False)
    if want in got:
        ok("bulk-download", f"1 MiB intact in {time.monotonic() - t0:.1f} s")
    else:
        not_ok("bulk-download", f"md5 {got.strip()[:80]!r}, expected {want}")

    vm.run(f"echo kumo-tap-guest {token} > /var/www/tap.txt && httpd -p {HTTP_PORT} -h /var/www")
    rc, out, err = harness.netns_exec(ns, sys.executable, os.path.abspath(__file__), "--get",
                                      f"http://{GUEST_ADDR}:{HTTP_PORT}/tap.txt", timeout=120)
    if rc == 0 and f"kumo-tap-guest {token}" in out:
        ok("host-to-guest-http", f"namespace -> guest httpd {GUEST_ADDR}:{HTTP_PORT}")
    else:
        not_ok("host-to-guest-http", f"status {rc}: {(out + err).strip()[-200:]!r}")


def tap_deleted(vm, ns):
    """The interface deleted under a running VM: the VMM warns once and does not spin on the fd
    (the tun driver then reports POLLERR forever); the guest keeps running."""
    harness.ip("-n", ns, "link", "del", TAP)
    time.sleep(1)
    c0 = harness.proc_cpu_seconds(vm.pid)
    time.sleep(3)
    busy = (harness.proc_cpu_seconds(vm.pid) - c0) / 3
    out = vm.run(f"ping -c 1 -W 2 {HOST_ADDR} >/dev/null; echo alive", check=False)
    warned = "is gone" in vm.stderr_text()
    if busy < 0.5 and out.strip().endswith("alive") and warned:
        ok("tap-deleted", f"VMM at {busy * 100:.0f}% CPU with the guest idle, warning logged, guest alive")
    else:
        not_ok("tap-deleted", f"VMM at {busy * 100:.0f}% CPU, warning {'logged' if warned else 'missing'}, "
               f"console {out.strip()[-80:]!r}")


def main():
    why = harness.netns_unavailable()
    if why:
        print(f"ok - net/tap # SKIP {why}", flush=True)
        return 0
    boot_timeout = harness.env_seconds("KUMO_TEST_BOOT_TIMEOUT", 300)
    try:
        image = harness.default_image()
        disk_src = rootfs_image()
    except RuntimeError as e:
        not_ok("image", str(e))
        return 1

    harness.netns_sweep(NS_PREFIX, TAP)
    ns = f"{NS_PREFIX}{os.getpid()}"
    server = None
    with tempfile.TemporaryDirectory(prefix="kumo-tap-") as tmp:
        try:
            try:
                harness.netns_create(ns, TAP, f"{HOST_ADDR}/24")
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                not_ok("namespace", str(e))
                return 1
            ok("namespace", f"{ns} with {TAP} {HOST_ADDR}/24")

            disk = os.path.join(tmp, "rootfs.ext4")
            shutil.copyfile(disk_src, disk)
            www, token, blob = harness.make_www(tmp, "kumo-tap-page")
            server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", "--bind",
                                       HOST_ADDR, "--directory", www, str(HTTP_PORT)],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rc, _, _ = harness.netns_exec(ns, sys.executable, os.path.abspath(__file__), "--wait-port", HOST_ADDR,
                                          str(HTTP_PORT))
            if rc != 0:
                not_ok("http-server", f"no HTTP server on {HOST_ADDR}:{HTTP_PORT} in {ns}")
                return 1

            argv = ["ip", "netns", "exec", ns] + harness.kumo_argv(
                kernel=image["kernel"], initrd=image["initramfs"], append="console=ttyS0 root=/dev/vda rw",
                extra=["--disk", f"path={disk}", "--net", f"tap,ifname={TAP}"])
            vm = harness.Console(argv, name="kumo-tap", log_path=os.path.join(tmp, "console.log"))
            try:
                t = vm.boot(timeout=boot_timeout)
                ok("boot", f"marker after {t:.1f} s, kumo inside {ns}")
                if "KUMO-ROOTFS-OK" not in vm.text():
                    not_ok("rootfs", "no KUMO-ROOTFS-OK: the initramfs did not switch to the disk")
                guest_checks(vm, ns, token, blob)
                tap_deleted(vm, ns)
                vm.poweroff("poweroff")
                ok("poweroff")
            except harness.GuestFailure as e:
                not_ok(e.phase.replace(" ", "-"), e.detail, e.report())
            finally:
                vm.close()
        finally:
            if server is not None:
                server.terminate()
                try:
                    server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            harness.netns_delete(ns, TAP)
    return 1 if _tap.failures else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("--"):
        sys.exit(helper_main(sys.argv[1:]))
    sys.exit(main())
