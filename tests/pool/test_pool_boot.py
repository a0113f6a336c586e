"""Real boots through the pool: a controller and two agents (kumo driver, qemu driver), each in
its own network namespace when root (else on 127.0.0.2-3; poolh.Net), each with its own host
token; servers created with the `kumo server` CLI boot the default Debian guest to
KUMO-INIT-OK (read back with `kumo server console`); both agents are killed and restarted and
re-adopt their running VMs (same pid, still active; the kumo VM through its control API
socket); deletes stop the VM processes, the kumo one by a guest power-off requested through
its control API. Needs the cached default guest (make image); skips otherwise. Boots are slow
on the software CPU, so there are exactly two."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import poolh as P  # noqa: E402

signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the finally: below

BOOT_TIMEOUT = float(os.environ.get("KUMO_TEST_BOOT_TIMEOUT", "300"))
kernel, initrd = P.guest_files()
if not kernel:
    print("ok - pool boots # SKIP no cached guest (make image)")
    sys.exit(0)

tmp = P.tmpdir()
net = P.Net(2)
agents = {}
tokens = {}
ctl = None
addr = {}


def start_agent(name):
    i, a, p, d = addr[name]
    if name not in tokens:
        tokens[name] = P.host_token(base, name)
    agents[name] = P.agent(tmp, base, name, a, p, drivers=d, vcpus=2, ram=2048, net=net, idx=i,
                           token=tokens[name])


def cli(*args, token):
    env = dict(os.environ, KUMO_URL=base, KUMO_TOKEN=token)
    return subprocess.run([P.KUMO] + list(args), capture_output=True, text=True, env=env, timeout=60)


def console(sid, token):
    r = cli("server", "console", str(sid), token=token)
    return r.stdout if r.returncode == 0 else ""


def pid_of(name, sid):
    try:
        with open(os.path.join(tmp, "state-" + name, "vms", str(sid), "pid")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError):
        return None


try:
    ctl, base = P.controller(tmp, os.path.join(tmp, "pool.db"), P.free_port(net.ctl_addr),
                             ["--heartbeat-timeout", "5"], addr=net.ctl_addr)
    for i, (n, d) in enumerate((("hk", "kumo"), ("hq", "qemu"))):
        a = net.agent_addr(i)
        addr[n] = (i, a, 7001 if net.netns else P.free_port(a), d)
    for n in addr:
        start_agent(n)
    P.call(base, "POST", "/v1/flavors", body={"name": "g1", "vcpus": 1, "ram_mb": 512, "disk_gb": 1})
    for name, hyp in (("deb-kumo", "kumo"), ("deb-qemu", "qemu")):
        P.call(base, "POST", "/v1/images", body={"name": name, "arch": "riscv64", "hypervisor": hyp,
                                                 "kernel": kernel, "initrd": initrd, "append": "console=ttyS0"})
    st, t = P.call(base, "POST", "/v1/tenants", body={"name": "boot"})
    tok = t["token"]
    P.wait_for(lambda: len([h for h in P.call(base, "GET", "/v1/hosts")[1]["hosts"] if h["up"]]) == 2, 15)

    ids = {}
    for img in ("deb-qemu", "deb-kumo"):
        r = cli("server", "create", "vm-" + img, "--flavor", "g1", "--image", img, "--json", token=tok)
        ok = r.returncode == 0 and '"building"' in r.stdout
        P.tap(ok, f"kumo server create ({img})", r.stderr.strip() or r.stdout)
        if ok:
            import json
            ids[img] = json.loads(r.stdout)["id"]

    # qemu first (fast), then re-adoption while it runs
    sid = ids.get("deb-qemu")
    booted = sid and P.wait_for(lambda: "KUMO-INIT-OK" in console(sid, tok), BOOT_TIMEOUT, 2)
    P.tap(booted, "qemu driver: the guest boots to KUMO-INIT-OK", console(sid, tok)[-400:] if sid else "no server")
    if booted:
        before = pid_of("hq", sid)
        agents["hq"].stop(signal.SIGKILL)
        time.sleep(1)
        alive = before and os.path.exists(f"/proc/{before}")
        start_agent("hq")
        time.sleep(3)
        st, j = P.call(base, "GET", f"/v1/servers/{sid}", token=tok)
        P.tap(alive and pid_of("hq", sid) == before and j["state"] == "active",
              "a restarted agent re-adopts its running VM", f"pid {before} -> {pid_of('hq', sid)}, {j}")

    sid = ids.get("deb-kumo")
    booted = sid and P.wait_for(lambda: "KUMO-INIT-OK" in console(sid, tok), BOOT_TIMEOUT, 3)
    P.tap(booted, "kumo driver: the guest boots to KUMO-INIT-OK", console(sid, tok)[-400:] if sid else "no server")
    if booted:
        before = pid_of("hk", sid)
        agents["hk"].stop(signal.SIGKILL)
        start_agent("hk")
        logf = os.path.join(tmp, "agent-hk.log")
        adopted = P.wait_for(lambda: f"re-adopted server {sid} (kumo driver, VM running)" in open(logf).read(), 10)
        time.sleep(2)
        st, j = P.call(base, "GET", f"/v1/servers/{sid}", token=tok)
        P.tap(adopted and before and pid_of("hk", sid) == before and P.pid_running(before) and j["state"] == "active",
              "a restarted agent re-adopts its kumo VM through the control API socket", f"pid {before}, {j}")

    pids = [(n, pid_of(n, s)) for n, s in (("hq", ids.get("deb-qemu")), ("hk", ids.get("deb-kumo"))) if s]
    for s in ids.values():
        cli("server", "delete", str(s), token=tok)
    gone = P.wait_for(lambda: all(not p or not os.path.exists(f"/proc/{p}") or
                                  open(f"/proc/{p}/stat").read().split(")")[1].split()[0] == "Z"
                                  for _, p in pids), 30)
    P.tap(gone, "deleting the servers stops their VM processes", str(pids))
    if ids.get("deb-kumo"):
        log = open(os.path.join(tmp, "agent-hk.log")).read()
        P.tap("the guest powered off after a shutdown request" in log,
              "the kumo driver's delete powers the Debian guest off through the control API (shutdown)",
              log[-600:])
finally:
    P.cleanup(tmp, agents.values(), ctl, net)
sys.exit(1 if P.failures else 0)
