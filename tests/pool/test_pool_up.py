"""`kumo up`: the one-machine pool (controller on 127.0.0.1:7000 with SQLite under
$HOME/.local/share/kumo, a local agent on 127.0.0.1:7001 with a host token the controller
issued it). A tenant's server boots a 64-byte idle kernel (an Image header whose code is
`wfi; j .-4`) with the kumo driver, its console is served through the agent, and a delete
stops it. Skips when ports 7000/7001 are taken. TAP lines; every wait is bounded."""
import os
import shutil
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import poolh as P  # noqa: E402

signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def port_free(p):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()


if not (port_free(7000) and port_free(7001)):
    print("ok - kumo up # SKIP 127.0.0.1:7000 or :7001 is in use")
    sys.exit(0)

tmp = P.tmpdir()
state = os.path.join(tmp, ".local", "share", "kumo", "agent")
base = "http://127.0.0.1:7000"


def vm_pid(sid):
    try:
        with open(os.path.join(state, "vms", str(sid), "pid")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


up = None
try:
    log = os.path.join(tmp, "up.log")
    up = P.Proc([P.KUMO, "up", "--heartbeat", "0.3"], log, env={"HOME": tmp, "KUMO_ADMIN_TOKEN": P.ADMIN})
    printed = P.wait_for(lambda: f"KUMO_ADMIN_TOKEN={P.ADMIN}" in open(log).read(), 10)
    P.tap(printed, "kumo up starts and prints how to reach it", open(log).read()[-400:])
    def local_up():
        try:
            return [h for h in (P.call(base, "GET", "/v1/hosts")[1] or {}).get("hosts", [])
                    if h["name"] == "local" and h["up"]]
        except OSError:
            return None

    local = printed and P.wait_for(local_up, 15)
    P.tap(local, "the local agent registers with its own host token and heartbeats", open(log).read()[-400:])
    P.tap(os.path.exists(os.path.join(tmp, ".local", "share", "kumo", "pool.db")),
          "the store is a SQLite file under ~/.local/share/kumo")

    idle = os.path.join(tmp, "idle.Image")
    with open(idle, "wb") as f:
        f.write(struct.pack("<IIQQQIIQ8sII", 0x10500073, 0xFFDFF06F, 0x200000, 64, 0, 2, 0, 0,
                            b"RISCV\0\0\0", 0x05435352, 0))
    P.call(base, "POST", "/v1/flavors", body={"name": "tiny", "vcpus": 1, "ram_mb": 64, "disk_gb": 1})
    P.call(base, "POST", "/v1/images", body={"name": "idle", "arch": "riscv64", "kernel": idle})
    st, t = P.call(base, "POST", "/v1/tenants", body={"name": "solo"})
    tok = t["token"]
    st, j = P.call(base, "POST", "/v1/servers", token=tok, body={"name": "s", "flavor": "tiny", "image": "idle"})
    sid = j.get("id") if st == 202 else None
    active = sid and P.wait_for(lambda: P.call(base, "GET", f"/v1/servers/{sid}", token=tok)[1]["state"] == "active", 20)
    pid = sid and vm_pid(sid)
    P.tap(active and pid and P.pid_running(pid), "a server on the one-machine pool runs", f"{st} {j}")
    st, j = P.call(base, "GET", f"/v1/servers/{sid}/console", token=tok)
    P.tap(st == 200 and "console" in j, "its console comes through the local agent", f"{st} {j}")
    P.call(base, "DELETE", f"/v1/servers/{sid}", token=tok)
    gone = P.wait_for(lambda: P.call(base, "GET", f"/v1/servers/{sid}", token=tok)[0] == 404, 20)
    P.tap(gone and pid and not P.pid_running(pid), "delete stops its VM", f"pid {pid}")
finally:
    if up:
        up.stop()
    vms = os.path.join(state, "vms")
    for v in os.listdir(vms) if os.path.isdir(vms) else []:
        p = vm_pid(v)
        if p:
            os.kill(p, signal.SIGKILL)
    if P.failures == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"# logs kept in {tmp}")
sys.exit(1 if P.failures else 0)
