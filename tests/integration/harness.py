"""Console harness for booting guests under a hypervisor (kumo or QEMU) on a pseudo-terminal.

Usage (tests/integration/test_boot.py and bench/boot.py use it):

    vm = Console(kumo_argv(kernel=k, initrd=i), name="kumo-sbi")
    vm.boot()                     # kernel banner, then KUMO-INIT-OK, then the shell prompt
    out = vm.run("uname -m")      # output of one shell command (exit status checked)
    vm.poweroff()                 # types poweroff, waits for the VMM to exit with status 0
    vm.close()

The hypervisor runs on the slave side of a pty (its stdin/stdout are a terminal, as for a user
at a shell), its stderr goes to a separate file so VMM errors are never mixed with the guest's
console. A reader thread drains the console continuously, so the guest never blocks on output.
Each failure raises GuestFailure with a phase, the same words semu's boot tests use:
"did not boot", "no shell", "command failed", "did not power off", "wrong exit status";
GuestFailure.report() gives the detail plus the last console lines and the VMM's stderr.
Only the Python 3 standard library is used.
"""
import bisect
import codecs
import fcntl
import os
import secrets
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import threading
import time

ROOT = os.environ.get("KUMO_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
IMAGE_SCRIPT = os.path.join(ROOT, "guest", "debian-image.sh")
OPENSBI_DIR = "/usr/lib/riscv64-linux-gnu/opensbi/generic"
UBOOT_SMODE = "/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin"

DID_NOT_BOOT = "did not boot"
NO_SHELL = "no shell"
COMMAND_FAILED = "command failed"
NO_POWEROFF = "did not power off"
EXIT_STATUS = "wrong exit status"

BOOT_MARKER = "KUMO-INIT-OK"
KERNEL_BANNER = re.compile(r"Linux version \d+\.\d+")
PROMPT = re.compile(r"kumo:[^\n]*# $")
# CSI sequences (busybox's line editor asks the terminal for the cursor position) and other
# two-byte escapes; carriage returns go too, so patterns see plain "\n"-separated lines.
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]|\r")
_ESCAPE_PARTIAL = re.compile(r"\x1b(\[[0-9;?]*[ -/]*)?$")

CTRL_A_X = b"\x01x"


class Tap:
    """TAP-style result lines of one test program: "ok - PREFIXNAME (detail)" and
    "not ok - PREFIXNAME: why" followed by "# " lines; counts the failures."""

    def __init__(self, prefix=""):
        self.prefix = prefix
        self.failures = 0

    def ok(self, name, detail=""):
        print(f"ok - {self.prefix}{name}" + (f" ({detail})" if detail else ""), flush=True)

    def not_ok(self, name, why, extra=()):
        self.failures += 1
        print(f"not ok - {self.prefix}{name}: {why}", flush=True)
        for line in extra:
            print(f"# {line}", flush=True)


def make_www(tmp, label):
    """A directory for a test's HTTP server: page.txt ("LABEL TOKEN") and a 1 MiB random
    blob.bin. Returns (directory, token, blob bytes)."""
    www = os.path.join(tmp, "www")
    os.mkdir(www)
    token = secrets.token_hex(16)
    with open(os.path.join(www, "page.txt"), "w") as f:
        f.write(f"{label} {token}\n")
    blob = secrets.token_bytes(1 << 20)
    with open(os.path.join(www, "blob.bin"), "wb") as f:
        f.write(blob)
    return www, token, blob


def env_seconds(name, default):
    """Timeout from the environment (seconds), e.g. KUMO_TEST_BOOT_TIMEOUT=600."""
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return float(default)


class GuestFailure(Exception):
    def __init__(self, phase, detail, console=None):
        super().__init__(f"{phase}: {detail}")
        self.phase = phase
        self.detail = detail
        self.console = console

    def report(self, lines=30):
        """The failure's detail lines (console tail, VMM stderr, log path) for a test log."""
        out = []
        if self.console is not None:
            tail = self.console.tail(lines)
            if tail:
                out.append(f"last {len(tail)} console lines of {self.console.name}:")
                out.extend("  | " + line for line in tail)
            err = self.console.stderr_text().strip().splitlines()
            if err:
                out.append(f"{self.console.name} stderr:")
                out.extend("  ! " + line for line in err[-10:])
            if self.console.log_path:
                out.append(f"full console log: {self.console.log_path}")
        return out


class Console:
    """A hypervisor process whose console is a pty we read and type into.

    Thread use: one test thread calls the methods; a private reader thread appends console
    output under self._cond, which also guards self._text and self._marks.
    """

    def __init__(self, argv, name="vm", log_path=None, env=None, prompt=PROMPT):
        self.argv = list(argv)
        self.name = name
        self.prompt = prompt
        self.log_path = log_path
        self._cond = threading.Condition()
        self._text = ""  # cleaned console text, append-only
        self._pending = ""  # decoded text whose last escape sequence is not complete yet
        self._marks = []  # (len(self._text) after a chunk, monotonic arrival time)
        self._pos = 0  # where the next expect() starts searching
        self._eof = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._log = open(log_path, "wb") if log_path else None
        self._stderr = tempfile.TemporaryFile()
        self._cmd_seq = 0

        master, slave = pty.openpty()
        # A 200-column terminal so busybox's line editor never wraps the commands we type.
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        except OSError:
            pass
        self.master = master
        self.start_time = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=slave,
                stdout=slave,
                stderr=self._stderr,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as e:
            os.close(slave)
            os.close(master)
            self.master = None
            raise GuestFailure(DID_NOT_BOOT, f"cannot start {self.argv[0]}: {e.strerror}", None) from e
        os.close(slave)
        self._reader = threading.Thread(target=self._read_loop, name=f"console-{name}", daemon=True)
        self._reader.start()

    # --- reading -------------------------------------------------------------------------------
    def _read_loop(self):
        while True:
            try:
                r, _, _ = select.select([self.master], [], [], 0.5)
                if not r:
                    if self.proc.poll() is not None and not self._drain_ready():
                        break
                    continue
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every slave fd closed, the VMM is gone
                break
            if not data:
                break
            self._append(data, time.monotonic())
        with self._cond:
            self._pending = _ESCAPE.sub("", self._pending)
            self._text += self._pending
            self._pending = ""
            self._marks.append((len(self._text), time.monotonic()))
            self._eof = True
            self._cond.notify_all()

    def _drain_ready(self):
        try:
            r, _, _ = select.select([self.master], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(r)

    def _append(self, data, when):
        if self._log:
            self._log.write(data)
            self._log.flush()
        with self._cond:
            s = self._pending + self._decoder.decode(data)
            m = _ESCAPE_PARTIAL.search(s)
            cut = m.start() if m else len(s)
            self._text += _ESCAPE.sub("", s[:cut])
            self._pending = s[cut:]
            self._marks.append((len(self._text), when))
            self._cond.notify_all()

    def _time_at(self, offset):
        """Monotonic time at which console text up to offset had arrived."""
        i = bisect.bisect_left(self._marks, (offset, 0.0))
        return self._marks[min(i, len(self._marks) - 1)][1] if self._marks else time.monotonic()

    def expect(self, pattern, timeout, phase, what):
        """Waits until pattern (str or compiled regex) appears after the last match.

        Returns (match, seconds since start when the matching text arrived); raises
        GuestFailure(phase) on timeout or when the VMM exits first.
        """
        rx = re.compile(re.escape(pattern)) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = rx.search(self._text, self._pos)
                if m:
                    self._pos = m.end()
                    return m, self._time_at(m.end()) - self.start_time
                if self._eof:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 1.0))
        if self._eof:
            try:
                rc = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                raise GuestFailure(phase, f"{what}: the VMM closed its console", self) from None
            raise GuestFailure(phase, f"{what}: the VMM exited with status {rc} first", self)
        raise GuestFailure(phase, f"{what}: not seen within {timeout:.0f} s", self)

    def text(self):
        with self._cond:
            return self._text

    def tail(self, lines=30):
        text = self.text().rstrip("\n")
        return text.split("\n")[-lines:] if text else []

    def stderr_text(self):
        try:
            self._stderr.seek(0)
            return self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    # --- typing --------------------------------------------------------------------------------
    def send(self, data, chunk=8, gap=0.01):
        """Types bytes at the console a few at a time, as a person (or a paste) would."""
        if isinstance(data, str):
            data = data.encode()
        for i in range(0, len(data), chunk):
            try:
                os.write(self.master, data[i : i + chunk])
            except OSError as e:
                raise GuestFailure(COMMAND_FAILED, f"cannot type at the console: {e.strerror}", self) from e
            if gap:
                time.sleep(gap)

    # --- Linux guest flow ----------------------------------------------------------------------
    def boot(self, timeout=240.0, banner=True):
        """Kernel banner, the init's marker, the prompt. Returns seconds to the marker."""
        t0 = time.monotonic()
        if banner:
            self.expect(KERNEL_BANNER, timeout, DID_NOT_BOOT, "no kernel banner ('Linux version')")
        left = max(1.0, timeout - (time.monotonic() - t0))
        _, t_marker = self.expect(BOOT_MARKER, left, DID_NOT_BOOT, f"no {BOOT_MARKER} from /init")
        left = max(30.0, timeout - (time.monotonic() - t0))
        self.expect(self.prompt, left, NO_SHELL, "no shell prompt ('kumo:/# ')")
        return t_marker

    def run(self, command, timeout=60.0, check=True):
        """Runs one shell command; returns its output (str, without the trailing newline).

        The output is delimited by marker lines the shell computes ($((...)) and $?), so neither
        the echo of the typed line nor the kernel's messages can be mistaken for it.
        """
        self._cmd_seq += 1
        n = self._cmd_seq
        line = f"echo K{n}B$((0)); {command}; echo K{n}E$?\n"
        self.send(line)
        start_rx = re.compile(rf"(?m)^K{n}B0\n")
        self.expect(start_rx, timeout, COMMAND_FAILED, f"'{command}' did not start")
        with self._cond:
            body_start = self._pos
        m, _ = self.expect(re.compile(rf"(?m)^K{n}E(\d+)\n"), timeout, COMMAND_FAILED, f"'{command}' did not finish")
        with self._cond:
            body = self._text[body_start : m.start()]
        self.expect(self.prompt, timeout, NO_SHELL, f"no prompt after '{command}'")
        rc = int(m.group(1))
        if check and rc != 0:
            raise GuestFailure(COMMAND_FAILED, f"'{command}' exited with status {rc}: {body.strip()[:200]!r}", self)
        return body.rstrip("\n")

    def poweroff(self, command="poweroff", timeout=120.0, expect_status=0):
        self.send(command + "\n")
        self.wait_exit(timeout, expect_status, f"after '{command}'")

    def wait_exit(self, timeout, expect_status, what):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise GuestFailure(NO_POWEROFF, f"the VMM was still running {timeout:.0f} s {what}", self) from None
        if expect_status is not None and rc != expect_status:
            raise GuestFailure(EXIT_STATUS, f"the VMM exited with status {rc} {what}, expected {expect_status}", self)
        return rc

    def prompt_after_restore(self, timeout=60.0):
        """A guest restored from a snapshot prints nothing until poked: types a newline and waits
        for the shell prompt (GuestFailure "no shell" when it does not come)."""
        self.send("\n")
        self.expect(self.prompt, timeout, NO_SHELL, "no prompt after restore")

    def quit(self, timeout=15.0):
        """Ctrl-A x, the escape kumo shares with QEMU's -nographic console. Returns the status."""
        self.send(CTRL_A_X, gap=0)
        return self.wait_exit(timeout, None, "after Ctrl-A x")

    # --- lifecycle -----------------------------------------------------------------------------
    @property
    def pid(self):
        return self.proc.pid

    def kill(self):
        """SIGKILL to the VMM and waits for it: it ends at once, as in a crash (the original of a
        snapshot whose clones must not meet it)."""
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def close(self):
        """Stops the VMM if it still runs (SIGTERM, then SIGKILL) and releases the pty."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self._reader.join(timeout=5)
        if self.master is not None:
            os.close(self.master)
            self.master = None
        if self._log:
            self._log.close()
            self._log = None
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# --- command lines -----------------------------------------------------------------------------
def kumo_bin():
    return os.environ.get("KUMO_BIN") or os.path.join(ROOT, "build", "kumo")


def kumo_argv(kernel=None, initrd=None, append=None, bios=None, mem="512M", cpus=None, extra=()):
    argv = [kumo_bin(), "run"]
    if bios:
        argv += ["--bios", bios]
    if kernel:
        argv += ["--kernel", kernel]
    if initrd:
        argv += ["--initrd", initrd]
    if append is not None:
        argv += ["--append", append]
    if mem:
        argv += ["--mem", mem]
    if cpus:
        argv += ["--cpus", str(cpus)]
    return argv + list(extra)


def qemu_bin():
    return os.environ.get("QEMU_BIN") or shutil.which("qemu-system-riscv64") or "qemu-system-riscv64"


def qemu_argv(kernel=None, initrd=None, append=None, bios=None, mem="512M", cpus=None, extra=()):
    """QEMU's virt board with TCG; bios None means QEMU's bundled OpenSBI."""
    argv = [qemu_bin(), "-M", "virt", "-nographic", "-m", mem]
    if cpus:
        argv += ["-smp", str(cpus)]
    if bios:
        argv += ["-bios", bios]
    if kernel:
        argv += ["-kernel", kernel]
    if initrd:
        argv += ["-initrd", initrd]
    if append is not None:
        argv += ["-append", append]
    return argv + list(extra)


def default_image(quiet=True):
    """Paths of the default guest, built (or found in the cache) by guest/debian-image.sh.

    Returns {"kernel": path, "initramfs": path, "version": str}; raises RuntimeError with the
    script's last lines when it fails. KUMO_GUEST_DIR overrides the cache spot.
    """
    argv = ["bash", IMAGE_SCRIPT] + (["--quiet"] if quiet else [])
    if os.environ.get("KUMO_GUEST_DIR"):
        argv += ["--out", os.environ["KUMO_GUEST_DIR"]]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"guest/debian-image.sh failed (status {p.returncode}): {last}")
    paths = {}
    for line in p.stdout.splitlines():
        key, _, value = line.partition(":")
        paths[key.strip()] = value.strip()
    if not all(os.path.isfile(paths.get(k, "")) for k in ("kernel", "initramfs")):
        raise RuntimeError(f"guest/debian-image.sh printed no usable paths: {p.stdout.strip()!r}")
    return paths


def proc_cpu_seconds(pid):
    """utime + stime of a process (all its threads) in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # proc(5): fields 14 and 15
    return ticks / os.sysconf("SC_CLK_TCK")


# --- network namespaces (root only; tests/net/test_tap.py, tests/api/test_clone_tap.py) ---------
def netns_unavailable():
    """Why network namespaces with tap devices cannot be made here ("" when they can): the
    tests that need them print "ok - NAME # SKIP <why>"."""
    if os.geteuid() != 0:
        return "not root"
    if not shutil.which("ip"):
        return "no ip command (iproute2)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return ""


def ip(*args, timeout=30):
    """Runs ip(8) with args; returns its output, RuntimeError with its message on failure."""
    p = subprocess.run(["ip", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {p.stderr.strip() or f'status {p.returncode}'}")
    return p.stdout


def netns_exec(ns, *argv, timeout=60):
    """Runs argv inside network namespace ns; returns (status, stdout, stderr)."""
    p = subprocess.run(["ip", "netns", "exec", ns, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def netns_create(ns, tap, host_cidr):
    """A new namespace ns with lo up and a tap device `tap` (address host_cidr, up) for a VMM
    started inside it with --net tap,ifname=TAP. RuntimeError when a step fails."""
    ip("netns", "add", ns)
    ip("-n", ns, "link", "set", "lo", "up")
    rc, _, err = netns_exec(ns, "ip", "tuntap", "add", "dev", tap, "mode", "tap")
    if rc != 0:
        raise RuntimeError(f"ip tuntap add dev {tap} mode tap: {err.strip()}")
    ip("-n", ns, "addr", "add", host_cidr, "dev", tap)
    ip("-n", ns, "link", "set", tap, "up")


def netns_delete(ns, tap):
    """Deletes tap and namespace ns; quiet when either is gone already."""
    subprocess.run(["ip", "-n", ns, "link", "del", tap], capture_output=True, timeout=20)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def netns_sweep(prefix, tap):
    """Deletes namespaces named PREFIX<pid> or PREFIX<pid>-<n> (a test's own names) whose test
    process <pid> no longer exists: what a killed run left behind."""
    try:
        names = ip("netns", "list")
    except (OSError, RuntimeError):
        return
    for line in names.splitlines():
        m = re.match(rf"({re.escape(prefix)}(\d+)(?:-\d+)?)\b", line)
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            netns_delete(m.group(1), tap)
