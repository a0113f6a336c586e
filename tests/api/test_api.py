#!/usr/bin/env python3
"""Contract tests of kumo's control API (docs/api.md, docs/openapi.json), TAP-style output.

Runs `kumo run --api-sock` processes (no guest needs to finish booting: the Debian kernel is
only started, then paused, resumed and stopped) and checks every endpoint: the configure ->
start flow, state-machine violations (400 with a sentence), malformed bodies, unknown fields,
wrong types, huge bodies, unknown paths and methods, several clients at once, metrics in both
formats, --config files, the `kumo vm` client, and that the OpenAPI document and the server
agree (every documented path+method is served, other methods get 405, every route literal in
src/api/routes.c is documented).

Environment: KUMO_BIN (default build/kumo).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("KUMO_ROOT") or os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness as h  # noqa: E402
import kumoapi as api  # noqa: E402

KUMO = os.environ.get("KUMO_BIN") or os.path.join(ROOT, "build", "kumo")
failures = 0


def check(name, cond, why=""):
    global failures
    if cond:
        print(f"ok - {name}", flush=True)
    else:
        failures += 1
        print(f"not ok - {name}: {why}", flush=True)
    return cond


def expect(name, sock, method, path, body=None, status=204, contains=None, raw=None, headers=None):
    """One request; checks the status and, for errors, the {"error": ...} sentence."""
    try:
        st, resp, hdrs = api.call(sock, method, path, body=body, raw=raw, headers=headers)
    except OSError as e:
        return check(name, False, f"{method} {path}: {e}")
    why = f"{method} {path} -> {st} {resp!r}"[:300]
    good = st == status
    if good and st >= 400:
        good = isinstance(resp, dict) and isinstance(resp.get("error"), str) and resp["error"]
        if good and contains:
            good = contains.lower() in resp["error"].lower()
    check(name, good, why)
    return st, resp, hdrs


class Vmm:
    def __init__(self, tmp, name, args=(), config=None):
        self.sock = os.path.join(tmp, name + ".sock")
        argv = [KUMO, "run", "--api-sock", self.sock] + list(args)
        if config is not None:
            path = os.path.join(tmp, name + ".json")
            with open(path, "w") as f:
                json.dump(config, f)
            argv += ["--config", path]
        self.out = open(os.path.join(tmp, name + ".out"), "w+")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT)
        self.ready = api.wait_socket(self.sock, self.proc, 20)

    def wait(self, timeout=20):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


def openapi_agreement(sock):
    doc = json.load(open(os.path.join(ROOT, "docs", "openapi.json")))
    methods = {"get", "put", "patch", "post", "delete"}
    bad = []
    for path, ops in doc["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        for m in methods:
            st, _, _ = api.call(sock, m.upper(), concrete, raw=b"{}" if m != "get" else None)
            if m in ops and st in (404, 405):
                bad.append(f"documented {m.upper()} {path} -> {st}")
            if m not in ops and st != 405:
                bad.append(f"undocumented {m.upper()} {path} -> {st}, expected 405")
    check("openapi: every documented path+method is served, others are 405", not bad, "; ".join(bad[:5]))
    src = open(os.path.join(ROOT, "src", "api", "routes.c")).read()
    served = set(re.findall(r'"(/[a-z][a-z/-]*)"', src))
    documented = set()
    for p in doc["paths"]:
        documented.add(p)
        documented.add(re.sub(r"\{[^}]+\}$", "", p))
    missing = sorted(p for p in served if p not in documented)
    check("openapi: every route in src/api/routes.c is documented", not missing and served, f"undocumented: {missing}")
    # Every documented request schema forbids extra fields, as the server does.
    loose = [n for n, s in doc["components"]["schemas"].items()
             if n not in ("Vm", "Error") and s.get("additionalProperties") is not False]
    check("openapi: request schemas reject unknown fields", not loose, f"{loose}")


def main():
    if not os.access(KUMO, os.X_OK):
        print(f"not ok - api: {KUMO} is not built")
        return 1
    try:
        img = h.default_image()
    except RuntimeError as e:
        print(f"not ok - api: setup: {e}")
        return 1
    tmp = tempfile.mkdtemp(prefix="kumo-api-")
    vmms = []
    try:
        v = Vmm(tmp, "a")
        vmms.append(v)
        if not check("start: kumo run --api-sock without a kernel waits for configuration", v.ready, v.out.name):
            return 1
        s = v.sock
        st, vm, _ = expect("GET /vm (configuring)", s, "GET", "/vm", status=200)
        check("GET /vm: state configuring, no vCPUs yet", vm.get("state") == "configuring" and vm.get("vcpus") == [], f"{vm}")
        st, m, _ = expect("GET /metrics (json)", s, "GET", "/metrics", status=200)
        check("metrics: the state gauge", any(x["labels"]["state"] == "configuring" and x["value"] == 1 for x in m["kumo_vm_state"]), f"{m}")
        expect("GET /metrics?format=xml -> 400", s, "GET", "/metrics?format=xml", status=400, contains="format")

        # state-machine violations while configuring
        expect("pause while configuring -> 400", s, "PATCH", "/vm", {"state": "paused"}, 400, "not started")
        expect("resume while configuring -> 400", s, "PATCH", "/vm", {"state": "running"}, 400, "not started")
        expect("snapshot while configuring -> 400", s, "PUT", "/snapshot/create", {"snapshot_path": tmp + "/s"}, 400, "not started")
        expect("shutdown while configuring -> 400", s, "PUT", "/actions", {"action": "shutdown"}, 400, "not started")
        expect("start without a boot source -> 400", s, "PUT", "/actions", {"action": "start"}, 400, "boot source")

        # bad requests
        expect("malformed JSON -> 400", s, "PUT", "/machine-config", raw=b'{"vcpu_count": 1,', status=400, contains="malformed")
        expect("empty body -> 400", s, "PUT", "/machine-config", raw=b"", status=400, contains="malformed")
        expect("array body -> 400", s, "PUT", "/machine-config", raw=b"[1]", status=400, contains="object")
        expect("duplicate keys -> 400", s, "PUT", "/actions", raw=b'{"action":"stop","action":"start"}', status=400)
        expect("unknown field -> 400", s, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64, "gpu": 1}, 400, "unknown field 'gpu'")
        expect("wrong type -> 400", s, "PUT", "/machine-config", {"vcpu_count": "1", "mem_size_mib": 64}, 400, "must be an integer")
        expect("missing field -> 400", s, "PUT", "/machine-config", {"vcpu_count": 1}, 400, "required")
        expect("vcpu_count 0 -> 400", s, "PUT", "/machine-config", {"vcpu_count": 0, "mem_size_mib": 64}, 400, "out of range")
        expect("mem 8 MiB -> 400", s, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 8}, 400, "out of range")
        expect("state 'sleeping' -> 400", s, "PATCH", "/vm", {"state": "sleeping"}, 400, "not paused or running")
        expect("action 'explode' -> 400", s, "PUT", "/actions", {"action": "explode"}, 400, "not start")
        expect("grace_ms with stop -> 400", s, "PUT", "/actions", {"action": "stop", "grace_ms": 5}, 400, "grace_ms")
        expect("bad drive id -> 400", s, "PUT", "/drives/a.b", {"path_on_host": "/x"}, 400, "drive id")
        expect("drive_id mismatch -> 400", s, "PUT", "/drives/d1", {"drive_id": "d2", "path_on_host": "/x"}, 400, "does not match")
        expect("serial too long -> 400", s, "PUT", "/drives/d1", {"path_on_host": "/x", "serial": "x" * 21}, 400, "20 bytes")
        expect("net backend 'pigeon' -> 400", s, "PUT", "/network-interfaces/n1", {"backend": "pigeon"}, 400, "not user or tap")
        expect("tap without host_dev_name -> 400", s, "PUT", "/network-interfaces/n1", {"backend": "tap"}, 400, "required")
        expect("bad MAC -> 400", s, "PUT", "/network-interfaces/n1", {"backend": "user", "guest_mac": "zz"}, 400)
        expect("huge body -> 413", s, "PUT", "/machine-config", raw=b" " * (1 << 20), status=413, contains="64 KiB")
        expect("unknown path -> 404", s, "GET", "/nope", status=404)
        st, _, hd = expect("wrong method -> 405", s, "DELETE", "/vm", status=405, contains="not allowed")
        check("405 carries Allow", hd.get("Allow") == "GET, PATCH", f"{hd}")
        expect("snapshot_type on load -> 400", s, "PUT", "/snapshot/load", {"snapshot_path": tmp, "snapshot_type": "full"}, 400, "only go with")
        expect("load a missing snapshot -> 400", s, "PUT", "/snapshot/load", {"snapshot_path": tmp + "/none"}, 400, "not a kumo snapshot")

        # configure and start (virtio-blk drive: the snapshot later refuses it)
        disk = os.path.join(tmp, "disk.img")
        with open(disk, "wb") as f:
            f.truncate(1 << 20)
        expect("PUT /machine-config", s, "PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 128})
        expect("PUT /boot-source", s, "PUT", "/boot-source", {"kernel_image_path": img["kernel"], "initrd_path": img["initramfs"], "boot_args": "console=ttyS0"})
        expect("PUT /drives/root (missing file, accepted until start)", s, "PUT", "/drives/root", {"path_on_host": tmp + "/missing.img"})
        expect("start with a missing drive file -> 400", s, "PUT", "/actions", {"action": "start"}, 400, "missing.img")
        expect("PUT /drives/root (replace)", s, "PUT", "/drives/root", {"path_on_host": disk, "is_read_only": True, "serial": "api-test"})
        expect("PUT /network-interfaces/eth0", s, "PUT", "/network-interfaces/eth0", {"backend": "user", "guest_mac": "52:54:00:12:34:99"})
        st, vm, _ = expect("GET /vm shows the configuration", s, "GET", "/vm", status=200)
        c = vm["config"]
        check("GET /vm: configuration as PUT", c["machine-config"] == {"vcpu_count": 2, "mem_size_mib": 128, "agent": "auto",
                                                                       "huge_pages": "none"}
              and c["drives"][0]["path_on_host"] == disk and c["drives"][0]["is_read_only"] is True
              and "mac=52:54:00:12:34:99" in c["network-interfaces"][0]["spec"], f"{c}")
        expect("PUT /actions start", s, "PUT", "/actions", {"action": "start"})
        st, vm, _ = expect("GET /vm (running)", s, "GET", "/vm", status=200)
        check("GET /vm: running with 2 vCPUs", vm["state"] == "running" and len(vm["vcpus"]) == 2, f"{vm}")

        # violations while running
        expect("configure while running -> 400", s, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}, 400, "before it starts")
        expect("start while running -> 400", s, "PUT", "/actions", {"action": "start"}, 400, "already running")
        expect("resume while running -> 400", s, "PATCH", "/vm", {"state": "running"}, 400, "already running")
        expect("snapshot while running -> 400", s, "PUT", "/snapshot/create", {"snapshot_path": tmp + "/s"}, 400, "pause it first")
        expect("load while running -> 400", s, "PUT", "/snapshot/load", {"snapshot_path": tmp + "/s"}, 400, "not started")
        time.sleep(1.0)

        # several clients at once, with pauses and resumes among them
        errors = []

        def reader(n):
            for _ in range(n):
                for path in ("/vm", "/metrics", "/metrics?format=prometheus"):
                    try:
                        st, _, _ = api.call(s, "GET", path, timeout=30)
                        if st != 200:
                            errors.append(f"GET {path} -> {st}")
                    except OSError as e:
                        errors.append(f"GET {path}: {e}")

        def toggler(n):
            for i in range(n):
                try:
                    st, _, _ = api.call(s, "PATCH", "/vm", {"state": "paused" if i % 2 == 0 else "running"}, timeout=30)
                    if st not in (204, 400):
                        errors.append(f"PATCH -> {st}")
                except OSError as e:
                    errors.append(f"PATCH: {e}")

        threads = [threading.Thread(target=reader, args=(10,)) for _ in range(8)] + \
                  [threading.Thread(target=toggler, args=(10,)) for _ in range(2)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        check(f"concurrency: 8 readers and 2 pausers at once ({time.monotonic() - t0:.1f} s)", not errors and not any(t.is_alive() for t in threads), "; ".join(errors[:5]))
        if api.call(s, "GET", "/vm")[1]["state"] == "paused":
            api.call(s, "PATCH", "/vm", {"state": "running"})

        # pause / resume / metrics
        expect("pause", s, "PATCH", "/vm", {"state": "paused"})
        st, vm, _ = expect("GET /vm (paused)", s, "GET", "/vm", status=200)
        check("GET /vm: every vCPU paused", vm["state"] == "paused" and all(x["state"] == "paused" for x in vm["vcpus"]), f"{vm}")
        expect("pause while paused -> 400", s, "PATCH", "/vm", {"state": "paused"}, 400, "already paused")
        expect("start while paused -> 400", s, "PUT", "/actions", {"action": "start"}, 400, "resume it")
        expect("diff snapshot without an earlier snapshot -> 400", s, "PUT", "/snapshot/create", {"snapshot_path": tmp + "/s", "snapshot_type": "diff"}, 400, "needs an earlier snapshot")
        expect("snapshot_type 'partial' -> 400", s, "PUT", "/snapshot/create", {"snapshot_path": tmp + "/s", "snapshot_type": "partial"}, 400, "not full or diff")
        expect("snapshot of a paused VM with a disk and a NIC", s, "PUT", "/snapshot/create", {"snapshot_path": tmp + "/s"})
        check("snapshot: manifest, devices and memory files", all(os.path.isfile(os.path.join(tmp, "s", f)) for f in ("manifest.json", "devices.bin", "memory.bin")))
        st, m, _ = expect("GET /metrics (paused)", s, "GET", "/metrics", status=200)
        ins = [x["value"] for x in m.get("kumo_vcpu_instructions_total", [])]
        exits = {x["labels"]["reason"] for x in m.get("kumo_vcpu_exits_total", [])}
        sbi = {x["labels"]["extension"] for x in m.get("kumo_vcpu_sbi_calls_total", [])}
        devs = {x["labels"]["device"] for x in m.get("kumo_device_requests_total", [])}
        check("metrics: instructions, exits by reason, SBI calls by extension, CPU time, TLB, devices",
              len(ins) == 2 and ins[0] > 0 and "SBI" in {e.upper() for e in exits} | exits and "time" in {e.lower() for e in sbi}
              and all(k in m for k in ("kumo_vcpu_cpu_seconds_total", "kumo_vcpu_tlb_hits_total", "kumo_vcpu_decode_cache_hits_total", "kumo_vcpu_decode_cache_bytes", "kumo_vcpu_code_bytes", "kumo_guest_errors_total"))
              # the disk, the NIC and the guest agent channel (a virtio-console, on with a NIC)
              and devs == {"virtio-blk", "virtio-net", "virtio-console"}, f"ins={ins} exits={exits} sbi={sbi} devs={devs}")
        st, text, hd = expect("GET /metrics?format=prometheus", s, "GET", "/metrics?format=prometheus", status=200)
        fams = re.findall(r"^# TYPE (\S+) (counter|gauge)$", text or "", re.M)
        names = [f for f, _ in fams]
        samples_ok = all(re.match(r"^[a-z_]+(\{[^}]*\})? [-0-9.e+]+$", ln) for ln in (text or "").splitlines() if not ln.startswith("#"))
        check("prometheus: text format 0.0.4, each family declared once, counters end in _total",
              hd.get("Content-Type", "").startswith("text/plain") and len(names) == len(set(names)) and len(names) > 10 and samples_ok
              and all((t == "counter") == f.endswith("_total") for f, t in fams), f"{names}")
        expect("resume", s, "PATCH", "/vm", {"state": "running"})

        openapi_agreement(s)

        # kumo vm client
        def cli(*args):
            return subprocess.run([KUMO, "vm", "--sock", s] + list(args), capture_output=True, text=True, timeout=60)

        p = cli("status")
        check("kumo vm status", p.returncode == 0 and json.loads(p.stdout)["state"] == "running", p.stdout + p.stderr)
        p1, p2 = cli("pause"), cli("pause")
        check("kumo vm pause (twice: the second fails with one line)", p1.returncode == 0 and p2.returncode == 1
              and len(p2.stderr.strip().splitlines()) == 1 and "already paused" in p2.stderr, p1.stderr + p2.stderr)
        p = cli("metrics", "--prometheus")
        check("kumo vm metrics --prometheus", p.returncode == 0 and "kumo_vcpu_instructions_total" in p.stdout, p.stderr)
        p = cli("resume")
        check("kumo vm resume", p.returncode == 0, p.stderr)
        p = subprocess.run([KUMO, "vm", "--sock", tmp + "/none.sock", "status"], capture_output=True, text=True)
        check("kumo vm without a VMM: one line, status 1", p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1, p.stderr)

        # stop: the process ends with status 4 and removes its socket
        p = cli("stop")
        rc = v.wait(20)
        check("stop: kumo run exits with status 4", p.returncode == 0 and rc == 4, f"cli {p.returncode} {p.stderr}, rc {rc}")
        check("stop: the socket is removed", not os.path.exists(s))

        # shutdown with a grace period
        cfg = {"machine-config": {"vcpu_count": 1, "mem_size_mib": 128},
               "boot-source": {"kernel_image_path": img["kernel"], "initrd_path": img["initramfs"]}}
        v2 = Vmm(tmp, "b", config=cfg)
        vmms.append(v2)
        st, vm, _ = api.call(v2.sock, "GET", "/vm") if v2.ready else (0, {}, {})
        check("--config: the VM starts with the file's configuration", vm.get("state") == "running"
              and vm["config"]["machine-config"]["mem_size_mib"] == 128, f"{vm} {open(v2.out.name).read()[-300:]}")
        v2.close()
        # A guest that cannot answer the shutdown request (firmware idling in WFI: no serial
        # driver, no SysRq) is stopped when the grace period ends. A booting Linux guest was
        # used here before; it now boots fast enough to answer within the grace period.
        fw = os.path.join(tmp, "idle.bin")
        api.idle_firmware(fw)
        v3 = Vmm(tmp, "c", config={"machine-config": {"vcpu_count": 1, "mem_size_mib": 64},
                                   "boot-source": {"firmware_path": fw}})
        vmms.append(v3)
        t0 = time.monotonic()
        expect("shutdown with grace_ms 500", v3.sock, "PUT", "/actions", {"action": "shutdown", "grace_ms": 500})
        expect("a second shutdown -> 400", v3.sock, "PUT", "/actions", {"action": "shutdown"}, 400, "already")
        rc = v3.wait(20)
        check("shutdown: a guest that cannot answer yet is stopped after the grace period (status 4)", rc == 4 and time.monotonic() - t0 >= 0.45, f"rc {rc}")

        # bad --config files: one line, status 1
        for name, conf, needle in (("unknown section", {"cpus": 1}, "unknown section"),
                                   ("wrong type", {"machine-config": {"vcpu_count": 1, "mem_size_mib": "x"}}, "must be an integer"),
                                   ("no boot source", {"machine-config": {"vcpu_count": 1, "mem_size_mib": 64}}, "boot source")):
            path = os.path.join(tmp, "bad.json")
            with open(path, "w") as f:
                json.dump(conf, f)
            p = subprocess.run([KUMO, "run", "--config", path], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
            lines = p.stderr.strip().splitlines()
            check(f"--config {name}: one line, status 1", p.returncode == 1 and len(lines) == 1 and needle in lines[0], f"{p.returncode} {lines}")
        p = subprocess.run([KUMO, "run", "--api-sock", os.path.join(tmp, "disk.img")], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        check("--api-sock on a regular file is refused", p.returncode == 1 and "not a socket" in p.stderr, p.stderr)
    finally:
        for v in vmms:
            v.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
