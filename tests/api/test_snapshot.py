#!/usr/bin/env python3
"""Pause, resume, snapshot and restore of a real Linux guest through the control API (TAP).

The default Debian guest boots with --api-sock and runs a busy counter loop that prints every
STEP-th value on the console. Checks:
  pause      the counter stops (no new lines) and the VMM's host CPU use drops to ~0
  resume     the counter continues with the next value; the guest clock did not jump
  snapshot   of the paused VM; the original process is then killed (SIGKILL)
  restore    `kumo run --restore DIR` in a new process prints exactly the next value first
  clones     two more processes restore the same snapshot side by side; both continue
  seip       a bare-metal guest (tests/guests/seip.S) snapshotted while the PLIC drives mip.SEIP
             sees SEIP fall with the line after the restore (the line is not saved as the
             software-writable bit)
  shell      the restored guest's shell still runs commands and sees the counter in /tmp/c
  refusals   a snapshot with a wrong version (also a format-1 diff with 2 MiB dirty chunks),
             a truncated memory file or corrupted device state is refused with one line and
             exit status 1

Environment: KUMO_BIN, KUMO_TEST_BOOT_TIMEOUT (default 240 s).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness as h  # noqa: E402
import kumoapi as api  # noqa: E402
_tap = h.Tap("")
ok, not_ok = _tap.ok, _tap.not_ok

STEP = 500
BOOT_TIMEOUT = h.env_seconds("KUMO_TEST_BOOT_TIMEOUT", 240)
# A complete counter line. The guest's console log level is lowered first, so no kernel
# message (a restore prints "crng reseeded") cuts into one.
COUNTER = re.compile(r"CNT(\d+)\n")


def counters(text):
    return [int(m.group(1)) for m in COUNTER.finditer(text)]


def last_counter(con):
    """(value, text after it) of the last complete counter line: a pause may stop the guest in
    the middle of writing the next line, which then ends after the resume or in a restored
    process (pass the text as wait_counter_after's prefix)."""
    text = con.text()
    m = list(COUNTER.finditer(text))[-1]
    return int(m.group(1)), text[m.end():]


def wait_counter_after(con, pos, timeout=60, prefix=""):
    """First counter value printed after text offset pos (prefix: text the line may start with)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        vals = counters(prefix + con.text()[pos:])
        if vals:
            return vals[0]
        if con.proc.poll() is not None:
            break
        time.sleep(0.05)
    return None


def patch_state(sock, state):
    st, body, _ = api.call(sock, "PATCH", "/vm", {"state": state})
    if st != 204:
        raise RuntimeError(f"PATCH /vm {state}: {st} {body}")


def instructions(metrics):
    """vCPU 0's instructions retired, from GET /metrics."""
    return metrics["kumo_vcpu_instructions_total"][0]["value"]


def restored_state(c, sock=None):
    """A one-line account of a restored process that printed nothing expected: for the TAP reason."""
    out = [ln for ln in c.text().splitlines() if ln.strip()]
    err = c.stderr_text().strip().splitlines()
    parts = [f"alive {c.proc.poll() is None}", f"last console line {out[-1][-80:]!r}" if out else "no console output"]
    if err:
        parts.append(f"stderr {err[-1][-120:]!r}")
    if sock and c.proc.poll() is None:
        try:
            m1 = api.call(sock, "GET", "/metrics", timeout=5)[1]
            time.sleep(0.5)
            m2 = api.call(sock, "GET", "/metrics", timeout=5)[1]
            parts.append(f"{instructions(m2) - instructions(m1)} instructions in 0.5 s")
            exits = {e["labels"].get("reason"): e["value"] for e in m2.get("kumo_vcpu_exits_total", [])}
            parts.append(f"exits {exits}")
        except (OSError, KeyError, IndexError, TypeError, ValueError) as e:
            parts.append(f"metrics unavailable ({e})")
    return "; ".join(parts)


def seip_snapshot(tmp, cons):
    """Snapshot while the PLIC drives mip.SEIP; the restored hart must see SEIP follow the line."""
    fw = os.path.join(h.ROOT, "build", "guests", "seip.bin")
    if not os.path.exists(fw):
        not_ok("seip: firmware", f"{fw} is not built (make test-programs)")
        return
    sock, snap = os.path.join(tmp, "seip.sock"), os.path.join(tmp, "seip-snap")
    c = h.Console([h.kumo_bin(), "run", "--bios", fw, "--mem", "64M", "--api-sock", sock], name="seip")
    cons.append(c)
    try:
        c.expect("mip.SEIP set", 30, "seip", "the firmware raising the UART's line")
        patch_state(sock, "paused")
        st, body, _ = api.call(sock, "PUT", "/snapshot/create", {"snapshot_path": snap})
    except (h.GuestFailure, RuntimeError, OSError) as e:
        not_ok("seip: snapshot", str(e), c.tail())
        return
    c.kill()
    if st != 204:
        not_ok("seip: snapshot", f"{st} {body}")
        return
    # A snapshot from before "mip_soft" kept the mip CSR as read, SEIP included.
    legacy = os.path.join(tmp, "seip-legacy")
    shutil.copytree(snap, legacy)
    mpath = os.path.join(legacy, "manifest.json")
    m = json.load(open(mpath))
    hart = m["harts"][0]
    hart["csr"]["0x344"] = hex(int(hart.pop("mip_soft"), 16) | 0x200)
    json.dump(m, open(mpath, "w"))
    for what, src in (("", snap), (" (a snapshot that stored mip as read)", legacy)):
        r = h.Console([h.kumo_bin(), "run", "--restore", src], name="seip-restore")
        cons.append(r)
        try:
            rc = r.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            rc = None
        if rc == 0 and "seip: line low, mip.SEIP clear" in r.text():
            ok(f"seip: snapshotted while the PLIC drove mip.SEIP, the restored hart sees SEIP follow the line (set while high, clear once it falls){what}")
        else:
            not_ok(f"seip: restored SEIP{what}", f"exit status {rc}; {restored_state(r)}")
        r.close()


def main():
    try:
        img = h.default_image()
    except RuntimeError as e:
        print(f"not ok - snapshot: setup: {e}")
        return 1
    tmp = tempfile.mkdtemp(prefix="kumo-snap-")
    sock = os.path.join(tmp, "api.sock")
    snap = os.path.join(tmp, "snap")
    cons = []
    try:
        seip_snapshot(tmp, cons)
        argv = h.kumo_argv(img["kernel"], img["initramfs"], "console=ttyS0", mem="256M",
                           extra=["--api-sock", sock])
        con = h.Console(argv, name="original")
        cons.append(con)
        try:
            con.boot(BOOT_TIMEOUT)
        except h.GuestFailure as e:
            not_ok("snapshot: boot", str(e), e.report())
            return 1
        ok("snapshot: guest booted with --api-sock")
        con.send("dmesg -n 1; i=0; while true; do i=$((i+1)); echo $i > /tmp/c; "
                 f"[ $((i % {STEP})) = 0 ] && echo CNT$i; done &\n")
        pos = len(con.text())
        first = wait_counter_after(con, pos, 120)
        if first is None:
            not_ok("snapshot: counter", "the counter loop printed nothing", con.tail())
            return 1
        time.sleep(1.0)

        # pause: the counter stops and the process uses ~no CPU
        st, vm, _ = api.call(sock, "GET", "/metrics")
        patch_state(sock, "paused")
        t_pause = time.monotonic()
        time.sleep(0.3)
        mark = len(con.text())
        cpu0 = h.proc_cpu_seconds(con.pid)
        time.sleep(2.0)
        cpu = h.proc_cpu_seconds(con.pid) - cpu0
        new = counters(con.text()[mark:])
        st, vm, _ = api.call(sock, "GET", "/vm")
        if new:
            not_ok("pause: counter stops", f"printed {new[:3]} while paused")
        elif cpu > 0.1:
            not_ok("pause: host CPU ~0", f"{cpu:.2f} s of CPU in 2 s while paused")
        elif vm.get("state") != "paused" or any(v["state"] != "paused" for v in vm["vcpus"]):
            not_ok("pause: state", f"GET /vm says {vm}")
        else:
            ok(f"pause: counter stopped, host CPU {cpu:.3f} s over 2 s, state paused")
        m1 = api.call(sock, "GET", "/metrics")[1]
        time.sleep(0.3)
        m2 = api.call(sock, "GET", "/metrics")[1]
        if instructions(m1) != instructions(m2):
            not_ok("pause: instructions frozen", f"{instructions(m1)} -> {instructions(m2)}")
        else:
            ok("pause: instructions retired do not move while paused")

        # resume: continues from the next value, guest uptime did not jump by the pause
        before, tail = last_counter(con)
        pos = len(con.text()) - len(tail)
        paused_for = time.monotonic() - t_pause
        patch_state(sock, "running")
        nxt = wait_counter_after(con, pos, 60)
        if nxt != before + STEP:
            not_ok("resume: counter continues", f"last {before} before pause, first {nxt} after")
        else:
            ok(f"resume: counter continued {before} -> {nxt} after {paused_for:.1f} s paused")
        time.sleep(1.0)

        # snapshot of the paused VM, then kill the original
        patch_state(sock, "paused")
        time.sleep(0.2)
        last, tail = last_counter(con)
        ran_unpaused = time.monotonic() - con.start_time - paused_for
        t0 = time.monotonic()
        st, body, _ = api.call(sock, "PUT", "/snapshot/create", {"snapshot_path": snap})
        dt = time.monotonic() - t0
        if st != 204:
            not_ok("snapshot: create", f"{st} {body}")
            return 1
        du = subprocess.run(["du", "-sk", os.path.join(snap, "memory.bin")], capture_output=True, text=True).stdout.split()[0]
        ok(f"snapshot: created in {dt * 1000:.0f} ms ({du} KiB of 256 MiB on disk: sparse)")
        con.kill()

        # restore in a new process: the first value printed is the next one
        def restore(name, src=None, extra=()):
            c = h.Console([h.kumo_bin(), "run", "--restore", src or snap] + list(extra), name=name)
            cons.append(c)
            return c

        t0 = time.monotonic()
        sock1 = os.path.join(tmp, "r1.sock")
        r1 = restore("restore-1", extra=["--api-sock", sock1])
        t_restore = t0
        got = wait_counter_after(r1, 0, 60, tail)
        dt = time.monotonic() - t0
        if got != last + STEP:
            not_ok("restore: counter continues",
                   f"snapshot after {last}, restored printed {got}; {restored_state(r1, sock1)}",
                   r1.tail() + r1.stderr_text().splitlines()[-5:])
        else:
            ok(f"restore: new process continued {last} -> {got} ({dt * 1000:.0f} ms to the first line)")

        # clones: two more restores side by side
        r2, r3 = restore("restore-2"), restore("restore-3")
        g2, g3 = wait_counter_after(r2, 0, 60, tail), wait_counter_after(r3, 0, 60, tail)
        time.sleep(1.0)
        alive = all(c.proc.poll() is None for c in (r1, r2, r3))
        if g2 != last + STEP or g3 != last + STEP or not alive:
            not_ok("clones: side by side", f"first values {g2}, {g3}; all alive: {alive}; {restored_state(r2)}")
        else:
            ok("clones: two more restores of one snapshot run side by side and continue")
        for c in (r2, r3):
            c.close()
        if got is None:
            not_ok("snapshot: diff, zstd, shell and shutdown checks", "not run: the first restore never ran")
            return 1

        # diff snapshot: on top of the full one, taken at the same moment as a second full one
        time.sleep(1.0)
        patch_state(sock1, "paused")
        time.sleep(0.2)
        at, tail = last_counter(r1)
        diff, full2 = os.path.join(tmp, "diff"), os.path.join(tmp, "full2")
        st1, b1, _ = api.call(sock1, "PUT", "/snapshot/create", {"snapshot_path": diff, "snapshot_type": "diff"})
        st2, b2, _ = api.call(sock1, "PUT", "/snapshot/create", {"snapshot_path": full2})
        if st1 != 204 or st2 != 204:
            not_ok("diff: create", f"diff {st1} {b1}, full {st2} {b2}")
        else:
            same, detail = api.diff_equals_full(snap, diff, full2)
            if same:
                ok(f"diff: parent + {detail} == a full snapshot of the same moment (memory, devices, harts)")
            else:
                not_ok("diff: same state as full", detail)
            rd, rf = restore("restore-diff", diff), restore("restore-full2", full2)
            gd, gf = wait_counter_after(rd, 0, 60, tail), wait_counter_after(rf, 0, 60, tail)
            if gd == gf == at + STEP:
                ok(f"diff: restoring the diff chain and the full snapshot both continue {at} -> {gd}")
            else:
                not_ok("diff: restore", f"at {at}: diff chain printed {gd}, full printed {gf}", rd.stderr_text().splitlines()[-3:])
            rd.close()
            rf.close()
        # the last snapshot (full2) is the parent of the next diff
        st, b, _ = api.call(sock1, "PUT", "/snapshot/create", {"snapshot_path": full2, "snapshot_type": "diff"})
        if st == 400 and "own parent" in b.get("error", ""):
            ok("diff: a diff into its own parent is refused")
        else:
            not_ok("diff: own parent", f"{st} {b}")

        # zstd: a compressed full snapshot, then a compressed diff on top of it after running on
        fullz, diffz = os.path.join(tmp, "fullz"), os.path.join(tmp, "diffz")
        st, b, _ = api.call(sock1, "PUT", "/snapshot/create", {"snapshot_path": fullz, "compress": True})
        patch_state(sock1, "running")
        time.sleep(1.5)
        patch_state(sock1, "paused")
        time.sleep(0.2)
        at2, tail2 = last_counter(r1)
        st2, b2, _ = api.call(sock1, "PUT", "/snapshot/create", {"snapshot_path": diffz, "snapshot_type": "diff", "compress": True})
        full3 = os.path.join(tmp, "full3")
        st3, b3, _ = api.call(sock1, "PUT", "/snapshot/create", {"snapshot_path": full3})
        if st != 204 or st2 != 204 or st3 != 204:
            not_ok("zstd: create", f"full {st} {b}, diff {st2} {b2}, uncompressed full {st3} {b3}")
        else:
            same, detail = api.diff_equals_full(fullz, diffz, full3)
            if same:
                ok(f"zstd: compressed parent + compressed diff ({detail}) == a full snapshot of the same moment")
            else:
                not_ok("zstd: diff same as full", detail)
            zsize = os.path.getsize(os.path.join(fullz, "memory.zst")) >> 20
            rz, rdz = restore("restore-zstd", fullz), restore("restore-zstd-diff", diffz)
            gz, gdz = wait_counter_after(rz, 0, 60, tail), wait_counter_after(rdz, 0, 60, tail2)
            if gz == at + STEP and gdz == at2 + STEP:
                ok(f"zstd: compressed full ({zsize} MiB) and compressed diff on top restore and continue ({gz}, {gdz})")
            else:
                not_ok("zstd: restore", f"full printed {gz} (want {at + STEP}), diff printed {gdz} (want {at2 + STEP})",
                       rz.stderr_text().splitlines()[-3:] + rdz.stderr_text().splitlines()[-3:])
            rz.close()
            rdz.close()
            bad = os.path.join(tmp, "fullz-bad")
            shutil.copytree(fullz, bad)
            with open(os.path.join(bad, "memory.zst"), "r+b") as f:
                f.seek(os.path.getsize(os.path.join(bad, "memory.zst")) // 2)
                byte = f.read(1)
                f.seek(-1, 1)
                f.write(bytes([byte[0] ^ 0xFF]))
            p = subprocess.run([h.kumo_bin(), "run", "--restore", bad], capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL)
            lines = p.stderr.strip().splitlines()
            if p.returncode == 1 and len(lines) == 1 and "corrupted" in lines[0]:
                ok(f"zstd: a corrupted memory.zst is refused: {lines[0]}")
            else:
                not_ok("zstd: corrupted", f"{p.returncode} {lines}")
        patch_state(sock1, "running")

        # the restored shell still works
        try:
            r1.send("kill %1\n")
            time.sleep(0.5)
            up = float(r1.run("cut -d' ' -f1 /proc/uptime", timeout=60).strip().splitlines()[-1])
            limit = ran_unpaused + (time.monotonic() - t_restore) + 1.0
            if up <= limit:
                ok(f"clock: guest uptime {up:.1f} s <= {limit:.1f} s (pauses and the restore gap are not seen)")
            else:
                not_ok("clock: guest uptime", f"{up:.1f} s > {limit:.1f} s: the clock jumped")
            # (/tmp/c may be empty: the loop was killed between truncating and writing it)
            out = r1.run("echo $((6*7)); ls /tmp/c", timeout=60).strip().splitlines()
            if out[-2:] == ["42", "/tmp/c"]:
                ok("shell: the restored guest's shell runs commands")
            else:
                not_ok("shell: restored guest", f"output {out!r}")
        except (h.GuestFailure, ValueError, IndexError) as e:
            not_ok("shell: restored guest", str(e))

        # the console over the API: raw input with PUT /console, output with GET /console?offset=
        st0, _, hd = api.call(sock1, "GET", "/console?offset=999999999999")
        pos = int(hd.get("X-Console-Offset", "-1"))
        st1, b1, _ = api.call(sock1, "PUT", "/console", raw=b"echo VIA-API-$((6*7))\n")
        seen, deadline = b"", time.monotonic() + 30
        while b"VIA-API-42" not in seen and time.monotonic() < deadline:
            st2, body, hd = api.call(sock1, "GET", f"/console?offset={pos}")
            if isinstance(body, str):
                seen += body.encode()
            pos = int(hd.get("X-Console-Offset", pos))
            time.sleep(0.1)
        if st0 == 200 and pos > 0 and st1 == 204 and b"VIA-API-42" in seen:
            ok("console: PUT /console types, GET /console?offset= reads the output")
        else:
            not_ok("console: API", f"GET {st0}, PUT {st1} {b1}, seen {seen[-80:]!r}")
        p = subprocess.run([h.kumo_bin(), "vm", "--sock", sock1, "console"], input="echo VIA-CLI-$((7*6))\n",
                           capture_output=True, text=True, timeout=60)
        if p.returncode == 0 and "VIA-CLI-42" in p.stdout:
            ok("console: kumo vm console sends a line and shows the answer")
        else:
            not_ok("console: kumo vm console", f"status {p.returncode}, stdout tail {p.stdout[-120:]!r}, stderr {p.stderr[-200:]!r}")

        # graceful shutdown: BREAK + SysRq s, u, o on the serial console; the guest powers off
        t0 = time.monotonic()
        st, b, _ = api.call(sock1, "PUT", "/actions", {"action": "shutdown", "grace_ms": 60000})
        try:
            rc = r1.proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            rc = None
        dt = time.monotonic() - t0
        if st == 204 and rc == 0 and "sysrq: Power Off" in r1.text():
            ok(f"shutdown: the guest powered itself off after SysRq s/u/o in {dt:.1f} s (exit status 0)")
        else:
            not_ok("shutdown: graceful", f"PUT {st} {b}, exit status {rc} after {dt:.1f} s", r1.tail(8))
        r1.close()

        # refusals
        def refused(what, mutate, needle, src=None):
            bad = os.path.join(tmp, "bad-" + what)
            shutil.copytree(src or snap, bad)
            mutate(bad)
            p = subprocess.run([h.kumo_bin(), "run", "--restore", bad], capture_output=True, text=True,
                               timeout=60, stdin=subprocess.DEVNULL)
            lines = p.stderr.strip().splitlines()
            if p.returncode == 1 and len(lines) == 1 and needle in lines[0]:
                ok(f"refused: {what}: {lines[0]}")
            else:
                not_ok(f"refused: {what}", f"status {p.returncode}, stderr {lines[:3]}")
            shutil.rmtree(bad)

        def wrong_version(d):
            p = os.path.join(d, "manifest.json")
            m = json.load(open(p))
            m["version"] = 99
            json.dump(m, open(p, "w"))

        def version1_diff(d):
            # format 1: dirty.bin had one byte per 2 MiB chunk; such a diff must not be misread
            p = os.path.join(d, "manifest.json")
            m = json.load(open(p))
            m["version"] = 1
            nchunks = int(m["memory"]["size"], 16) >> 21
            m["memory"]["dirty"] = {"file": "dirty.bin", "chunk_bytes": 2 << 20, "size": nchunks}
            json.dump(m, open(p, "w"))
            open(os.path.join(d, "dirty.bin"), "wb").write(b"\1" * nchunks)

        def truncate_mem(d):
            p = os.path.join(d, "memory.bin")
            os.truncate(p, os.path.getsize(p) // 2)

        def corrupt_dev(d):
            p = os.path.join(d, "devices.bin")
            b = bytearray(open(p, "rb").read())
            b[len(b) // 2] ^= 0xFF
            open(p, "wb").write(b)

        def corrupt_mem(d):
            p = os.path.join(d, "memory.bin")
            with open(p, "r+b") as f:
                f.seek(0x200000 + 4096 * 7)  # inside the kernel image: surely data
                byte = f.read(1)
                f.seek(-1, 1)
                f.write(bytes([byte[0] ^ 0x5A]))

        refused("wrong version", wrong_version, "version 99")
        refused("format 1 diff", version1_diff, "version 1, this kumo reads version 2", src=diff)
        refused("truncated memory", truncate_mem, "truncated")
        refused("corrupted devices", corrupt_dev, "corrupted")
        refused("corrupted memory", corrupt_mem, "corrupted")
    finally:
        for c in cons:
            c.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if _tap.failures else 0


if __name__ == "__main__":
    sys.exit(main())
