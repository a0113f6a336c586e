#!/usr/bin/env python3
"""Guest-workload benchmark, kumo against QEMU TCG (issue 6; bench/run.sh calls it).

Both hypervisors boot the same kernel and the default initramfs with bench/workloads/*
appended as an extra cpio archive (/bench in the guest), 1 vCPU and 1 GiB each. The two VMs are
up at the same time and take turns: every workload runs BENCH_RUNS times on each, alternating
which side goes first, while the other guest sits idle at its shell (so both see the same
machine noise). Each run is timed inside the guest by /bench/ktime (CLOCK_MONOTONIC around
fork/exec/wait); on kumo ktime also reads the `instret` CSR before and after, which gives kumo's
MIPS from its own counter. QEMU 7.2 TCG's instret is not an instruction count (and its kernel
does not let user mode read it), so no MIPS are given for QEMU.

Every workload prints a checksum; kumo's must equal QEMU's (and the known value where there is
one), else the script fails with status 1 and prints no numbers for that row.

Report: median seconds per side, throughput ratio kumo/QEMU (QEMU's time / kumo's: > 1 means
kumo is faster), kumo's MIPS, the geometric mean of the ratios, and issue 6's targets (every
workload >= 1.0x, geometric mean >= 2x) marked met or not. Printed on stdout, appended to
build/bench/latest.md and kept in build/bench/workloads.md.

Environment: BENCH_RUNS (default 3), BENCH_TIMEOUT (seconds per boot or command, default 900),
BENCH_PARTS (comma-separated; runs only when it names "workloads" or is empty),
BENCH_WORKLOADS (comma-separated subset of the names below), BENCH_DATA_MIB (file size for
sha256sum and gzip, and dd's size, default 64), BENCH_SHELL_ITERS (default 1000000),
KUMO_BIN, QEMU_BIN.
"""
import datetime
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import guestlib as g  # noqa: E402


def workloads(mib, iters):
    """(name, argv run by ktime, what it is, expected output or None)."""
    loop = f"i=0; while [ $i -lt {iters} ]; do i=$((i+1)); done; echo $i"
    dd = f"dd if=/dev/zero of=/tmp/dd.bin bs=1M count={mib} 2>/dev/null && stat -c %s /tmp/dd.bin"
    return [
        ("sha256sum", ["sha256sum", "/tmp/data"], f"busybox sha256sum, {mib} MiB file in tmpfs", None),
        ("gzip", ["sh", "-c", "gzip -c /tmp/data >/tmp/data.gz && stat -c %s /tmp/data.gz"],
         f"busybox gzip -6, same file, output to tmpfs", None),
        ("shell-loop", ["sh", "-c", loop], f"busybox sh, {iters} iterations of while/test/$(( ))", str(iters)),
        ("dd-tmpfs", ["sh", "-c", dd], f"dd bs=1M count={mib} /dev/zero -> tmpfs (kernel user copy)",
         str(mib << 20)),
        ("alu", ["/bench/alu"], "integer ALU: shifts, xors, rotates, compares, 32-bit ops", None),
        ("muldiv", ["/bench/muldiv"], "64/32-bit mul, mulhu, div, rem (signed and unsigned)", None),
        ("fp", ["/bench/fp"], "double precision: n-body (div, sqrt, fma) + Mandelbrot", None),
        ("mem", ["/bench/mem"], "STREAM copy/scale/add/triad on 3 x 16 MiB", None),
        ("interp", ["/bench/interp"], "switch-dispatched bytecode interpreter (primes)", None),
        ("sort", ["/bench/sort"], "quicksort of 1 Mi random keys, 3 rounds", None),
        ("syscall", ["/bench/sys"], "getppid() + 64-byte write(/dev/null), 150k rounds", None),
    ]


def host_data_sha256(mib):
    """sha256 of `mkdata MIB` computed on the host through qemu-riscv64 (user mode), when present."""
    qemu_user = shutil.which("qemu-riscv64")
    if not qemu_user:
        return None
    p = subprocess.run([qemu_user, os.path.join(g.PROG_DIR, "mkdata"), str(mib)], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    if p.returncode != 0:
        return None
    return hashlib.sha256(p.stdout).hexdigest()


class Side:
    def __init__(self, name, vm):
        self.name = name
        self.vm = vm
        self.instret = False
        self.secs = {}  # workload -> [seconds per run]
        self.mips = {}  # workload -> [MIPS per run]
        self.out = {}  # workload -> output of the first run


def prepare(side, mib, timeout):
    g.run(side.vm, f"/bench/mkdata {mib} >/tmp/data && sync", timeout, what="create the data file")
    if side.name == "kumo":
        # A kernel that leaves scounteren.IR clear makes the read a SIGILL: no MIPS then.
        try:
            out = side.vm.run("/bench/ktime -i probe true", timeout=timeout, check=False)
        except g.h.GuestFailure as e:
            raise g.BenchError(f"kumo: instret probe: {e.phase}: {e.detail}") from None
        side.instret = "KTIME probe status=0 " in out
        if not side.instret:
            g.progress("kumo: reading instret from user mode failed; no MIPS column")


def run_one(side, name, argv, timeout):
    r = g.ktime(side.vm, name, argv, timeout, instret=side.instret)
    side.secs.setdefault(name, []).append(r["secs"])
    if r["instret"] is not None:
        side.mips.setdefault(name, []).append(r["instret"] / r["secs"] / 1e6)
    first = side.out.setdefault(name, r["out"])
    if r["out"] != first:
        raise g.BenchError(f"{side.name}: {name} printed {r['out']!r}, an earlier run printed {first!r}")
    if name == "gzip":
        g.run(side.vm, "rm -f /tmp/data.gz", timeout)
    elif name == "dd-tmpfs":
        g.run(side.vm, "rm -f /tmp/dd.bin", timeout)
    return r["secs"]


def check_outputs(sides, name, expected):
    kumo, qemu = sides
    if kumo.out[name] != qemu.out[name]:
        raise g.BenchError(f"{name}: checksum mismatch: kumo printed {kumo.out[name]!r}, QEMU {qemu.out[name]!r}")
    if expected is not None and not kumo.out[name].startswith(expected):
        raise g.BenchError(f"{name}: both printed {kumo.out[name]!r}, expected {expected!r}")


def report(sides, table, runs, img, host_checked):
    kumo, qemu = sides
    git = subprocess.run(["git", "-C", g.h.ROOT, "describe", "--always", "--dirty"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True).stdout.strip() or "?"
    lines = [
        f"## Guest workloads, kumo vs QEMU TCG ({datetime.datetime.now().strftime('%Y-%m-%d %H:%M')})",
        "",
        f"Host: {platform.machine()}, {os.cpu_count()} CPUs. kumo {git} ({g.h.kumo_bin()}); "
        f"{g.version_of([g.h.qemu_bin(), '--version'])}. Guest: {img.get('version', '?')}, "
        f"1 vCPU, 1 GiB, default initramfs + /bench. Timed inside the guest (CLOCK_MONOTONIC around "
        f"fork/exec/wait), median of {runs} runs per side, the two VMs taking turns.",
        "",
        "| workload | kumo s | QEMU s | kumo/QEMU throughput | kumo MIPS | what |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    ratios = []
    for name, what in table:
        mk, mq = g.median(kumo.secs[name]), g.median(qemu.secs[name])
        ratio = mq / mk
        ratios.append(ratio)
        mips = g.median(kumo.mips.get(name, []))
        lines.append(f"| {name} | {mk:.3f} | {mq:.3f} | {ratio:.2f}x | {g.fmt(mips, 0)} | {what} |")
    gm = g.geomean(ratios)
    slow = [name for (name, _), r in zip(table, ratios) if r < 1.0]
    lines += [
        "",
        f"Geometric mean of the throughput ratios: **{gm:.2f}x** (> 1: kumo faster).",
        "",
        "Targets (issue 6):",
        f"- every workload >= 1.0x QEMU: **{'met' if not slow else 'NOT met'}**"
        + (f" (below: {', '.join(slow)})" if slow else ""),
        f"- geometric mean >= 2x: **{'met' if gm >= 2.0 else 'NOT met'}** ({gm:.2f}x)",
        "",
        "Checksums: every workload printed the same output on kumo and QEMU in every run"
        + (" (sha256sum also equals the host's hash of the same data)." if host_checked else "."),
        "kumo MIPS = guest instructions retired (instret, all modes, read by ktime) / wall seconds;"
        " none for QEMU (7.2 TCG's instret is not an instruction count).",
    ]
    return "\n".join(lines) + "\n"


def main():
    if not g.parts_selected("workloads"):
        g.progress("workloads: not in BENCH_PARTS, skipped")
        return 0
    runs = g.positive_int("BENCH_RUNS", 3)
    timeout = g.h.env_seconds("BENCH_TIMEOUT", 900)
    mib = g.positive_int("BENCH_DATA_MIB", 64)
    iters = g.positive_int("BENCH_SHELL_ITERS", 1000000)
    table = workloads(mib, iters)
    pick = [w.strip() for w in os.environ.get("BENCH_WORKLOADS", "").split(",") if w.strip()]
    unknown = [w for w in pick if w not in [t[0] for t in table]]
    if unknown:
        raise g.BenchError(f"BENCH_WORKLOADS names unknown workloads: {', '.join(unknown)} "
                           f"(known: {', '.join(t[0] for t in table)})")
    if pick:
        table = [t for t in table if t[0] in pick]

    g.check_binaries()
    g.build_programs()
    img = g.image()
    want_sha = host_data_sha256(mib)
    sides = []
    with tempfile.TemporaryDirectory(prefix="kumo-bench-wl-") as tmp:
        initrd = g.make_initrd(img["initramfs"], tmp)
        try:
            for name in ("kumo", "qemu"):
                sides.append(Side("kumo" if name == "kumo" else "QEMU",
                                  g.start(name, g.argv_for(name, img["kernel"], initrd), f"workloads-{name}")))
            for s in sides:
                t = g.wait_shell(s.vm, timeout)
                g.progress(f"workloads: {s.name} booted (marker after {t:.1f} s)")
            for s in sides:
                prepare(s, mib, timeout)
            for name, argv, _, expected in table:
                for r in range(runs):
                    order = sides if r % 2 == 0 else sides[::-1]
                    for s in order:
                        secs = run_one(s, name, argv, timeout)
                        g.progress(f"workloads: {name} run {r + 1}/{runs}: {s.name} {secs:.3f} s")
                check_outputs(sides, name, want_sha if name == "sha256sum" else expected)
            for s in sides:
                g.poweroff(s.vm)
        finally:
            for s in sides:
                s.vm.close()
    g.write_section("workloads", report(sides, [(t[0], t[2]) for t in table], runs, img,
                                        want_sha is not None))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except g.BenchError as e:
        msg = str(e)
        print(f"bench: workloads FAILED: {msg}", file=sys.stderr, flush=True)
        g.write_section("workloads", "## Guest workloads, kumo vs QEMU TCG\n\nFAILED, no numbers: "
                        + msg.splitlines()[0] + "\n")
        sys.exit(1)
