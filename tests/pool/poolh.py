"""Helpers for the pool tests: start controllers and agents, call the API with urllib, print
TAP lines. Only the Python 3 standard library (plus iproute2's `ip` as root).

Agents run each in a network namespace of their own when the test runs as root (class Net):
one veth pair per agent between the root namespace and the agent's, addresses from
10.213.0.0/16 only on those veths, and inside each namespace a route for 10.213.0.0/16 alone,
so traffic stays between the namespaces the test made. Otherwise (not root, or `ip netns`
fails, or KUMO_TEST_NO_NETNS is set) agents get their own loopback addresses 127.0.0.2, .3, ...
Every namespace is named
kumo-t-PID-N: a later run deletes those whose PID is gone (a crashed run's leftovers)."""
import json
import os
import re
import shutil
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


def controller(tmp, db, port, extra=(), name="ctl", addr="127.0.0.1"):
    p = Proc([KUMO, "controller", "--db", db, "--listen", f"{addr}:{port}",
              "--admin-token", ADMIN] + list(extra), os.path.join(tmp, f"{name}.log"))
    base = f"http://{addr}:{port}"
    wait_http(base)
    return p, base


def host_token(base, name):
    """Issues the per-host agent token for host `name` (admin)."""
    st, j = call(base, "POST", "/v1/hosts/tokens", body={"host": name})
    if st != 201:
        raise RuntimeError(f"cannot issue a token for {name}: {st} {j}")
    return j["token"]


def agent(tmp, base, name, addr, port, drivers="kumo", vcpus=4, ram=4096, extra=(), net=None, idx=0,
          token=None):
    """An agent authenticated with its own host token (issued here unless given); inside
    namespace `idx` of `net` when that runs in namespace mode."""
    state = os.path.join(tmp, "state-" + name)
    if token is None:
        token = host_token(base, name)
    argv = [KUMO, "agent", "--controller", base, "--name", name, "--listen", f"{addr}:{port}",
            "--state-dir", state, "--driver", drivers, "--arch", "riscv64", "--vcpus", str(vcpus),
            "--ram-mb", str(ram), "--disk-gb", "50", "--heartbeat", "0.3", "-v"] + list(extra)
    if net is not None:
        argv = net.wrap(idx, argv)
    return Proc(argv, os.path.join(tmp, f"agent-{name}.log"), env={"KUMO_AGENT_TOKEN": token})


NS_PREFIX = "kumo-t-"


def _ip(*args):
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=20)
    if r.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def netns_sweep():
    """Deletes kumo-t-PID-N namespaces left by runs whose PID no longer exists."""
    try:
        names = _ip("netns", "list")
    except (OSError, RuntimeError):
        return
    for line in names.splitlines():
        m = re.match(rf"({NS_PREFIX}(\d+)-\d+)\b", line)
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            subprocess.run(["ip", "netns", "del", m.group(1)], capture_output=True, timeout=20)


class Net:
    """Addresses for n agents and the controller: namespaces when root, else loopback."""

    def __init__(self, n):
        self.n = n
        self.names = []
        self.netns = False
        self.why = "not root" if os.geteuid() else ""
        if os.environ.get("KUMO_TEST_NO_NETNS"):
            self.why = "KUMO_TEST_NO_NETNS is set"
        if not self.why and not shutil.which("ip"):
            self.why = "no ip command (iproute2)"
        if not self.why:
            try:
                netns_sweep()
                self._setup()
                self.netns = True
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                self.why = str(e)
                self.close()
        if self.netns:
            print(f"# network-namespace mode: agents in {', '.join(self.names)}, "
                  f"controller on {self.ctl_addr}", flush=True)
        else:
            print(f"# loopback mode ({self.why}): agents on 127.0.0.2-{self.n + 1}", flush=True)

    def _setup(self):
        used = _ip("-o", "-4", "addr", "show")
        # a block of n /24s in 10.213.0.0/16 that no interface uses yet (another run may hold one)
        for b in range(0, 250 - self.n, self.n):
            if not any(f"10.213.{b + i + 1}." in used for i in range(self.n)):
                break
        else:
            raise RuntimeError("no free 10.213.x.0/24 block")
        self.base = b
        pid = os.getpid()
        for i in range(self.n):
            ns, sub = f"{NS_PREFIX}{pid}-{i}", b + i + 1
            host_if, ns_if = f"kt{pid % 100000}r{i}", f"kt{pid % 100000}n{i}"
            _ip("netns", "add", ns)
            self.names.append(ns)
            _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
            _ip("addr", "add", f"10.213.{sub}.1/24", "dev", host_if)
            _ip("link", "set", host_if, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"10.213.{sub}.2/24", "dev", ns_if)
            _ip("-n", ns, "link", "set", ns_if, "up")
            # the controller listens on the first veth's root side: reach it (and only
            # 10.213.0.0/16) through this namespace's own peer; the root namespace delivers
            # locally, nothing is forwarded
            _ip("-n", ns, "route", "add", "10.213.0.0/16", "via", f"10.213.{sub}.1")
        if not wait_for(lambda: _ping_ok(self), 5, 0.2):
            raise RuntimeError("the namespaces cannot reach the controller address")

    @property
    def ctl_addr(self):
        return f"10.213.{self.base + 1}.1" if self.netns else "127.0.0.1"

    def agent_addr(self, i):
        return f"10.213.{self.base + i + 1}.2" if self.netns else f"127.0.0.{i + 2}"

    def wrap(self, i, argv):
        return ["ip", "netns", "exec", self.names[i]] + list(argv) if self.netns else list(argv)

    def close(self):
        for ns in self.names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        self.names = []


def _ping_ok(net):
    """Every namespace can open a TCP connection attempt to the controller address (a refusal
    counts: it proves the route; only a timeout or unreachable does not)."""
    for ns in net.names:
        code = (f"import socket; s=socket.socket(); s.settimeout(1)\n"
                f"try: s.connect(('{net.ctl_addr}', 9))\n"
                f"except ConnectionRefusedError: pass\n")
        r = subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", code], capture_output=True, timeout=10)
        if r.returncode:
            return False
    return True


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


def unix_get(sock, path, timeout=5):
    """GET on a VMM's control API socket (docs/api.md): (status, parsed JSON or None)."""
    import http.client

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(sock)

    c = Conn("localhost", timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        text = r.read()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, None
    except OSError:
        return None, None
    finally:
        c.close()


def vm_pid(tmp, host, sid):
    try:
        with open(os.path.join(tmp, "state-" + host, "vms", str(sid), "pid")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid_running(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def kill_vms(tmp):
    """SIGKILLs every VM process the test's agents left (their pid files under tmp/state-*)."""
    for d in os.listdir(tmp):
        vms = os.path.join(tmp, d, "vms")
        if not d.startswith("state-") or not os.path.isdir(vms):
            continue
        for v in os.listdir(vms):
            try:
                with open(os.path.join(vms, v, "pid")) as f:
                    os.kill(int(f.read().split()[0]), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass


def tmpdir():
    return tempfile.mkdtemp(prefix="kumo-pool-")


def remove_tmp(tmp):
    """Deletes the test's directory, or keeps it (and says where) when a check failed."""
    if failures == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"# logs kept in {tmp}")


def cleanup(tmp, agents=(), ctl=None, net=None):
    """Stops the agents, the VMs they left, the controller and the namespaces; then remove_tmp."""
    for a in agents:
        a.stop()
    kill_vms(tmp)
    if ctl:
        ctl.stop()
    if net:
        net.close()
    remove_tmp(tmp)
