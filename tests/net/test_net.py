#!/usr/bin/env python3
"""Network test: the Debian guest booted from the ext4 root disk (guest/rootfs.sh) with
`--net user,hostfwd=tcp:127.0.0.1:PORT-:8080` (virtio-net over libslirp).

- the guest gets 10.0.2.15 by DHCP (busybox udhcpc in the disk's init) and a default route;
- it fetches a page, and a 1 MiB file checked by md5, from an HTTP server this test runs on
  the host's loopback (10.0.2.2 from the guest);
- a host client reaches busybox httpd inside the guest through the port forward;
- `kumo run` refuses a malformed --net option and a forwarded port that is in use with one
  error line (no boot needed).
All traffic stays on the host's loopback. TAP lines: ok/not ok - net/... .
Environment: KUMO_TEST_BOOT_TIMEOUT (seconds, default 300).
"""
import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("KUMO_ROOT") or os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
_tap = harness.Tap("net/")
ok, not_ok = _tap.ok, _tap.not_ok


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass


def start_http(directory):
    handler = lambda *a, **kw: QuietHandler(*a, directory=directory, **kw)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def rootfs_image():
    p = subprocess.run(["bash", os.path.join(ROOT, "guest", "rootfs.sh"), "--quiet"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    if p.returncode != 0:
        raise RuntimeError((p.stderr.strip().splitlines() or ["guest/rootfs.sh failed"])[-1])
    for line in p.stdout.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "rootfs" and os.path.isfile(value.strip()):
            return value.strip()
    raise RuntimeError(f"guest/rootfs.sh printed no image path: {p.stdout.strip()!r}")


def cli_errors(image):
    """Bad --net values fail before the guest runs, with one line on stderr."""
    base = [harness.kumo_bin(), "run", "--kernel", image["kernel"], "--initrd", image["initramfs"]]
    cases = [("bad-option", ["--net", "user,hostfwd=tcp::99999-:22"], "hostfwd"),
             ("bad-type", ["--net", "bridge"], "unknown type")]
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    busy = holder.getsockname()[1]
    cases.append(("port-in-use", ["--net", f"user,hostfwd=tcp:127.0.0.1:{busy}-:22"], "in use"))
    try:
        for name, extra, words in cases:
            try:
                p = subprocess.run(base + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, text=True, timeout=60)
            except subprocess.TimeoutExpired:
                not_ok(f"cli/{name}", "kumo run did not fail within 60 s")
                continue
            lines = p.stderr.strip().splitlines()
            if p.returncode == 1 and len(lines) == 1 and words in lines[0] and lines[0].startswith("kumo: "):
                ok(f"cli/{name}", lines[0])
            else:
                not_ok(f"cli/{name}", f"status {p.returncode}, stderr {p.stderr.strip()!r}")
    finally:
        holder.close()


def host_get(url, attempts=10):
    last = None
    for _ in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.read().decode("utf-8", "replace")
        except OSError as e:
            last = e
            time.sleep(1)
    raise OSError(f"{url}: {last}")


def main():
    boot_timeout = harness.env_seconds("KUMO_TEST_BOOT_TIMEOUT", 300)
    try:
        image = harness.default_image()
        disk_src = rootfs_image()
    except RuntimeError as e:
        not_ok("image", str(e))
        return 1
    cli_errors(image)

    with tempfile.TemporaryDirectory(prefix="kumo-net-") as tmp:
        disk = os.path.join(tmp, "rootfs.ext4")
        shutil.copyfile(disk_src, disk)
        www, token, blob = harness.make_www(tmp, "kumo-host-page")
        srv = start_http(www)
        http_port = srv.server_address[1]
        fwd_port = free_port()
        argv = harness.kumo_argv(kernel=image["kernel"], initrd=image["initramfs"],
                                 append="console=ttyS0 root=/dev/vda rw",
                                 extra=["--disk", f"path={disk}",
                                        "--net", f"user,hostfwd=tcp:127.0.0.1:{fwd_port}-:8080"])
        vm = harness.Console(argv, name="kumo-net", log_path=os.path.join(tmp, "console.log"))
        try:
            t = vm.boot(timeout=boot_timeout)
            text = vm.text()
            ok("boot", f"marker after {t:.1f} s")
            if "KUMO-ROOTFS-OK" in text:
                ok("rootfs", "/ is the ext4 disk")
            else:
                not_ok("rootfs", "no KUMO-ROOTFS-OK: the initramfs did not switch to the disk")
            if "KUMO-NET-OK 10.0.2.15/24" in text:
                ok("dhcp", "eth0 10.0.2.15/24")
            else:
                line = next((l for l in text.splitlines() if "KUMO-NET" in l), "no KUMO-NET line")
                not_ok("dhcp", line, vm.tail(10))
            route = vm.run("ip route show default")
            if "via 10.0.2.2" in route:
                ok("route", route.strip().splitlines()[0].strip())
            else:
                not_ok("route", f"no default route via 10.0.2.2: {route!r}")

            page = vm.run(f"wget -q -T 20 -O - http://10.0.2.2:{http_port}/page.txt", timeout=90, check=False)
            if f"kumo-host-page {token}" in page:
                ok("guest-to-host-http", "busybox wget through slirp")
            else:
                not_ok("guest-to-host-http", f"got {page.strip()[:200]!r}")

            want = hashlib.md5(blob).hexdigest()
            t0 = time.monotonic()
            got = vm.run(f"wget -q -T 60 -O - http://10.0.2.2:{http_port}/blob.bin | md5sum", timeout=300,
                         check=False)
            secs = time.monotonic() - t0
            if want in got:
                ok("bulk-download", f"1 MiB intact in {secs:.1f} s")
            else:
                not_ok("bulk-download", f"md5 {got.strip()[:80]!r}, expected {want}")

            vm.run(f"echo kumo-guest-page {token} > /var/www/guest.txt && httpd -p 8080 -h /var/www")
            try:
                body = host_get(f"http://127.0.0.1:{fwd_port}/guest.txt")
                if f"kumo-guest-page {token}" in body:
                    ok("host-to-guest-forward", f"127.0.0.1:{fwd_port} -> guest :8080")
                else:
                    not_ok("host-to-guest-forward", f"got {body.strip()[:200]!r}")
            except OSError as e:
                not_ok("host-to-guest-forward", str(e))

            vm.poweroff("poweroff")
            ok("poweroff")
        except harness.GuestFailure as e:
            not_ok(e.phase.replace(" ", "-"), e.detail, e.report())
        finally:
            vm.close()
            srv.shutdown()
    return 1 if _tap.failures else 0


if __name__ == "__main__":
    sys.exit(main())
