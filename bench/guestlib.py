"""Shared pieces of bench/workloads.py and bench/io.py: the guest programs (bench/workloads/,
built by bench/workloads.mk) packed into an extra initramfs archive, booting kumo and QEMU on the
same kernel and initramfs, running a program under /bench/ktime inside a guest, and the report.

Only the Python 3 standard library and tests/integration/harness.py are used.
"""
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness as h  # noqa: E402

BUILD = os.path.join(h.ROOT, os.environ.get("BUILD", "build"))
PROG_DIR = os.path.join(BUILD, "bench", "workloads")
OUT_DIR = os.path.join(BUILD, "bench")
LOG_DIR = os.path.join(OUT_DIR, "console")
GUEST_DIR = "/bench"
APPEND = "console=ttyS0"


class BenchError(Exception):
    """A failure that makes the numbers meaningless: the script stops and says why."""


def progress(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def positive_int(name, default):
    raw = os.environ.get(name, str(default))
    try:
        v = int(raw)
    except ValueError:
        raise BenchError(f"{name}={raw!r} is not an integer") from None
    if v < 1:
        raise BenchError(f"{name}={raw!r} must be at least 1")
    return v


def parts_selected(part):
    """BENCH_PARTS (comma-separated, default all) names the parts of `make bench` to run."""
    raw = os.environ.get("BENCH_PARTS", "").strip()
    return not raw or part in [p.strip() for p in raw.split(",")]


def build_programs():
    p = subprocess.run(["make", "-s", "-C", h.ROOT, "bench-workloads"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        last = (p.stdout.strip().splitlines() or ["make failed"])[-3:]
        raise BenchError("cannot build the guest programs (make bench-workloads): " + " / ".join(last))


def make_initrd(base, tmp):
    """A copy of the default initramfs with an archive holding build/bench/workloads/* at /bench
    appended (the kernel unpacks concatenated cpio archives in order)."""
    tree = os.path.join(tmp, "extra")
    dest = os.path.join(tree, GUEST_DIR.lstrip("/"))
    os.makedirs(dest)
    for src_c in sorted(os.listdir(os.path.join(HERE, "workloads"))):
        name, ext = os.path.splitext(src_c)
        if ext != ".c":
            continue
        src = os.path.join(PROG_DIR, name)
        if not os.path.isfile(src):
            raise BenchError(f"{src} was not built")
        shutil.copy(src, os.path.join(dest, name))
        os.chmod(os.path.join(dest, name), 0o755)
    extra = os.path.join(tmp, "extra.cpio.gz")
    subprocess.run([sys.executable, os.path.join(h.ROOT, "guest", "mkcpio.py"), tree, extra], check=True)
    out = os.path.join(tmp, "initramfs-bench.cpio.gz")
    with open(out, "wb") as o:
        for part in (base, extra):
            with open(part, "rb") as i:
                shutil.copyfileobj(i, o)
    return out


def image():
    try:
        return h.default_image()
    except RuntimeError as e:
        raise BenchError(str(e)) from None


def argv_for(side, kernel, initrd, mem="1G", cpus=1, extra_kumo=(), extra_qemu=()):
    if side == "kumo":
        return h.kumo_argv(kernel=kernel, initrd=initrd, append=APPEND, mem=mem, cpus=cpus, extra=extra_kumo)
    return h.qemu_argv(kernel=kernel, initrd=initrd, append=APPEND, mem=mem, cpus=cpus, extra=extra_qemu)


def check_binaries():
    if not os.access(h.kumo_bin(), os.X_OK):
        raise BenchError(f"{h.kumo_bin()} is missing or not executable (build failed?)")
    if not shutil.which(h.qemu_bin()) and not os.access(h.qemu_bin(), os.X_OK):
        raise BenchError(f"{h.qemu_bin()} not found (run 'make deps')")


def start(side, argv, label):
    """Starts a VM on a console (build/bench/console/LABEL.log); returns the Console."""
    os.makedirs(LOG_DIR, exist_ok=True)
    try:
        return h.Console(argv, name=f"{side}-{label}", log_path=os.path.join(LOG_DIR, f"{label}.log"))
    except h.GuestFailure as e:
        raise BenchError(f"{side} ({label}): {e.detail}") from None


def wait_shell(vm, timeout):
    """Waits for the boot marker and the shell; returns seconds to the marker."""
    try:
        return vm.boot(timeout)
    except h.GuestFailure as e:
        raise BenchError(f"{vm.name}: {e.phase}: {e.detail}\n" + "\n".join(e.report(15))) from None


def boot(side, argv, label, timeout):
    """Starts a VM and waits for its shell; returns the Console. Raises BenchError on failure."""
    vm = start(side, argv, label)
    try:
        wait_shell(vm, timeout)
    except BenchError:
        vm.close()
        raise
    return vm


def poweroff(vm, timeout=120):
    try:
        vm.poweroff("poweroff", timeout=timeout, expect_status=None)
    except h.GuestFailure as e:
        progress(f"{vm.name} did not power off ({e.detail}); stopping it")


def run(vm, command, timeout, what=None):
    try:
        return vm.run(command, timeout=timeout)
    except h.GuestFailure as e:
        raise BenchError(f"{vm.name}: {what or command}: {e.phase}: {e.detail}\n" + "\n".join(e.report(15))) from None


def ktime(vm, name, argv, timeout, instret=False):
    """Runs argv under /bench/ktime in the guest. Returns {"secs", "instret" (or None), "out"};
    raises BenchError when the program fails or ktime prints no result."""
    cmd = " ".join([f"{GUEST_DIR}/ktime"] + (["-i"] if instret else []) + [name] + [shlex.quote(a) for a in argv])
    out = run(vm, cmd, timeout, what=name)
    line = next((l for l in out.splitlines() if l.startswith(f"KTIME {name} ")), None)
    if line is None:
        raise BenchError(f"{vm.name}: {name}: no KTIME line in {out.strip()[-300:]!r}")
    fields = dict(f.split("=", 1) for f in line.split()[2:] if "=" in f)
    try:
        status, ns, ir = int(fields["status"]), int(fields["ns"]), int(fields["instret"])
    except (KeyError, ValueError):
        raise BenchError(f"{vm.name}: {name}: malformed KTIME line {line!r}") from None
    if status != 0:
        raise BenchError(f"{vm.name}: {name} exited with status {status}: {out.strip()[-300:]!r}")
    if ns <= 0:
        raise BenchError(f"{vm.name}: {name}: non-positive time {ns} ns")
    return {"secs": ns / 1e9, "instret": ir if instret and ir >= 0 else None, "out": fields.get("out", "-")}


def median(values):
    return statistics.median(values) if values else None


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def fmt(v, digits=2):
    return "n/a" if v is None else f"{v:.{digits}f}"


def write_section(name, text):
    """Prints a report section and appends it to build/bench/latest.md; it is also kept alone in
    build/bench/<name>.md."""
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, f"{name}.md"), "w") as f:
        f.write(text)
    with open(os.path.join(OUT_DIR, "latest.md"), "a") as f:
        f.write("\n" + text)
    sys.stdout.write("\n" + text)
    sys.stdout.flush()


def version_of(argv):
    """First line of a program's version output, or "?"."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=10)
        return (p.stdout.strip().splitlines() or ["?"])[0]
    except (OSError, subprocess.TimeoutExpired):
        return "?"
