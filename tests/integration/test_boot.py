#!/usr/bin/env python3
"""Boots real guests and checks them from their own shell (TAP-style output).

Flows, each a series of checks that stops at the first one that leaves no usable guest:
  kumo-sbi      kumo with its default firmware (the VMM serves SBI), the default Debian guest
  kumo-opensbi  kumo with Debian's OpenSBI (fw_dynamic) as --bios and the same kernel
  kumo-uboot    kumo with OpenSBI + S-mode u-boot as the next stage: u-boot's prompt
  qemu-*        the same three on qemu-system-riscv64 -M virt, only with KUMO_TEST_QEMU=1: they
                validate this harness and the guest image, not kumo

Each check prints "ok - FLOW: CHECK" or "not ok - FLOW: CHECK: PHASE: detail" followed by the
console's last lines as "# " comments; the phases are "did not boot", "no shell", "command
failed", "did not power off" and "wrong exit status". Exits 1 when any check failed.

Environment: KUMO_BIN (default build/kumo), KUMO_TEST_QEMU=1, KUMO_TEST_FLOWS=REGEX (run only
matching flows), KUMO_TEST_BOOT_TIMEOUT (seconds to the shell, default 240),
KUMO_TEST_CMD_TIMEOUT (per command, default 60), KUMO_GUEST_DIR (build the image there).
The default guest comes from guest/debian-image.sh (cached; built from Debian's archive when
missing).
"""
import math
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
_tap = h.Tap("")
ok, not_ok = _tap.ok, _tap.not_ok

BOOT_TIMEOUT = h.env_seconds("KUMO_TEST_BOOT_TIMEOUT", 240)
CMD_TIMEOUT = h.env_seconds("KUMO_TEST_CMD_TIMEOUT", 60)
FW_DYNAMIC = os.path.join(h.OPENSBI_DIR, "fw_dynamic.bin")
APPEND = "console=ttyS0 earlycon"
LOG_DIR = os.path.join(h.ROOT, "build", "test-logs", "console")


class Flow:
    """Runs named checks on one guest; a GuestFailure in a fatal check ends the flow."""

    def __init__(self, name):
        self.name = name
        self.alive = True

    def check(self, what, fn, fatal=False):
        if not self.alive:
            return None
        try:
            result = fn()
        except h.GuestFailure as e:
            not_ok(f"{self.name}: {what}", f"{e.phase}: {e.detail}", e.report())
            if fatal or e.phase in (h.DID_NOT_BOOT, h.NO_SHELL, h.NO_POWEROFF, h.EXIT_STATUS):
                self.alive = False
            return None
        ok(f"{self.name}: {what}")
        return result


def expect_equal(vm, command, got, want):
    if got != want:
        raise h.GuestFailure(h.COMMAND_FAILED, f"'{command}' printed {got!r}, expected {want!r}", vm)


# Floating point without awk's math library (Debian's busybox-static awk has none): series and
# Newton iterations in doubles, printed with 17 significant digits (which identify a double
# exactly). The host repeats each program's arithmetic, operation by operation, in Python floats:
# IEEE 754 rounds +, -, *, / exactly, so the guest must print the very same digits.
def _machin():
    def t(x):
        s, p = 0.0, x
        for k in range(1, 60, 2):
            s += p / k
            p *= -x * x
        return s

    return 16 * t(1 / 5) - 4 * t(1 / 239)


def _e():
    e = p = 1.0
    for k in range(1, 30):
        p /= k
        e += p
    return e


def _sqrt2():
    x = 1.0
    for _ in range(40):
        x = (x + 2 / x) / 2
    return x


def _log2():
    y = 1 / 3
    s, p = 0.0, y
    for k in range(1, 80, 2):
        s += p / k
        p *= y * y
    return 2 * s


def _exp_neg():
    s = p = 1.0
    for k in range(1, 60):
        p *= 7.5 / k
        s += p
    return 1e6 / s


FLOAT_PROGRAMS = [
    (
        "awk 'function t(x,s,p,k){p=x;for(k=1;k<60;k+=2){s+=p/k;p*=-x*x};return s}"
        " BEGIN{printf \"%.17g\\n\",16*t(1/5)-4*t(1/239)}'",
        _machin,
        math.pi,
    ),
    ("awk 'BEGIN{e=1;p=1;for(k=1;k<30;k++){p/=k;e+=p};printf \"%.17g\\n\",e}'", _e, math.e),
    ("awk 'BEGIN{x=1;for(i=0;i<40;i++)x=(x+2/x)/2;printf \"%.17g\\n\",x}'", _sqrt2, math.sqrt(2)),
    ("awk 'BEGIN{y=1/3;p=y;for(k=1;k<80;k+=2){s+=p/k;p*=y*y};printf \"%.17g\\n\",2*s}'", _log2, math.log(2)),
    (
        "awk 'BEGIN{s=1;p=1;for(k=1;k<60;k++){p*=7.5/k;s+=p};printf \"%.17g\\n\",1e6/s}'",
        _exp_neg,
        1e6 * math.exp(-7.5),
    ),
]


def check_float(vm):
    for command, emulate, libm in FLOAT_PROGRAMS:
        want = emulate()
        if abs(want - libm) > 1e-12 * max(1.0, abs(libm)):  # the program itself would be wrong
            raise h.GuestFailure(h.COMMAND_FAILED, f"test bug: {command} computes {want!r}, libm says {libm!r}", vm)
        expect_equal(vm, command, vm.run(command, CMD_TIMEOUT).strip(), "%.17g" % want)


def check_isa(vm):
    out = vm.run("grep -m1 '^isa' /proc/cpuinfo", CMD_TIMEOUT)
    if not re.match(r"isa\s*:\s*rv64imafdc", out):
        raise h.GuestFailure(h.COMMAND_FAILED, f"/proc/cpuinfo isa line is {out!r}, expected rv64imafdc...", vm)


def check_date(vm):
    out = vm.run("date +%s", CMD_TIMEOUT).strip()
    host = time.time()
    if not out.isdigit():
        raise h.GuestFailure(h.COMMAND_FAILED, f"'date +%s' printed {out!r}", vm)
    if abs(int(out) - host) > 300:
        raise h.GuestFailure(h.COMMAND_FAILED, f"guest time {out} is {int(out) - host:+.0f} s from the host's", vm)


def check_ctrl_c(vm):
    """Ctrl-C at the console stops a foreground command and gives the prompt back.

    First the console shell's own signal state (proc(5) SigIgn/SigCgt, hex masks with bit N-1
    for signal N): an interactive shell catches SIGINT and must not have inherited it ignored,
    or nothing it starts could be interrupted. Then `sleep 100` and Ctrl-C. The Ctrl-C goes out
    only after the command line has started to run (a marker the shell computes is printed
    first): a Ctrl-C typed while busybox's line editor still holds the terminal in raw mode is
    an ordinary input byte, not a signal, on any machine, and would be read after sleep ends.
    """
    out = vm.run("grep -E '^Sig(Ign|Cgt):' /proc/$$/status", CMD_TIMEOUT)
    masks = dict(re.findall(r"(?m)^(SigIgn|SigCgt):\s*([0-9a-fA-F]+)", out))
    if len(masks) != 2:
        raise h.GuestFailure(h.COMMAND_FAILED, f"no SigIgn/SigCgt lines in /proc/$$/status: {out!r}", vm)
    sigint = 1 << (2 - 1)
    if int(masks["SigIgn"], 16) & sigint:
        raise h.GuestFailure(h.COMMAND_FAILED, f"the console shell ignores SIGINT (SigIgn {masks['SigIgn']})", vm)
    if not int(masks["SigCgt"], 16) & sigint:
        raise h.GuestFailure(h.COMMAND_FAILED, f"the console shell does not catch SIGINT (SigCgt {masks['SigCgt']})",
                             vm)
    vm.send("echo KSLEEP$((6*7)); sleep 100; echo KSLEPT$((6*7))\n")
    vm.expect(re.compile(r"(?m)^KSLEEP42\n"), CMD_TIMEOUT, h.COMMAND_FAILED, "'sleep 100' did not start")
    time.sleep(0.5)
    t0 = time.monotonic()
    vm.send(b"\x03", gap=0)
    vm.expect(h.PROMPT, 10, h.COMMAND_FAILED, "Ctrl-C did not stop 'sleep 100' (no prompt within 10 s)")
    if "KSLEPT42" in vm.text():
        raise h.GuestFailure(h.COMMAND_FAILED, "Ctrl-C stopped 'sleep 100' but the rest of the line ran", vm)
    secs = time.monotonic() - t0
    expect_equal(vm, "echo alive", vm.run("echo alive", CMD_TIMEOUT), "alive")
    return secs


def check_modules(vm):
    out = vm.run("cat /proc/modules", CMD_TIMEOUT)
    loaded = {line.split()[0] for line in out.splitlines() if line.strip()}
    missing = [m for m in ("virtio_mmio", "virtio_blk", "virtio_net", "virtio_rng", "ext4") if m not in loaded]
    if missing:
        raise h.GuestFailure(h.COMMAND_FAILED, f"modules not loaded: {' '.join(missing)}", vm)


def linux_flow(name, argv, opensbi_banner=False, end="poweroff"):
    """end: how the guest is left, "poweroff" or "exit" (the console shell exits; init powers off)."""
    flow = Flow(name)
    os.makedirs(LOG_DIR, exist_ok=True)
    try:
        vm = h.Console(argv, name=name, log_path=os.path.join(LOG_DIR, f"{name}.log"))
    except h.GuestFailure as e:
        not_ok(f"{name}: boot to shell", f"{e.phase}: {e.detail}")
        return
    with vm:
        if opensbi_banner:
            flow.check(
                "OpenSBI banner",
                lambda: vm.expect(re.compile(r"OpenSBI v\d+\.\d+"), BOOT_TIMEOUT, h.DID_NOT_BOOT, "no OpenSBI banner"),
                fatal=True,
            )
        flow.check("boot to shell", lambda: vm.boot(BOOT_TIMEOUT), fatal=True)
        flow.check("uname -m", lambda: expect_equal(vm, "uname -m", vm.run("uname -m", CMD_TIMEOUT), "riscv64"))
        flow.check("cpuinfo isa rv64imafdc", lambda: check_isa(vm))
        flow.check("modules loaded", lambda: check_modules(vm))
        flow.check("floating point (awk)", lambda: check_float(vm))
        flow.check("date matches the host (RTC)", lambda: check_date(vm))
        flow.check("Ctrl-C stops a command (SIGINT not ignored)", lambda: check_ctrl_c(vm))
        flow.check(f"'{end}' powers off, exit status 0", lambda: vm.poweroff(end, timeout=120, expect_status=0))


def uboot_flow(name, argv):
    flow = Flow(name)
    os.makedirs(LOG_DIR, exist_ok=True)
    try:
        vm = h.Console(argv, name=name, log_path=os.path.join(LOG_DIR, f"{name}.log"), prompt=re.compile(r"=> $"))
    except h.GuestFailure as e:
        not_ok(f"{name}: u-boot prompt", f"{e.phase}: {e.detail}")
        return

    def reach_prompt():
        vm.expect(re.compile(r"U-Boot 20\d\d"), BOOT_TIMEOUT, h.DID_NOT_BOOT, "no U-Boot banner")
        vm.expect("Hit any key to stop autoboot", BOOT_TIMEOUT, h.NO_SHELL, "no autoboot countdown")
        vm.send(" ")
        vm.expect(re.compile(r"(?m)^=> $"), CMD_TIMEOUT, h.NO_SHELL, "no '=> ' prompt")

    def version():
        vm.send("version\n")
        vm.expect(re.compile(r"(?m)^U-Boot 20\d\d\.\d\d"), CMD_TIMEOUT, h.COMMAND_FAILED, "'version' printed no version")
        vm.expect(re.compile(r"(?m)^=> $"), CMD_TIMEOUT, h.NO_SHELL, "no prompt after 'version'")

    def echo():
        vm.send("setenv kumo_x 40\n")
        vm.expect(re.compile(r"(?m)^=> $"), CMD_TIMEOUT, h.NO_SHELL, "no prompt after 'setenv'")
        vm.send("echo k${kumo_x}2\n")
        vm.expect(re.compile(r"(?m)^k402$"), CMD_TIMEOUT, h.COMMAND_FAILED, "'echo k${kumo_x}2' did not print k402")

    with vm:
        flow.check("OpenSBI banner", lambda: vm.expect(re.compile(r"OpenSBI v\d+\.\d+"), BOOT_TIMEOUT, h.DID_NOT_BOOT,
                                                       "no OpenSBI banner"), fatal=True)
        flow.check("u-boot prompt", reach_prompt, fatal=True)
        flow.check("u-boot version", version)
        flow.check("u-boot echo", echo)
        flow.check("Ctrl-A x quits", lambda: vm.quit(15))


def main():
    selected = re.compile(os.environ.get("KUMO_TEST_FLOWS", "."))
    with_qemu = os.environ.get("KUMO_TEST_QEMU") == "1"
    try:
        image = h.default_image()
    except RuntimeError as e:
        not_ok("default guest image", str(e))
        return 1
    ok(f"default guest image ({image.get('version', '?')})")
    k, i = image["kernel"], image["initramfs"]

    flows = [
        ("kumo-sbi", linux_flow, h.kumo_argv(kernel=k, initrd=i, append=APPEND), {}),
        ("kumo-opensbi", linux_flow, h.kumo_argv(bios=FW_DYNAMIC, kernel=k, initrd=i, append=APPEND),
         {"opensbi_banner": True, "end": "exit"}),
        ("kumo-uboot", uboot_flow, h.kumo_argv(bios=FW_DYNAMIC, kernel=h.UBOOT_SMODE), {}),
    ]
    if with_qemu:
        flows += [
            ("qemu-sbi", linux_flow, h.qemu_argv(kernel=k, initrd=i, append=APPEND), {}),
            ("qemu-opensbi", linux_flow, h.qemu_argv(bios=FW_DYNAMIC, kernel=k, initrd=i, append=APPEND),
             {"opensbi_banner": True, "end": "exit"}),
            ("qemu-uboot", uboot_flow, h.qemu_argv(bios=FW_DYNAMIC, kernel=h.UBOOT_SMODE), {}),
        ]
    kumo = h.kumo_bin()
    for name, fn, argv, kw in flows:
        if not selected.search(name):
            continue
        if name.startswith("kumo") and not os.access(kumo, os.X_OK):
            not_ok(f"{name}: boot", f"{h.DID_NOT_BOOT}: {kumo} is missing (run make)")
            continue
        for fw in (FW_DYNAMIC, h.UBOOT_SMODE):
            if fw in argv and not os.path.isfile(fw):
                not_ok(f"{name}: boot", f"{h.DID_NOT_BOOT}: {fw} is missing (make deps installs it)")
                break
        else:
            fn(name, argv, **kw)
    return 1 if _tap.failures else 0


if __name__ == "__main__":
    sys.exit(main())
