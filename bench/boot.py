#!/usr/bin/env python3
"""A/B benchmark of kumo against QEMU TCG on the default Debian guest (called by bench/run.sh).

1. Boot time: each hypervisor boots the default guest to /init's KUMO-INIT-OK marker, N times,
   alternating kumo and QEMU so both see the same machine noise. The time is host wall time from
   starting the VMM process to the marker's arrival on the console.
2. Idle cost: each boots to the shell, waits IDLE_SETTLE s, then samples the VMM process's host
   CPU time (utime + stime of all its threads, /proc/PID/stat) over IDLE_WINDOW s of idle.

Prints progress on stderr and a Markdown report on stdout, also written to build/bench/latest.md.
The guests' consoles go to build/bench/console/*.log, never into the report. Numbers from one
run on a shared machine are only comparable with each other: read the ratio, not the seconds.

Environment: BENCH_RUNS (default 5), KUMO_BIN, QEMU_BIN, BENCH_TIMEOUT (seconds per boot,
default 600), BENCH_IDLE=0 skips the idle measurement.
"""
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import harness as h  # noqa: E402

APPEND = "console=ttyS0"
IDLE_SETTLE = 10.0
IDLE_WINDOW = 10.0
OUT_DIR = os.path.join(h.ROOT, "build", "bench")
LOG_DIR = os.path.join(OUT_DIR, "console")


def progress(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def positive_int(name, default):
    try:
        v = int(os.environ.get(name, default))
    except ValueError:
        v = default
    return max(1, v)


class Subject:
    """One hypervisor under test: its argv, results, and whether it is still worth running."""

    def __init__(self, label, argv, usable, why_not=""):
        self.label = label
        self.argv = argv
        self.usable = usable
        self.why_not = why_not
        self.times = []  # seconds to the marker, per run (None = failed)
        self.idle = None  # % of one core
        self.idle_note = ""


def boot_once(subject, run, timeout):
    log = os.path.join(LOG_DIR, f"{subject.label.split()[0].lower()}-boot-{run}.log")
    try:
        with h.Console(subject.argv, name=subject.label, log_path=log) as vm:
            _, t = vm.expect(h.BOOT_MARKER, timeout, h.DID_NOT_BOOT, f"no {h.BOOT_MARKER}")
            return t
    except h.GuestFailure as e:
        subject.usable = False
        subject.why_not = f"run {run}: {e.phase}: {e.detail} (console: {log})"
        progress(f"{subject.label} run {run} failed: {e.phase}: {e.detail}; no more {subject.label} runs")
        for line in e.report(10):
            progress("  " + line)
        return None


def idle_once(subject, timeout):
    log = os.path.join(LOG_DIR, f"{subject.label.split()[0].lower()}-idle.log")
    try:
        with h.Console(subject.argv, name=subject.label, log_path=log) as vm:
            vm.boot(timeout)
            time.sleep(IDLE_SETTLE)
            c0, w0 = h.proc_cpu_seconds(vm.pid), time.monotonic()
            time.sleep(IDLE_WINDOW)
            c1, w1 = h.proc_cpu_seconds(vm.pid), time.monotonic()
            subject.idle = 100.0 * (c1 - c0) / (w1 - w0)
            try:
                vm.poweroff("poweroff", timeout=60, expect_status=None)
            except h.GuestFailure:
                subject.idle_note = "did not power off afterwards"
    except (h.GuestFailure, OSError) as e:
        subject.idle_note = str(e)
        progress(f"{subject.label} idle measurement failed: {e}")


def fmt(v, digits=2):
    return "n/a" if v is None else f"{v:.{digits}f}"


def median(values):
    ok = [v for v in values if v is not None]
    return statistics.median(ok) if ok else None


def version_of(argv):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=10)
        return (p.stdout.strip().splitlines() or ["?"])[0]
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def report(subjects, runs, image, idle_done):
    kumo, qemu = subjects
    git = version_of(["git", "-C", h.ROOT, "describe", "--always", "--dirty"])
    lines = [
        f"# kumo vs QEMU TCG: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"Host: {platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}. "
        f"kumo {git}; {version_of([h.qemu_bin(), '--version'])}.",
        f"Guest: {image.get('version', '?')}, busybox initramfs, 1 vCPU, 512M, append \"{APPEND}\"; "
        "kumo with its built-in SBI, QEMU with its bundled OpenSBI.",
        "",
        f"## Boot to {h.BOOT_MARKER} (seconds, wall time from process start; runs alternate)",
        "",
        "| run | kumo | QEMU |",
        "| ---: | ---: | ---: |",
    ]
    for i in range(runs):
        cells = []
        for s in subjects:
            if i < len(s.times):
                cells.append("failed" if s.times[i] is None else f"{s.times[i]:.2f}")
            else:
                cells.append("skipped")
        lines.append(f"| {i + 1} | {cells[0]} | {cells[1]} |")
    mk, mq = median(kumo.times), median(qemu.times)
    lines.append(f"| **median** | **{fmt(mk)}** | **{fmt(mq)}** |")
    ratio = mk / mq if mk is not None and mq else None
    lines += ["", f"kumo/QEMU boot-time ratio (medians): **{fmt(ratio)}**"]
    if idle_done:
        lines += [
            "",
            f"## Idle cost ({IDLE_WINDOW:.0f} s of an idle shell, after {IDLE_SETTLE:.0f} s settling)",
            "",
            "| | kumo | QEMU |",
            "| --- | ---: | ---: |",
            f"| host CPU, % of one core | {fmt(kumo.idle, 1)} | {fmt(qemu.idle, 1)} |",
        ]
    notes = [f"- {s.label}: {s.why_not}" for s in subjects if s.why_not]
    notes += [f"- {s.label} idle: {s.idle_note}" for s in subjects if s.idle_note]
    if notes:
        lines += ["", "Notes:"] + notes
    return "\n".join(lines) + "\n"


def main():
    runs = positive_int("BENCH_RUNS", 5)
    timeout = h.env_seconds("BENCH_TIMEOUT", 600)
    try:
        image = h.default_image()
    except RuntimeError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    k, i = image["kernel"], image["initramfs"]
    os.makedirs(LOG_DIR, exist_ok=True)

    kumo_ok = os.access(h.kumo_bin(), os.X_OK)
    subjects = [
        Subject("kumo", h.kumo_argv(kernel=k, initrd=i, append=APPEND), kumo_ok,
                "" if kumo_ok else f"{h.kumo_bin()} is missing (build failed?)"),
        Subject("QEMU", h.qemu_argv(kernel=k, initrd=i, append=APPEND), True),
    ]
    for run in range(1, runs + 1):
        for s in subjects:
            if not s.usable:
                continue
            t = boot_once(s, run, timeout)
            s.times.append(t)
            if t is not None:
                progress(f"run {run}/{runs}: {s.label} {t:.2f} s")

    idle_done = os.environ.get("BENCH_IDLE", "1") != "0"
    if idle_done:
        for s in subjects:
            if s.usable:
                progress(f"{s.label}: measuring idle cost ({IDLE_SETTLE:.0f} + {IDLE_WINDOW:.0f} s)")
                idle_once(s, timeout)

    text = report(subjects, runs, image, idle_done)
    os.makedirs(OUT_DIR, exist_ok=True)
    # bench/run.sh starts latest.md empty; every part appends its section.
    with open(os.path.join(OUT_DIR, "latest.md"), "a") as f:
        f.write(text)
    sys.stdout.write(text)
    return 0 if all(s.usable for s in subjects) else 1


if __name__ == "__main__":
    sys.exit(main())
