#!/usr/bin/env python3
"""Guest RAM huge pages: off by default, on with `kumo run --hugepages` or machine-config
"huge_pages": "thp" (docs/api.md, docs/design.md), TAP-style output.

Each VM runs an idle firmware (kumoapi.idle_firmware) with 96 MiB of RAM, so no guest image is
needed. The guest RAM mapping is found in /proc/PID/smaps of the `kumo run` process as the
anonymous mapping whose size is the configured memory (see ram_mapping); with huge pages it carries the `hg`
flag (MADV_HUGEPAGE) and `THPeligible: 1`, without them neither (`THPeligible: 0` needs the
host's THP mode to be "madvise": with "always" every anonymous mapping is eligible). When the
host's THP is "never" the smaps checks are skipped ("ok - ... # SKIP").

Also: the API refuses other values with 400 and one sentence, GET /vm shows the value, a
snapshot records it, a restore keeps it (compressed: RAM is anonymous again and huge), and a
snapshot without the field restores as "none". Last, as root, in a mount namespace whose
/sys/kernel/mm/transparent_hugepage/enabled says "never" (madvise still succeeds there): with
--hugepages the VM runs after one warning line, without it there is none.

Environment: KUMO_BIN (default build/kumo).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness as h  # noqa: E402
import kumoapi as api  # noqa: E402

KUMO = h.kumo_bin()
MEM_MIB = 96  # no other anonymous mapping of kumo's has this size (glibc arenas are 64 MiB)
THP_SYSFS = "/sys/kernel/mm/transparent_hugepage/enabled"
_tap = h.Tap("hugepages: ")
ok, not_ok = _tap.ok, _tap.not_ok


def check(name, cond, why=""):
    if cond:
        ok(name)
    else:
        not_ok(name, why)
    return cond


def host_thp_mode():
    """The host's THP mode ("always", "madvise", "never"), None when the kernel has no THP."""
    try:
        text = open(THP_SYSFS).read()
    except OSError:
        return None
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return None


def ram_mapping(pid, mib=MEM_MIB):
    """The smaps entry (a dict of its fields plus "header") of process pid's guest RAM: the
    anonymous mapping of mib MiB, or None. Without MADV_HUGEPAGE the RAM's flags can equal those
    of a glibc malloc arena's heap (anonymous, MAP_NORESERVE) made later right above it, and the
    kernel merges the two: so the mapping may be up to one arena (64 MiB) larger."""
    found, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if "-" in first and ":" not in first:
                cur = {"header": line.strip(), "anon": len(line.split()) == 5}
                found.append(cur)
            elif cur is not None and ":" in line:
                key, val = line.split(":", 1)
                cur[key] = val.strip()
    for m in found:
        size = m.get("Size", "").split()
        if m["anon"] and len(size) == 2 and size[1] == "kB" and \
                mib << 10 <= int(size[0]) < (mib + 64) << 10:
            return m
    return None


class Vmm:
    """One `kumo run --api-sock` process; its stderr goes to a file for the warning checks."""

    def __init__(self, tmp, name, args, wrap=()):
        self.sock = os.path.join(tmp, name + ".sock")
        self.err = open(os.path.join(tmp, name + ".err"), "w+")
        self.proc = subprocess.Popen(list(wrap) + [KUMO, "run", "--api-sock", self.sock] + list(args),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.err)
        self.ready = api.wait_socket(self.sock, self.proc, 20)

    def stderr(self):
        with open(self.err.name) as f:
            return f.read()

    def machine(self):
        st, vm, _ = api.call(self.sock, "GET", "/vm")
        return ((vm or {}).get("config") or {}).get("machine-config") if st == 200 else None

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


def check_ram(name, vmm, huge, mode):
    """The guest RAM mapping of a running VM says huge pages are asked for (huge) or not."""
    if mode in (None, "never"):
        ok(f"{name}: smaps # SKIP the host's THP is {mode or 'not built in'} ({THP_SYSFS})")
        return
    m = ram_mapping(vmm.proc.pid)
    if not check(f"{name}: guest RAM is an anonymous {MEM_MIB} MiB mapping in smaps", m is not None,
                 f"no such mapping in /proc/{vmm.proc.pid}/smaps; stderr: {vmm.stderr()[-300:]}"):
        return
    flags = m.get("VmFlags", "").split()
    eligible = m.get("THPeligible")
    detail = f"{m['header']}: THPeligible {eligible}, VmFlags {' '.join(flags)}"
    if huge:
        check(f"{name}: MADV_HUGEPAGE (hg) and THPeligible: 1", "hg" in flags and eligible == "1", detail)
        return
    check(f"{name}: no MADV_HUGEPAGE (hg)", "hg" not in flags, detail)
    if mode == "madvise":
        check(f"{name}: THPeligible: 0", eligible == "0", detail)
    else:
        ok(f"{name}: THPeligible: 0 # SKIP the host's THP is {mode}: every anonymous mapping is eligible")


def never_wrap(tmp):
    """A command prefix that runs a program in a private mount namespace where THP_SYSFS says
    "never" (a bind mount: the host's setting is left alone), or (None, why) when that cannot
    be done here (it needs root and unshare)."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not os.path.exists(THP_SYSFS):
        return None, "needs root, unshare and " + THP_SYSFS
    fake = os.path.join(tmp, "thp-never")
    with open(fake, "w") as f:
        f.write("always madvise [never]\n")
    wrap = ["unshare", "-m", "sh", "-c", f'mount --bind "$0" {THP_SYSFS} && exec "$@"', fake]
    p = subprocess.run(wrap + ["cat", THP_SYSFS], capture_output=True, text=True, timeout=30)
    if p.returncode or "[never]" not in p.stdout:
        return None, f"cannot bind-mount over {THP_SYSFS} in a mount namespace: {p.stderr.strip()}"
    return wrap, ""


def main():
    if not os.access(KUMO, os.X_OK):
        print(f"not ok - hugepages: {KUMO} is not built")
        return 1
    mode = host_thp_mode()
    tmp = tempfile.mkdtemp(prefix="kumo-hp-")
    fw = os.path.join(tmp, "idle.bin")
    api.idle_firmware(fw)
    vmms = []

    def vmm(name, args):
        v = Vmm(tmp, name, args)
        vmms.append(v)
        check(f"{name}: kumo run serves the API", v.ready, " ".join(args) + ": " + v.stderr()[-300:])
        return v

    try:
        # The API: default, refusals, the value shown, kept when the field is left out.
        a = vmm("api", [])
        s = a.sock
        check("api: GET /vm shows huge_pages none by default", (a.machine() or {}).get("huge_pages") == "none",
              f"{a.machine()}")
        st, body, _ = api.call(s, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": MEM_MIB, "huge_pages": "2M"})
        want = "machine-config: huge_pages '2M' is not none or thp"
        check("api: huge_pages 2M -> 400 with one sentence", st == 400 and (body or {}).get("error") == want, f"{st} {body}")
        st, body, _ = api.call(s, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": MEM_MIB, "huge_pages": True})
        check("api: huge_pages true -> 400 (must be a string)",
              st == 400 and "'huge_pages' must be a string" in (body or {}).get("error", ""), f"{st} {body}")
        check("api: a refused PUT leaves huge_pages none", (a.machine() or {}).get("huge_pages") == "none", f"{a.machine()}")
        st, body, _ = api.call(s, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": MEM_MIB, "huge_pages": "thp"})
        check("api: PUT /machine-config huge_pages thp -> 204", st == 204, f"{st} {body}")
        st, body, _ = api.call(s, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": MEM_MIB})
        check("api: GET /vm shows thp, also after a PUT without the field",
              st == 204 and a.machine() == {"vcpu_count": 1, "mem_size_mib": MEM_MIB, "agent": "auto", "huge_pages": "thp"},
              f"{st} {a.machine()}")
        # The same through the kumo vm client.
        c = vmm("cli", [])
        p = subprocess.run([KUMO, "vm", "--sock", c.sock, "configure", "--mem", str(MEM_MIB), "--hugepages",
                            "--agent", "off"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        check("kumo vm configure --hugepages --agent off",
              p.returncode == 0 and c.machine() == {"vcpu_count": 1, "mem_size_mib": MEM_MIB, "agent": "off", "huge_pages": "thp"},
              f"{p.returncode} {p.stderr} {c.machine()}")
        p = subprocess.run([KUMO, "vm", "--sock", c.sock, "configure", "--agent", "maybe"], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        check("kumo vm configure --agent maybe: one line, status 1",
              p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1 and "agent 'maybe'" in p.stderr, p.stderr)
        c.close()
        api.call(s, "PUT", "/boot-source", {"firmware_path": fw})
        st, body, _ = api.call(s, "PUT", "/actions", {"action": "start"})
        check("api: start", st == 204, f"{st} {body}")
        check_ram("api thp", a, True, mode)
        check("api thp: no warning on stderr", "warning" not in a.stderr(), a.stderr()[-300:])
        # A snapshot records it; restores keep it.
        snaps = {}
        api.call(s, "PATCH", "/vm", {"state": "paused"})
        for kind, compress in (("full", False), ("zstd", True)):
            snaps[kind] = os.path.join(tmp, "snap-" + kind)
            st, body, _ = api.call(s, "PUT", "/snapshot/create", {"snapshot_path": snaps[kind], "compress": compress})
            cfg = json.load(open(os.path.join(snaps[kind], "manifest.json")))["config"] if st == 204 else {}
            check(f"snapshot {kind}: the manifest records huge_pages thp", cfg.get("huge_pages") == "thp", f"{st} {body} {cfg}")
        a.close()

        # Off by default, on with --hugepages.
        for name, args, huge in (("default", [], False), ("--hugepages", ["--hugepages"], True)):
            v = vmm(name, ["--bios", fw, "--mem", str(MEM_MIB)] + args)
            check(f"{name}: GET /vm shows huge_pages {'thp' if huge else 'none'}",
                  (v.machine() or {}).get("huge_pages") == ("thp" if huge else "none"), f"{v.machine()}")
            check_ram(name, v, huge, mode)
            v.close()

        # --config: the same field, one line and status 1 for a bad value.
        conf = os.path.join(tmp, "bad.json")
        with open(conf, "w") as f:
            json.dump({"machine-config": {"vcpu_count": 1, "mem_size_mib": MEM_MIB, "huge_pages": "2M"},
                       "boot-source": {"firmware_path": fw}}, f)
        p = subprocess.run([KUMO, "run", "--config", conf], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        lines = p.stderr.strip().splitlines()
        check("--config huge_pages 2M: one line, status 1",
              p.returncode == 1 and len(lines) == 1 and "huge_pages '2M' is not none or thp" in lines[0], f"{p.returncode} {lines}")
        p = subprocess.run([KUMO, "run", "--hugepages", "--restore", snaps["full"]], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        check("--hugepages with --restore is refused (the snapshot records it)",
              p.returncode == 1 and "--restore" in p.stderr, f"{p.returncode} {p.stderr}")

        # Restores: the recorded value; compressed RAM is anonymous memory again, so huge.
        v = vmm("restore full", ["--restore", snaps["full"]])
        check("restore full: GET /vm shows thp", (v.machine() or {}).get("huge_pages") == "thp", f"{v.machine()}")
        # The other recorded machine field: the agent channel this VM had (none: no NIC).
        check("restore full: GET /vm shows the recorded agent (off)", (v.machine() or {}).get("agent") == "off",
              f"{v.machine()}")
        v.close()
        v = vmm("restore zstd", ["--restore", snaps["zstd"]])
        check("restore zstd: GET /vm shows thp", (v.machine() or {}).get("huge_pages") == "thp", f"{v.machine()}")
        check_ram("restore zstd", v, True, mode)
        v.close()
        man = os.path.join(snaps["full"], "manifest.json")
        m = json.load(open(man))
        del m["config"]["huge_pages"]
        with open(man, "w") as f:
            json.dump(m, f)
        v = vmm("restore old", ["--restore", snaps["full"]])
        check("restore of a snapshot without huge_pages: none", (v.machine() or {}).get("huge_pages") == "none",
              f"{v.machine()} {v.stderr()[-300:]}")
        v.close()

        # A host whose THP is "never": the VM runs on 4 KiB pages after one warning line.
        wrap, why = never_wrap(tmp)
        if wrap is None:
            ok(f"THP never: one warning, the VM runs # SKIP {why}")
            return 1 if _tap.failures else 0
        for name, args, huge in (("never --hugepages", ["--hugepages"], True), ("never default", [], False)):
            v = Vmm(tmp, name.replace(" ", "-"), ["--bios", fw, "--mem", str(MEM_MIB)] + args, wrap)
            vmms.append(v)
            st, vm, _ = api.call(v.sock, "GET", "/vm") if v.ready else (None, None, None)
            check(f"{name}: the VM runs", st == 200 and vm.get("state") == "running", f"{st} {vm} {v.stderr()[-300:]}")
            v.close()
            lines = v.stderr().strip().splitlines()
            if huge:
                check(f"{name}: one warning line on stderr",
                      len(lines) == 1 and lines[0].startswith("kumo: warning: huge pages:") and "never" in lines[0],
                      f"{lines}")
            else:
                check(f"{name}: no warning", not lines, f"{lines}")
    finally:
        for v in vmms:
            v.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if _tap.failures else 0


if __name__ == "__main__":
    sys.exit(main())
