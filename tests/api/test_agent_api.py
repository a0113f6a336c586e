#!/usr/bin/env python3
"""GET /agent and the --agent switch against a guest without a guest agent (docs/guest-agent.md).

The guest is a two-instruction firmware (WFI in a loop, `kumo run --bios`): its agent channel
exists but nobody answers, so every ping runs into its 2 s timeout. Checks:
  not blocking  while GET /agent waits, GET /vm, GET /metrics and a pause/resume are answered
                at once (the ping does not hold the control lock), then GET /agent says 504
  turns         two GET /agent at once both end in 504 within their own timeouts
  stop          PUT /actions stop during a ping: the VMM exits with status 4 promptly
  --agent       off with a NIC: no channel (GET /vm agent.state "absent", GET /agent 404);
                on without a NIC: the channel is there ("waiting"); auto with a NIC: there
  config        machine-config "agent" in a --config file and through PUT /machine-config;
                a bad value is a 400 with one sentence

Environment: KUMO_BIN.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness as h  # noqa: E402
import kumoapi as api  # noqa: E402

_tap = h.Tap("agent api: ")
ok, not_ok = _tap.ok, _tap.not_ok


class Vmm:
    def __init__(self, tmp, name, args):
        self.sock = os.path.join(tmp, name + ".sock")
        self.err = open(os.path.join(tmp, name + ".err"), "w+")
        self.proc = subprocess.Popen([h.kumo_bin(), "run", "--api-sock", self.sock] + args,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.err)
        self.ready = api.wait_socket(self.sock, self.proc, 30)

    def wait_running(self, timeout=20):
        """The API answers before `kumo run --bios` has attached its VM: wait for it."""
        deadline = time.monotonic() + timeout
        while self.ready and time.monotonic() < deadline:
            st, body, _ = api.call(self.sock, "GET", "/vm", timeout=10)
            if st == 200 and (body or {}).get("state") == "running":
                return True
            time.sleep(0.05)
        return False

    def running_agent_state(self):
        """GET /vm agent.state once the VM runs; "not running" when it never does."""
        return agent_state(self.sock) if self.wait_running() else "not running"

    def stderr(self):
        self.err.flush()
        self.err.seek(0)
        return self.err.read()[-600:]

    def close(self):
        if self.err.closed:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


def agent_state(sock):
    st, body, _ = api.call(sock, "GET", "/vm", timeout=10)
    return ((body or {}).get("agent") or {}).get("state") if st == 200 else f"GET /vm {st}"


def expect_agent_state(v, want, name):
    """One check: VMM v's agent.state is want once its VM runs; stops v."""
    st = v.running_agent_state()
    if st == want:
        ok(name)
    else:
        not_ok(name, f"agent.state {st!r}, want {want!r}", [v.stderr()])
    v.close()


def timed(sock, method, path, body=None):
    t0 = time.monotonic()
    st, resp, _ = api.call(sock, method, path, body, timeout=30)
    return st, resp, time.monotonic() - t0


def background_ping(sock, out):
    def run():
        out.append(timed(sock, "GET", "/agent"))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def main():
    tmp = tempfile.mkdtemp(prefix="kumo-agent-api-")
    fw = os.path.join(tmp, "idle.bin")
    api.idle_firmware(fw)
    base = ["--bios", fw, "--mem", "64M"]
    vmms = []

    def start(name, args):
        v = Vmm(tmp, name, args)
        vmms.append(v)
        return v

    try:
        v = start("auto", base + ["--net", "user"])
        if not v.wait_running():
            not_ok("start", "the API socket did not answer", [v.stderr()])
            return 1
        s = v.sock
        st = agent_state(s)
        if st == "waiting":
            ok("--agent auto with a NIC: the channel is there, nobody answers yet")
        else:
            not_ok("--agent auto with a NIC", f"agent.state {st!r}")

        # Other calls during a ping are answered at once.
        res = []
        t = background_ping(s, res)
        time.sleep(0.3)
        others = [timed(s, "GET", "/vm"), timed(s, "GET", "/metrics"),
                  timed(s, "PATCH", "/vm", {"state": "paused"}), timed(s, "PATCH", "/vm", {"state": "running"})]
        still = t.is_alive()
        t.join(10)
        slow = [f"{i}: {o[0]} in {o[2]:.2f} s" for i, o in enumerate(others) if o[2] > 1.0 or o[0] not in (200, 204)]
        if still and not slow:
            ok("other API calls during GET /agent are answered at once",
               ", ".join(f"{o[2] * 1000:.0f} ms" for o in others))
        else:
            not_ok("calls during a ping", f"ping still waiting: {still}; slow or failed: {slow}")
        if res and res[0][0] == 504 and 1.5 <= res[0][2] < 5 and "did not answer" in str(res[0][1]):
            ok("GET /agent without an agent: 504 after its 2 s timeout", f"{res[0][2]:.2f} s")
        else:
            not_ok("GET /agent timeout", f"{res}")

        # Two pings at once take turns, each within its own timeout.
        res = []
        ts = [background_ping(s, res) for _ in range(2)]
        for t in ts:
            t.join(15)
        if len(res) == 2 and all(r[0] == 504 and r[2] < 5 for r in res):
            ok("two GET /agent at once: both 504 within their timeouts", ", ".join(f"{r[2]:.2f} s" for r in res))
        else:
            not_ok("concurrent pings", f"{res}")

        # Stopping during a ping: the VMM exits promptly and the ping gets an answer.
        res = []
        t = background_ping(s, res)
        time.sleep(0.3)
        t0 = time.monotonic()
        api.call(s, "PUT", "/actions", {"action": "stop"}, timeout=10)
        try:
            rc = v.proc.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t0
        t.join(10)
        if rc == 4 and took < 5 and not t.is_alive():
            ok("stop during a ping: the VMM exits with status 4", f"{took:.2f} s, ping {res[0][0] if res else None}")
        else:
            not_ok("stop during a ping", f"rc {rc} after {took:.2f} s, ping thread alive {t.is_alive()}", [v.stderr()])

        # --agent off / on.
        v = start("off", base + ["--net", "user", "--agent", "off"])
        st = v.running_agent_state()
        code = api.call(v.sock, "GET", "/agent", timeout=10)[0] if v.ready else None
        if st == "absent" and code == 404:
            ok("--agent off with a NIC: no channel, GET /agent 404")
        else:
            not_ok("--agent off", f"agent.state {st!r}, GET /agent {code}", [v.stderr()])
        v.close()
        expect_agent_state(start("on", base + ["--agent", "on"]), "waiting",
                           "--agent on without a NIC: the channel is there")

        # machine-config "agent": a --config file, the API, and a bad value.
        cfg = os.path.join(tmp, "off.json")
        with open(cfg, "w") as f:
            json.dump({"machine-config": {"vcpu_count": 1, "mem_size_mib": 64, "agent": "off"},
                       "boot-source": {"firmware_path": fw},
                       "network-interfaces": [{"iface_id": "eth0", "backend": "user"}]}, f)
        expect_agent_state(start("cfg", ["--config", cfg]), "absent", "--config machine-config agent \"off\"")
        v = start("put", [])
        bad = api.call(v.sock, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64, "agent": "sometimes"})
        wrong = api.call(v.sock, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64, "agent": 1})
        good = api.call(v.sock, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64, "agent": "on"})
        api.call(v.sock, "PUT", "/boot-source", {"firmware_path": fw})
        start = api.call(v.sock, "PUT", "/actions", {"action": "start"})
        st = agent_state(v.sock)
        desc = api.call(v.sock, "GET", "/vm")
        mode = ((desc[1] or {}).get("config") or {}).get("machine-config", {}).get("agent")
        if mode == "on":
            ok("GET /vm machine-config shows agent \"on\" as PUT")
        else:
            not_ok("GET /vm machine-config agent", f"{mode!r} in {desc[:2]}")
        if bad[0] == 400 and "not auto, on or off" in (bad[1] or {}).get("error", "") and wrong[0] == 400 \
                and good[0] == 204 and start[0] == 204 and st == "waiting":
            ok("PUT /machine-config agent: \"on\" gives a channel without a NIC, a bad value is a 400",
               (bad[1] or {}).get("error"))
        else:
            not_ok("PUT /machine-config agent", f"bad {bad[:2]}, wrong type {wrong[:2]}, on {good[0]}, start {start[:2]}, "
                   f"agent.state {st!r}")
        v.close()
    finally:
        for v in vmms:
            v.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if _tap.failures else 0


if __name__ == "__main__":
    sys.exit(main())
