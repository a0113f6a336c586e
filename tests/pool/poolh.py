"""Helpers for the pool tests: start controllers and agents on loopback addresses, call the
API with urllib, print TAP lines. Only the Python 3 standard library; traffic stays on
127.0.0.0/8."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.environ.get("KUMO_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KUMO = os.environ.get("KUMO_BIN") or os.path.join(ROOT, "build", "kumo")
ADMIN = "pool-test-admin-token"

failures = 0


def tap(ok, name, why=""):
    global failures
    if ok:
        print(f"ok - {name}", flush=True)
    else:
        failures += 1
        print(f"not ok - {name}: {why}", flush=True)


def free_port(addr="127.0.0.1"):
    s = socket.socket()
    s.bind((addr, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def call(base, method, path, token=ADMIN, body=None, raw=None, timeout=30):
    """Returns (status, parsed JSON or None)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", "Bearer " + token)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        text = e.read()
        status = e.code
    try:
        return status, json.loads(text)
    except ValueError:
        return status, None


class Proc:
    def __init__(self, argv, log, env=None):
        self.log = open(log, "ab")
        e = dict(os.environ)
        e.update(env or {})
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=e,
                                  start_new_session=True)

    def stop(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def wait_http(base, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            call(base, "GET", "/v1/hosts", timeout=2)
            return True
        except OSError:
            time.sleep(0.1)
    return False


def controller(tmp, db, port, extra=(), name="ctl"):
    p = Proc([KUMO, "controller", "--db", db, "--listen", f"127.0.0.1:{port}",
              "--admin-token", ADMIN] + list(extra), os.path.join(tmp, f"{name}.log"))
    base = f"http://127.0.0.1:{port}"
    wait_http(base)
    return p, base


def agent(tmp, base, name, addr, port, drivers="kumo", vcpus=4, ram=4096, extra=()):
    state = os.path.join(tmp, "state-" + name)
    return Proc([KUMO, "agent", "--controller", base, "--name", name, "--listen", f"{addr}:{port}",
                 "--state-dir", state, "--driver", drivers, "--arch", "riscv64", "--vcpus", str(vcpus),
                 "--ram-mb", str(ram), "--disk-gb", "50", "--heartbeat", "0.3"] + list(extra),
                os.path.join(tmp, f"agent-{name}.log"), env={"KUMO_ADMIN_TOKEN": ADMIN})


def wait_for(pred, timeout, step=0.2):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


def guest_files():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    d = os.path.join(base, "kumo", "guest", "debian-trixie")
    k, i = os.path.join(d, "vmlinux"), os.path.join(d, "initramfs.cpio.gz")
    return (k, i) if os.path.isfile(k) and os.path.isfile(i) else (None, None)


def tmpdir():
    return tempfile.mkdtemp(prefix="kumo-pool-")
