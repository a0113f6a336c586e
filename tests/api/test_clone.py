#!/usr/bin/env python3
"""Clones get their own network identity inside the guest (docs/guest-agent.md).

The Debian guest boots from a copy of the ext4 root disk (guest/rootfs.sh: its rcS takes a
DHCP lease and starts guest/kumo-agent) with --net user and --api-sock. Checks:
  agent      on a fresh boot the guest agent says hello over its virtio-console channel
             (GET /vm agent.state "connected", its interfaces list eth0 with the device's MAC)
  snapshot   of the paused VM; the manifest records the agent channel
  clones     two clones of that one snapshot run side by side, each restored with
             --disk path=OWN_COPY --net user,mac=OWN_MAC. In each:
               - GET /vm reports the NIC's mac_change "done" and guest_mac = its own MAC
               - inside the guest /sys/class/net/eth0/address is its own MAC (without the
                 agent it would still be the snapshot's: virtio_net keeps the MAC it read at
                 probe time)
               - the network still works: a fresh DHCP lease with the new MAC, and a page from
                 the host's HTTP server through slirp
               - GET /agent answers (liveness)
  vmgenid    every clone is a new VM generation: GET /vm generation_id differs from the
             original's and between the clones, each guest kernel took the notification
             (dmesg "crng reseeded due to virtual machine fork", one vmgenid interrupt), and
             16 bytes of /dev/urandom differ between the clones
  same MAC   a clone restored without --net keeps the snapshot's MAC: mac_change "none"

Environment: KUMO_BIN, KUMO_TEST_BOOT_TIMEOUT (default 300 s).
"""
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "net"))
import harness as h  # noqa: E402
import kumoapi as api  # noqa: E402
from test_net import rootfs_image, start_http  # noqa: E402

_tap = h.Tap("clone: ")
ok, not_ok = _tap.ok, _tap.not_ok

BOOT_TIMEOUT = h.env_seconds("KUMO_TEST_BOOT_TIMEOUT", 300)
SNAP_MAC = "52:54:00:12:34:56"  # kumo's default
CLONE_MACS = ("52:54:00:c1:00:01", "52:54:00:c1:00:02")


def main():
    try:
        img = h.default_image()
        rootfs = rootfs_image()
    except RuntimeError as e:
        not_ok("setup", str(e))
        return 1
    tmp = tempfile.mkdtemp(prefix="kumo-clone-")
    www, token, _ = h.make_www(tmp, "kumo-clone-page")
    srv = start_http(www)
    port = srv.server_address[1]
    snap = os.path.join(tmp, "snap")
    cons = []
    try:
        disk = os.path.join(tmp, "disk.ext4")
        shutil.copyfile(rootfs, disk)
        sock = os.path.join(tmp, "orig.sock")
        con = h.Console(h.kumo_argv(img["kernel"], img["initramfs"], "console=ttyS0 root=/dev/vda rw", mem="256M",
                                    extra=["--api-sock", sock, "--disk", f"path={disk}", "--net", "user"]),
                        name="original")
        cons.append(con)
        try:
            con.boot(BOOT_TIMEOUT)
        except h.GuestFailure as e:
            not_ok("boot", str(e), e.report())
            return 1
        if "KUMO-NET-OK 10.0.2.15/24" not in con.text():
            not_ok("boot", "the root disk's rcS got no DHCP lease", con.tail(10))
            return 1
        ag = api.wait_agent(sock, lambda a: a.get("state") == "connected" and a.get("interfaces"), 60)
        if ag and ag.get("state") == "connected" and (ag.get("interfaces") or {}).get("eth0") == SNAP_MAC \
                and api.agent_nic0(ag).get("mac_change") == "none":
            ok("the guest agent says hello on a fresh boot", f"{ag.get('version')}, eth0 {SNAP_MAC}")
        else:
            not_ok("agent on a fresh boot", f"GET /vm agent = {json.dumps(ag)}", [con.stderr_text()[-500:]])

        orig_gen = api.call(sock, "GET", "/vm")[1].get("generation_id")
        st, body = api.snapshot_paused(sock, snap)
        if st != 204:
            not_ok("snapshot", f"{st} {body}")
            return 1
        manifest = json.load(open(os.path.join(snap, "manifest.json")))
        if manifest["config"].get("agent") is True:
            ok("snapshot records the agent channel")
        else:
            not_ok("snapshot", f"manifest config {manifest['config']}")
        con.kill()

        # Two clones side by side, each with its own disk copy and MAC.
        clones, gens, rand = [], [], []
        for i, mac in enumerate(CLONE_MACS):
            d = os.path.join(tmp, f"clone{i}.ext4")
            shutil.copyfile(disk, d)
            s = os.path.join(tmp, f"clone{i}.sock")
            c = h.Console([h.kumo_bin(), "run", "--restore", snap, "--disk", f"path={d}", "--net", f"user,mac={mac}",
                           "--api-sock", s], name=f"clone{i}")
            cons.append(c)
            clones.append((c, s, mac))
        for i, (c, s, mac) in enumerate(clones):
            name = f"clone {i} ({mac})"
            if not api.wait_socket(s, c.proc, 30):
                not_ok(f"{name}: restore", "the API socket did not answer", [c.stderr_text()[-500:]])
                continue
            ag = api.wait_agent(s, lambda a: api.agent_nic0(a).get("mac_change") not in (None, "pending"), 120)
            n = api.agent_nic0(ag)
            if n.get("mac_change") == "done" and n.get("guest_mac") == mac and n.get("mac") == mac:
                ok(f"{name}: GET /vm says the guest took the new MAC", n.get("detail", ""))
            else:
                not_ok(f"{name}: GET /vm", f"agent = {json.dumps(ag)}", [c.stderr_text()[-800:]])
            gens.append(api.call(s, "GET", "/vm")[1].get("generation_id"))
            try:
                c.prompt_after_restore()
                rand.append(c.run("head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo").strip())
                fork = c.run("dmesg | grep -c 'crng reseeded due to virtual machine fork'; "
                             "awk '/vmgenid/ {print $2}' /proc/interrupts", check=False).split()
                addr = c.run("cat /sys/class/net/eth0/address").strip()
                lease = c.run("udhcpc -i eth0 -n -q -t 5 -T 2 -s /bin/true 2>&1 | tail -1", timeout=90, check=False)
                page = c.run(f"wget -q -T 20 -O - http://10.0.2.2:{port}/page.txt", timeout=90, check=False)
            except h.GuestFailure as e:
                not_ok(f"{name}: console", str(e), e.report())
                continue
            if fork == ["1", "1"]:
                ok(f"{name}: the guest kernel reseeded its RNG on the new VM generation")
            else:
                not_ok(f"{name}: vmgenid", f"reseed messages and vmgenid interrupts: {fork}")
            if addr == mac:
                ok(f"{name}: inside the guest eth0 has its own MAC", addr)
            else:
                not_ok(f"{name}: guest MAC", f"/sys/class/net/eth0/address is {addr!r}, want {mac}")
            if "lease of 10.0.2.15" in lease and token in page:
                ok(f"{name}: DHCP and HTTP through slirp work with the new MAC")
            else:
                not_ok(f"{name}: network", f"udhcpc {lease!r}, wget {page!r}")
            st, body, _ = api.call(s, "GET", "/agent", timeout=30)
            if st == 200 and isinstance(body, dict) and isinstance(body.get("rtt_us"), int):
                ok(f"{name}: GET /agent answers", f"{body['rtt_us']} us")
            else:
                not_ok(f"{name}: GET /agent", f"{st} {body}")
        if orig_gen and len(set(gens + [orig_gen])) == 3 and all(gens):
            ok("each clone has its own VM generation ID", f"{orig_gen} -> {gens}")
        else:
            not_ok("generation IDs", f"original {orig_gen}, clones {gens}")
        if len(rand) == 2 and rand[0] != rand[1] and all(len(r) == 32 for r in rand):
            ok("/dev/urandom differs between the clones")
        else:
            not_ok("urandom", f"{rand}")
        running = [c.proc.poll() is None for c, _, _ in clones]
        if all(running):
            ok("two clones of one snapshot ran side by side")
        else:
            not_ok("side by side", f"running: {running}")
        for c, _, _ in clones:
            c.close()

        # A clone that keeps the snapshot's NIC: nothing to change.
        d = os.path.join(tmp, "same.ext4")
        shutil.copyfile(disk, d)
        s = os.path.join(tmp, "same.sock")
        c = h.Console([h.kumo_bin(), "run", "--restore", snap, "--disk", f"path={d}", "--api-sock", s], name="same")
        cons.append(c)
        ag = api.wait_agent(s, lambda a: a.get("state") == "connected", 60) if api.wait_socket(s, c.proc, 30) else None
        n = api.agent_nic0(ag)
        if ag and ag.get("state") == "connected" and n.get("mac_change") == "none" and n.get("guest_mac") == SNAP_MAC:
            ok("a clone without a new MAC keeps the snapshot's", SNAP_MAC)
        else:
            not_ok("same MAC", f"agent = {json.dumps(ag)}")
        c.close()
    finally:
        for c in cons:
            c.close()
        srv.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if _tap.failures else 0


if __name__ == "__main__":
    sys.exit(main())
