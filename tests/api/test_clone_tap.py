#!/usr/bin/env python3
"""Clones on TAP networking show their own MAC on the wire (docs/guest-agent.md).

As root (skipped otherwise, with an "ok - ... # SKIP" line), with one network namespace per
VM (kumo-clonetap-PID-N, each with a tap device ktap0 10.215.0.1/24, so nothing touches the
host's networking):
  original   the default Debian guest (initramfs) boots in namespace 0 with
             --net tap,ifname=ktap0; the test gives eth0 10.215.0.2/24 from the console,
             pings the namespace, and pauses and snapshots the VM
  clones     two clones of that snapshot, each in its own namespace with
             --net tap,ifname=ktap0,mac=OWN_MAC, run side by side. In each: the agent reports
             the change done, inside the guest eth0 has its own MAC, the namespace pings the
             guest and its neighbour (ARP) table holds the guest's address with the clone's
             MAC, i.e. the frames on the wire carry the new source address (without the
             agent they carry the snapshot's MAC)

Environment: KUMO_BIN, KUMO_TEST_BOOT_TIMEOUT (default 300 s).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "net"))
import harness as h  # noqa: E402
import kumoapi as api  # noqa: E402

_tap = h.Tap("clone/tap: ")
ok, not_ok = _tap.ok, _tap.not_ok

BOOT_TIMEOUT = h.env_seconds("KUMO_TEST_BOOT_TIMEOUT", 300)
NS_PREFIX = "kumo-clonetap-"
TAP = "ktap0"
HOST_ADDR = "10.215.0.1"
GUEST_ADDR = "10.215.0.2"
SNAP_MAC = "52:54:00:12:34:56"
CLONE_MACS = ("52:54:00:c2:00:01", "52:54:00:c2:00:02")
TAP_TEST = os.path.join(HERE, "..", "net", "test_tap.py")  # its --ping helper (ICMP echo)


def ns_ping(ns, count=2):
    return h.netns_exec(ns, sys.executable, TAP_TEST, "--ping", GUEST_ADDR, str(count), timeout=120)[1].strip()


def ns_neigh(ns):
    """The namespace's ARP entry for the guest: its MAC or ''."""
    out = h.ip("-n", ns, "neigh", "show", GUEST_ADDR, "dev", TAP)
    m = re.search(r"lladdr ([0-9a-f:]{17})", out)
    return m.group(1) if m else ""


def main():
    why = h.netns_unavailable()
    if why:
        print(f"ok - clone/tap # SKIP {why}", flush=True)
        return 0
    try:
        img = h.default_image()
    except RuntimeError as e:
        not_ok("setup", str(e))
        return 1
    h.netns_sweep(NS_PREFIX, TAP)
    names = [f"{NS_PREFIX}{os.getpid()}-{i}" for i in range(3)]
    tmp = tempfile.mkdtemp(prefix="kumo-clonetap-")
    snap = os.path.join(tmp, "snap")
    cons = []
    try:
        try:
            for ns in names:
                h.netns_create(ns, TAP, f"{HOST_ADDR}/24")
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            not_ok("namespaces", str(e))
            return 1
        sock = os.path.join(tmp, "orig.sock")
        con = h.Console(["ip", "netns", "exec", names[0]] +
                        h.kumo_argv(img["kernel"], img["initramfs"], "console=ttyS0", mem="256M",
                                    extra=["--api-sock", sock, "--net", f"tap,ifname={TAP}"]), name="original")
        cons.append(con)
        try:
            con.boot(BOOT_TIMEOUT)
            con.run(f"ip addr add {GUEST_ADDR}/24 dev eth0; ip link set eth0 up")
        except h.GuestFailure as e:
            not_ok("boot", str(e), e.report())
            return 1
        got = ns_ping(names[0])
        if got == "2" and ns_neigh(names[0]) == SNAP_MAC:
            ok("the original answers on its tap with the snapshot's MAC", SNAP_MAC)
        else:
            not_ok("original", f"{got} of 2 pings, neighbour {ns_neigh(names[0])!r}")
        st, body = api.snapshot_paused(sock, snap)
        if st != 204:
            not_ok("snapshot", f"{st} {body}")
            return 1
        con.kill()

        clones = []
        for i, mac in enumerate(CLONE_MACS):
            s = os.path.join(tmp, f"clone{i}.sock")
            c = h.Console(["ip", "netns", "exec", names[i + 1], h.kumo_bin(), "run", "--restore", snap,
                           "--net", f"tap,ifname={TAP},mac={mac}", "--api-sock", s], name=f"clone{i}")
            cons.append(c)
            clones.append((c, s, mac, names[i + 1]))
        for i, (c, s, mac, ns) in enumerate(clones):
            name = f"clone {i} ({mac})"
            ag = None
            if api.wait_socket(s, c.proc, 30):
                ag = api.wait_agent(s, lambda a: api.agent_nic0(a).get("mac_change") not in (None, "pending"), 120)
            n = api.agent_nic0(ag)
            if n.get("mac_change") == "done" and n.get("guest_mac") == mac:
                ok(f"{name}: the agent changed the guest's MAC", n.get("detail", ""))
            else:
                not_ok(f"{name}: agent", f"GET /vm agent = {json.dumps(ag)}", [c.stderr_text()[-800:]])
            try:
                c.prompt_after_restore()
                addr = c.run("cat /sys/class/net/eth0/address").strip()
            except h.GuestFailure as e:
                not_ok(f"{name}: console", str(e), e.report())
                continue
            got = ns_ping(ns)
            neigh = ns_neigh(ns)
            if addr == mac and got == "2" and neigh == mac:
                ok(f"{name}: eth0, and the ARP entry on its tap, carry its own MAC", neigh)
            else:
                not_ok(f"{name}: on the wire", f"guest eth0 {addr!r}, {got} of 2 pings, neighbour {neigh!r}, want {mac}")
        running = [c.proc.poll() is None for c, _, _, _ in clones]
        if all(running):
            ok("two clones ran side by side, each in its own namespace")
        else:
            not_ok("side by side", f"running: {running}")
    finally:
        for c in cons:
            c.close()
        for ns in names:
            h.netns_delete(ns, TAP)
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if _tap.failures else 0


if __name__ == "__main__":
    sys.exit(main())
