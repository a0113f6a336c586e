#!/usr/bin/env python3
"""Differential test of kumo's RV64 CPU against qemu-riscv64 (TAP output).

For each (kind, seed) it generates a random program with tests/diff/gen.py, assembles it into
a static riscv64 ELF, runs it under qemu-riscv64 and under build/tests/diff/kumo-user, and
compares the per-sequence register/memory dumps. A mismatch prints the sequence number, its
disassembly and the registers that differ.

Debugging: test_diff.py --trace KIND SEED SEQ replays sequence SEQ of that program with a
dump before every instruction group and prints the first group after which the two disagree.

Environment:
  KUMO_DIFF_SEED=N     first seed (default 1); each program uses its own seed from there
  KUMO_DIFF_RANDOM=1   pick the first seed at random (printed, so a failure can be replayed)
  KUMO_DIFF_KINDS=a,b  kinds to run (default int,mem,zb,fp,mix,mix)
  KUMO_DIFF_COUNT, KUMO_DIFF_LENGTH   sequences per program (64), instructions per sequence (48)
  KUMO_USER=PATH       the kumo user-mode runner (default build/tests/diff/kumo-user)
"""
import os
import random
import shutil
import struct
import subprocess
import sys
import time

ROOT = os.environ.get("KUMO_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build", "tests", "diff")
GEN = os.path.join(ROOT, "tests", "diff", "gen.py")
CROSS = "riscv64-linux-gnu-"
QEMU_CPU = "rv64,zba=true,zbb=true,zbs=true"

SCRATCH = 512
RECORD = SCRATCH + 8 + 31 * 8 + 32 * 8 + 8
WORDS = RECORD // 8

XNAMES = ["zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2",
          "a3", "a4", "a5", "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9",
          "s10", "s11", "t3", "t4", "t5", "t6"]


def tap(ok, name, why=""):
    if ok:
        print("ok - %s" % name)
    else:
        print("not ok - %s: %s" % (name, why))
    sys.stdout.flush()


def note(text):
    for line in text.rstrip("\n").split("\n"):
        print("# " + line)


def run(cmd, timeout=120):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        return "timeout", e.stdout or b"", e.stderr or b""


def records(blob):
    out = []
    for i in range(len(blob) // RECORD):
        out.append(struct.unpack_from("<%dQ" % WORDS, blob, i * RECORD))
    return out


def fields(rec):
    """Named values of one record: scratch words, x1..x31, f0..f31, fcsr."""
    named = []
    for i in range(SCRATCH // 8):
        named.append(("mem[sp%+d]" % (8 * i - SCRATCH // 2), rec[i]))
    base = SCRATCH // 8 + 1
    for i in range(31):
        named.append(("x%d (%s)" % (i + 1, XNAMES[i + 1]), rec[base + i]))
    for i in range(32):
        named.append(("f%d" % i, rec[base + 31 + i]))
    named.append(("fcsr", rec[base + 63]))
    return named


def disassembly(elf, seq):
    rc, out, _ = run([CROSS + "nm", elf])
    syms = {}
    for line in out.decode().split("\n"):
        parts = line.split()
        if len(parts) == 3:
            syms[parts[2]] = int(parts[0], 16)
    start, end = syms.get("seq_%d_start" % seq), syms.get("seq_%d_end" % seq)
    if start is None or end is None:
        return "(no symbols for sequence %d)" % seq
    rc, out, _ = run([CROSS + "objdump", "-d", "-M", "no-aliases", "--start-address=%#x" % start,
                      "--stop-address=%#x" % end, elf])
    lines = [l for l in out.decode().split("\n") if l.startswith(" ") or l.endswith(">:")]
    return "\n".join(lines)


def compare(name, elf, qout, kout, krc, kerr, count):
    q, k = records(qout), records(kout)
    if len(q) != count:
        tap(False, name, "qemu-riscv64 produced %d of %d records" % (len(q), count))
        return False
    bad = []
    for i in range(min(len(q), len(k))):
        if q[i] != k[i]:
            bad.append(i)
    if not bad and len(k) == count and krc == 0:
        tap(True, "%s: %d sequences agree" % (name, count))
        return True
    if bad:
        why = "%d of %d sequences differ (first: sequence %d)" % (len(bad), count, bad[0])
    else:
        why = "kumo-user stopped after %d of %d sequences (status %s): %s" % (
            len(k), count, krc, kerr.decode(errors="replace").strip()[:300])
    tap(False, name, why)
    for seq in bad[:3]:
        note("sequence %d:" % seq)
        note(disassembly(elf, seq))
        for (fname, qv), (_, kv) in zip(fields(q[seq]), fields(k[seq])):
            if qv != kv:
                note("  %-12s qemu=0x%016x kumo=0x%016x" % (fname, qv, kv))
    if not bad or len(k) < count:
        seq = len(k)
        if seq < count:
            note("sequence %d (where kumo-user stopped):" % seq)
            note(disassembly(elf, seq))
    return False


def trace(kind, seed, seq, count, length, kumo_user):
    """Replays one sequence with a dump before every item and names the first item after
    which qemu-riscv64 and kumo disagree."""
    src = os.path.join(BUILD, "trace-%s-%d-%d.S" % (kind, seed, seq))
    elf = src[:-2] + ".elf"
    rc, _, err = run([sys.executable, GEN, "--seed", str(seed), "--kind", kind, "--count",
                      str(count), "--length", str(length), "--trace", str(seq), "-o", src])
    if rc == 0:
        rc, _, err = run([CROSS + "gcc", "-static", "-nostdlib", "-march=rv64gc_zba_zbb_zbs",
                          "-mabi=lp64d", "-o", elf, src])
    if rc != 0:
        print(err.decode())
        return 1
    _, qout, _ = run(["qemu-riscv64", "-cpu", QEMU_CPU, elf])
    _, kout, kerr = run([kumo_user, elf])
    q, k = records(qout), records(kout)
    lines = open(src).read().split("\n")
    items = {}
    cur = None
    for line in lines:
        t = line.strip()
        if t.startswith("DUMP ") and int(t[5:]) >= 1000000:
            cur = int(t[5:]) - 1000000
            items[cur] = []
        elif t.startswith("DUMP ") or t.startswith(".globl seq_%d_end" % seq):
            cur = None
        elif cur is not None:
            items[cur].append(t)
    for i in range(min(len(q), len(k))):
        if q[i] == k[i]:
            continue
        qn, kn = q[i][SCRATCH // 8], k[i][SCRATCH // 8]
        print("record %d: qemu dump %d, kumo dump %d" % (i, qn, kn))
        if qn == kn and qn >= 1000000:
            prev = qn - 1000000 - 1
            print("state differs before item %d; item %d was:" % (prev + 1, prev))
            for t in items.get(prev, ["(none: the difference is in the initial state)"]):
                print("    " + t)
        for (fname, qv), (_, kv) in zip(fields(q[i]), fields(k[i])):
            if qv != kv:
                print("  %-12s qemu=0x%016x kumo=0x%016x" % (fname, qv, kv))
        return 1
    print("no difference in %d records (kumo: %d)%s" % (len(q), len(k), kerr.decode()))
    return 0


def main():
    kinds = os.environ.get("KUMO_DIFF_KINDS", "int,mem,zb,fp,mix,mix").split(",")
    count = int(os.environ.get("KUMO_DIFF_COUNT", "64"))
    length = int(os.environ.get("KUMO_DIFF_LENGTH", "48"))
    if os.environ.get("KUMO_DIFF_RANDOM"):
        seed0 = random.SystemRandom().randrange(1, 1 << 31)
    else:
        seed0 = int(os.environ.get("KUMO_DIFF_SEED", "1"))
    kumo_user = os.environ.get("KUMO_USER", os.path.join(BUILD, "kumo-user"))
    if len(sys.argv) == 5 and sys.argv[1] == "--trace":
        return trace(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), count, length, kumo_user)
    print("# first seed %d (replay with KUMO_DIFF_SEED=%d)" % (seed0, seed0))

    missing = [t for t in (CROSS + "gcc", CROSS + "objdump", "qemu-riscv64")
               if not shutil.which(t)]
    if missing:
        print("ok - diff # SKIP missing %s (make deps)" % ", ".join(missing))
        return 0
    if not os.access(kumo_user, os.X_OK):
        tap(False, "diff: kumo-user", "%s is not built (make test-programs)" % kumo_user)
        return 1

    rc, out, err = run([kumo_user, "--isa"])
    isa = out.decode().strip().lower() if rc == 0 else ""
    exts = set(isa.split("_")[1:])
    have_zb = {"zba", "zbb", "zbs"} <= exts
    print("# kumo advertises %s" % (isa or "(unknown)"))

    os.makedirs(BUILD, exist_ok=True)
    failed = 0
    start = time.time()
    for n, kind in enumerate(kinds):
        seed = seed0 + n
        name = "diff %s seed=%d" % (kind, seed)
        if kind == "zb" and not have_zb:
            print("ok - %s # SKIP kumo does not advertise zba/zbb/zbs" % name)
            continue
        src = os.path.join(BUILD, "%s-%d.S" % (kind, seed))
        elf = os.path.join(BUILD, "%s-%d.elf" % (kind, seed))
        gen = [sys.executable, GEN, "--seed", str(seed), "--kind", kind, "--count", str(count),
               "--length", str(length), "-o", src]
        if not have_zb:
            gen.append("--no-zb")
        rc, _, err = run(gen)
        if rc != 0:
            tap(False, name, "generator failed: %s" % err.decode()[-300:])
            failed += 1
            continue
        rc, _, err = run([CROSS + "gcc", "-static", "-nostdlib", "-march=rv64gc_zba_zbb_zbs",
                          "-mabi=lp64d", "-o", elf, src])
        if rc != 0:
            tap(False, name, "assembling failed: %s" % err.decode()[-300:])
            failed += 1
            continue
        qrc, qout, qerr = run(["qemu-riscv64", "-cpu", QEMU_CPU, elf], timeout=60)
        if qrc != 0:
            tap(False, name, "qemu-riscv64 failed (status %s): %s" % (
                qrc, qerr.decode(errors="replace")[-300:]))
            failed += 1
            continue
        krc, kout, kerr = run([kumo_user, "--timeout", "60", elf], timeout=90)
        if not compare(name, elf, qout, kout, krc, kerr, count):
            failed += 1
            note("replay: python3 tests/diff/gen.py --seed %d --kind %s --count %d --length %d"
                 " -o x.S%s" % (seed, kind, count, length, "" if have_zb else " --no-zb"))
    note("%d programs x %d sequences x %d instructions in %.1f s" % (
        len(kinds), count, length, time.time() - start))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
