#!/usr/bin/env python3
"""Runs the bare-metal hostile guests (tests/guests/*.S) as firmware under `kumo run --bios`
and checks their console output (TAP output).

Every line a guest must print is written in its source as a comment `expect: TEXT`;
`@symbol` or `@symbol+OFFSET` in TEXT stands for the address of that symbol in the guest's
ELF. Per guest: one test per expected line (found in order), one that no trap other than the
expected ones was reported, and one for kumo's exit status (0, or 0/3 for the wild guest, and
never death by a signal or a timeout).

Environment: KUMO_BIN (default build/kumo), KUMO_GUESTS=a,b to run only some guests.
"""
import os
import re
import subprocess
import sys

ROOT = os.environ.get("KUMO_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
KUMO = os.environ.get("KUMO_BIN", os.path.join(ROOT, "build", "kumo"))
SRC = os.path.join(ROOT, "tests", "guests")
OUT = os.path.join(ROOT, "build", "guests")

# Guests whose exit status may also be 3 (a random write may hit the syscon's fail code), and
# whose traps are random, so unexpected trap lines are not counted.
WILD = {"wild"}
TIMEOUT = {"wild": 120}


def tap(ok, name, why=""):
    print(("ok - %s" % name) if ok else ("not ok - %s: %s" % (name, why)))
    sys.stdout.flush()


def symbols(elf):
    p = subprocess.run(["riscv64-linux-gnu-nm", elf], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    syms = {}
    for line in p.stdout.decode().split("\n"):
        parts = line.split()
        if len(parts) == 3:
            syms[parts[2]] = int(parts[0], 16)
    return syms


def expectations(src, syms):
    text = open(src).read()
    out = []
    for m in re.finditer(r"expect:\s*(.*?)\s*\*/", text):
        line = m.group(1)

        def addr(mm):
            base = syms.get(mm.group(1))
            if base is None:
                raise KeyError(mm.group(1))
            off = int(mm.group(2), 0) if mm.group(2) else 0
            return "0x%x" % (base + off)

        out.append(re.sub(r"@([A-Za-z_][A-Za-z0-9_]*)(?:\+((?:0x)?[0-9a-fA-F]+))?", addr, line))
    return out


def show(output):
    for line in output[-40:]:
        print("#   " + line)


def run_guest(name):
    src = os.path.join(SRC, name + ".S")
    binf = os.path.join(OUT, name + ".bin")
    elf = os.path.join(OUT, name + ".elf")
    tname = "guests/" + name
    if not (os.path.exists(binf) and os.path.exists(elf)):
        tap(False, tname, "%s is not built (make test-programs)" % binf)
        return
    try:
        expect = expectations(src, symbols(elf))
    except KeyError as e:
        tap(False, tname, "expectation names unknown symbol %s" % e)
        return
    cmd = [KUMO, "run", "--bios", binf, "--mem", "64M"]
    timed_out = False
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=TIMEOUT.get(name, 30))
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        timed_out, rc, out, err = True, None, e.stdout or b"", e.stderr or b""
    output = out.decode(errors="replace").replace("\r", "").split("\n")
    errlines = err.decode(errors="replace").strip().split("\n")
    failed = False

    pos = 0
    for want in expect:
        try:
            idx = output.index(want, pos)
            tap(True, "%s: %s" % (tname, want))
            pos = idx + 1
        except ValueError:
            why = "printed out of order" if want in output else "not printed"
            tap(False, "%s: %s" % (tname, want), why)
            failed = True

    if name not in WILD:
        traps = [l for l in output if l.startswith("trap ")]
        extra = [l for l in traps if l not in expect]
        if extra:
            tap(False, "%s: no unexpected traps" % tname, "%d unexpected: %s" % (
                len(extra), "; ".join(extra[:3])))
            failed = True
        else:
            tap(True, "%s: no unexpected traps" % tname)

    allowed = (0, 3) if name in WILD else (0,)
    if timed_out:
        tap(False, "%s: exit status" % tname, "timed out after %d s" % TIMEOUT.get(name, 30))
        failed = True
    elif rc < 0:
        tap(False, "%s: exit status" % tname, "kumo killed by signal %d" % -rc)
        failed = True
    elif rc not in allowed:
        tap(False, "%s: exit status" % tname, "kumo exited %d (want %s): %s" % (
            rc, " or ".join(map(str, allowed)), errlines[-1][:200] if errlines else ""))
        failed = True
    else:
        tap(True, "%s: exit status %d" % (tname, rc))
    if failed:
        print("# %s output (last lines):" % tname)
        show(output)
        if any(errlines):
            print("# stderr:")
            show(errlines)


def main():
    names = sorted(f[:-2] for f in os.listdir(SRC) if f.endswith(".S") and f != "common.S")
    only = os.environ.get("KUMO_GUESTS")
    if only:
        names = [n for n in names if n in only.split(",")]
    if not os.access(KUMO, os.X_OK):
        tap(False, "guests: kumo", "%s is not built (make)" % KUMO)
        return 1
    for name in names:
        run_guest(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
