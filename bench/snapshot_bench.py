#!/usr/bin/env python3
"""Snapshot benchmark (called by bench/run.sh): prints a Markdown section on stdout.

For a 256 MiB and a 1 GiB guest (the default Debian guest booted to its shell with --api-sock):
  create     wall time of PUT /snapshot/create on the paused VM, and the bytes written
  restore    `kumo run --restore DIR --api-sock S`: time from spawning the process until the
             API reports "running", and until the guest's shell answers a command
  overhead   VMM memory overhead: process RSS minus the resident pages of the guest RAM
             mapping (/proc/PID/smaps), for the booted VM and for a restored one
  clones     N restores of the 256 MiB snapshot started at once: VMs running per second
  diff       after the full snapshot the guest resumes and writes DIFF_MIB MiB of random data to
             /tmp, is paused again, and a diff snapshot is taken: its create time, dirty 4 KiB
             pages (the software TLB's dirty log), memory.bin bytes on disk, and the time from
             spawning `kumo run --restore DIFF` (parent + diff) to the shell's answer

Environment: KUMO_BIN, BENCH_SNAPSHOT_MEMS (default "256M 1G"), BENCH_CLONES (default 4),
BENCH_TIMEOUT (seconds per boot, default 600), BENCH_DIFF_MIB (default 4).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "api"))
import harness as h  # noqa: E402
import kumoapi as api  # noqa: E402

TIMEOUT = h.env_seconds("BENCH_TIMEOUT", 600)
DIFF_MIB = int(os.environ.get("BENCH_DIFF_MIB", "4"))


def log(msg):
    print(f"snapshot_bench: {msg}", file=sys.stderr, flush=True)


def mem_bytes(s):
    n = int(s[:-1])
    return n << {"M": 20, "G": 30}[s[-1]]


def cpu_cache_kib(sock):
    """KiB the vCPUs' decode caches hold and the bytes of translated code in use in their code
    buffers, from GET /metrics; (0, 0) when the metrics do not say."""
    st, m, _ = api.call(sock, "GET", "/metrics")
    if st != 200 or not isinstance(m, dict):
        return 0, 0

    def total(name):
        v = m.get(name, [])
        return sum(s.get("value", 0) for s in v) if isinstance(v, list) else v

    return int(total("kumo_vcpu_decode_cache_bytes")) // 1024, int(total("kumo_vcpu_code_bytes")) // 1024


def overhead_kib(pid, ram_size):
    """KiB: (RSS, guest RAM resident, RSS - guest, anonymous memory outside guest RAM, of which
    the JIT's code buffers: their resident pages, anonymous and the process's only writable and
    executable mappings).

    RSS counts the shared libraries' pages too (libcurl, gnutls, glib, ... are shared by every
    VMM on the host); the fourth value is what each VM adds on its own.
    """
    rss = guest = anon = guest_anon = code = 0
    is_code = False
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    is_ram = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                # Named where the kernel can (vm.c); else by size: guest RAM may have merged
                # with an anonymous neighbour (a malloc arena), so allow up to 64 MiB more.
                size = int(m.group(2), 16) - int(m.group(1), 16)
                is_ram = "[anon:kumo-guest-ram]" in line or (
                    "[anon:" not in line and ram_size <= size <= ram_size + (64 << 20))
                is_code = line.split()[1] == "rwxp"
            elif line.startswith("Rss:") and is_ram:
                guest += int(line.split()[1])
            elif line.startswith("Anonymous:"):
                anon += int(line.split()[1])
                if is_ram:
                    guest_anon += int(line.split()[1])
                if is_code:
                    code += int(line.split()[1])
    return rss, guest, rss - guest, anon - guest_anon, code


def restore(snap, tmp, name):
    sock = os.path.join(tmp, name + ".sock")
    t0 = time.monotonic()
    con = h.Console([h.kumo_bin(), "run", "--restore", snap, "--api-sock", sock], name=name)
    running = None
    if api.wait_socket(sock, con.proc, 60):
        st, vm, _ = api.call(sock, "GET", "/vm")
        if vm.get("state") == "running":
            running = time.monotonic() - t0
    return con, t0, running


def shell_answer(con, t0, tag):
    con.send(f"echo {tag}$((40+2))\n")
    con.expect(f"{tag}42", 60, h.COMMAND_FAILED, "no answer from the restored shell")
    return time.monotonic() - t0


def disk_kib(path):
    return int(subprocess.run(["du", "-sk", path], capture_output=True, text=True).stdout.split()[0])


def diff_snapshot(con, sock, snap):
    """Resumes the VM, dirties DIFF_MIB MiB, pauses, takes a diff snapshot on top of snap."""
    diff = snap + "-diff"
    api.call(sock, "PATCH", "/vm", {"state": "running"})
    con.run(f"dd if=/dev/urandom of=/tmp/dirt bs=1024 count={DIFF_MIB * 1024} 2>/dev/null; echo done",
            timeout=300)
    api.call(sock, "PATCH", "/vm", {"state": "paused"})
    t0 = time.monotonic()
    st, body, _ = api.call(sock, "PUT", "/snapshot/create", {"snapshot_path": diff, "snapshot_type": "diff"},
                           timeout=600)
    create = time.monotonic() - t0
    if st != 204:
        raise RuntimeError(f"diff snapshot: {st} {body}")
    with open(os.path.join(diff, "manifest.json")) as f:
        pages = json.load(f)["memory"]["dirty"]["pages"]
    # What the former 2 MiB-chunk tracking would have written: chunks with any dirty page.
    bits = open(os.path.join(diff, "dirty.bin"), "rb").read()
    chunks = sum(1 for c in range(0, len(bits), 64) if any(bits[c:c + 64]))
    return diff, create, pages, chunks, disk_kib(os.path.join(diff, "memory.bin"))


def one_size(img, mem, tmp, rows, over, diffs):
    sock = os.path.join(tmp, f"orig-{mem}.sock")
    snap = os.path.join(tmp, f"snap-{mem}")
    size = mem_bytes(mem)
    con = h.Console(h.kumo_argv(img["kernel"], img["initramfs"], "console=ttyS0", mem=mem,
                                extra=["--api-sock", sock]), name=f"orig-{mem}")
    try:
        con.boot(TIMEOUT)
        con.run("echo booted")
        o = overhead_kib(con.pid, size) + cpu_cache_kib(sock)
        over.append((f"{mem} booted", o))
        api.call(sock, "PATCH", "/vm", {"state": "paused"})
        t0 = time.monotonic()
        st, body, _ = api.call(sock, "PUT", "/snapshot/create", {"snapshot_path": snap}, timeout=600)
        create = time.monotonic() - t0
        if st != 204:
            raise RuntimeError(f"snapshot: {st} {body}")
        data = disk_kib(os.path.join(snap, "memory.bin"))
        diff, dcreate, dpages, dchunks, ddata = diff_snapshot(con, sock, snap)
    finally:
        con.close()
    r, t0, running = restore(snap, tmp, f"restore-{mem}")
    try:
        answer = shell_answer(r, t0, "B")
        over.append((f"{mem} restored", overhead_kib(r.pid, size) +
                     cpu_cache_kib(os.path.join(tmp, f"restore-{mem}.sock"))))
    finally:
        r.close()
    rows.append((mem, create, data, running, answer))
    r, t0, _ = restore(diff, tmp, f"restore-diff-{mem}")
    try:
        danswer = shell_answer(r, t0, "D")
    finally:
        r.close()
    diffs.append((mem, dcreate, dpages, dchunks, ddata, danswer))
    log(f"{mem}: diff after {DIFF_MIB} MiB written: {dpages} dirty pages, {ddata} KiB, "
        f"create {dcreate * 1000:.0f} ms, restore to shell {danswer * 1000:.0f} ms")
    log(f"{mem}: create {create * 1000:.0f} ms, restore running {running * 1000 if running else -1:.0f} ms, shell {answer * 1000:.0f} ms")
    return snap


def clones(snap, tmp, n):
    t0 = time.monotonic()
    cons = []
    try:
        for i in range(n):
            cons.append(h.Console([h.kumo_bin(), "run", "--restore", snap], name=f"clone{i}"))
        for i, c in enumerate(cons):
            c.send(f"echo C{i}X$((1+1))\n")
        for i, c in enumerate(cons):
            c.expect(f"C{i}X2", 60, h.COMMAND_FAILED, "clone did not answer")
        return time.monotonic() - t0
    finally:
        for c in cons:
            c.close()


def main():
    mems = os.environ.get("BENCH_SNAPSHOT_MEMS", "256M 1G").split()
    nclones = int(os.environ.get("BENCH_CLONES", "4"))
    img = h.default_image()
    tmp = tempfile.mkdtemp(prefix="kumo-snapbench-")
    rows, over, diffs = [], [], []
    try:
        snaps = {m: one_size(img, m, tmp, rows, over, diffs) for m in mems}
        clone_s = clones(snaps[mems[0]], tmp, nclones) if nclones else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n## Snapshots (bench/snapshot_bench.py)\n")
    print("| guest RAM | create | memory.bin on disk | restore to API running | restore to shell answer |")
    print("| --- | --- | --- | --- | --- |")
    for mem, create, data, running, answer in rows:
        print(f"| {mem} | {create * 1000:.0f} ms | {data // 1024} MiB | "
              f"{running * 1000:.0f} ms | {answer * 1000:.0f} ms |" if running else
              f"| {mem} | {create * 1000:.0f} ms | {data // 1024} MiB | n/a | {answer * 1000:.0f} ms |")
    print(f"\n| diff snapshot after the guest wrote {DIFF_MIB} MiB | create | dirty 4 KiB pages | "
          "2 MiB chunks touched (former granularity) | memory.bin on disk | "
          "restore (parent + diff) to shell answer |")
    print("| --- | --- | --- | --- | --- | --- |")
    for mem, create, pages, chunks, data, answer in diffs:
        print(f"| {mem} | {create * 1000:.0f} ms | {pages} ({pages * 4 / 1024:.1f} MiB) | "
              f"{chunks} ({chunks * 2} MiB) | {data / 1024:.1f} MiB | {answer * 1000:.0f} ms |")
    print("\n| VMM memory | RSS | guest RAM resident | RSS - guest | private (anonymous, not guest RAM) "
          "| of which decode cache | of which code buffer (resident; code in use) "
          "| private without either |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for what, (rss, guest, ovh, priv, code_rss, dcache, code) in over:
        print(f"| {what} | {rss / 1024:.1f} MiB | {guest / 1024:.1f} MiB | {ovh / 1024:.1f} MiB | "
              f"{priv / 1024:.1f} MiB | {dcache / 1024:.1f} MiB | {code_rss / 1024:.1f} MiB; "
              f"{code / 1024:.1f} MiB | {max(0, priv - dcache - code_rss) / 1024:.1f} MiB |")
    print("\nRSS - guest includes shared-library pages every VMM process shares; \"private\" is what "
          "each VM adds on its own. Firecracker's <= 5 MiB promise is for a VMM whose guest runs on "
          "KVM; a software CPU also keeps, per vCPU, a decode cache (8 host bytes per guest code "
          "byte) and a code buffer of up to 32 MiB for translated code (on 2 MiB pages, so its "
          "resident size steps by 2 MiB and keeps pages of code dropped by a flush), shown apart "
          "(GET /metrics: kumo_vcpu_decode_cache_bytes, kumo_vcpu_code_bytes = code in use).")
    if clone_s:
        print(f"\n{nclones} clones of the {mems[0]} snapshot started at once answered their shells in "
              f"{clone_s:.2f} s: {nclones / clone_s:.1f} VMs started per second on this machine.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
