"""Pool integration without guest boots: a controller (SQLite) and three agents, each in its own
network namespace when root (else on 127.0.0.2-4; see poolh.Net), each with its own host token.
Bad input, per-host agent credentials and their refusals, tenant isolation, quota, explain and
dry run, image routing by hypervisor, anti-affinity across hosts, build failures walking the
alternates (also for server-group members, re-checked against the group), a stopped agent's
host going down and being avoided, usage. Host h1's kumo driver fails every build (its
--kumo-bin is /bin/false) and h1 is the biggest host, so with --top-n 1 it is always picked
first. Servers that must run boot a 64-byte idle kernel (an Image header whose code is
`wfi; j .-4`) on the real VMM. TAP lines; every wait is bounded."""
import os
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import poolh as P  # noqa: E402

signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the finally: below
tmp = P.tmpdir()
net = P.Net(3)
agents = {}
ctl = None
try:
    port = P.free_port(net.ctl_addr)
    ctl, base = P.controller(tmp, os.path.join(tmp, "pool.db"), port,
                             ["--heartbeat-timeout", "2", "--top-n", "1", "--weigher", "build_failures=0"],
                             addr=net.ctl_addr)
    idle = os.path.join(tmp, "idle.Image")
    with open(idle, "wb") as f:  # RISC-V Linux Image header (64 bytes); code0/code1 = wfi; j .-4
        f.write(struct.pack("<IIQQQIIQ8sII", 0x10500073, 0xFFDFF06F, 0x200000, 64, 0, 2, 0, 0,
                            b"RISCV\0\0\0", 0x05435352, 0))

    # --- bad input ---
    st, j = P.call(base, "POST", "/v1/flavors", raw=b'{"name": "x", ')
    P.tap(st == 400 and "malformed JSON" in j["error"], "malformed JSON gets 400 with a message", f"{st} {j}")
    st, j = P.call(base, "POST", "/v1/flavors", body={"name": "x", "vcpus": 1, "ram_mb": 1, "colour": "red"})
    P.tap(st == 400 and "unknown field 'colour'" in j["error"], "unknown field gets 400", f"{st} {j}")
    st, j = P.call(base, "POST", "/v1/flavors", body={"name": "x", "vcpus": "one", "ram_mb": 1})
    P.tap(st == 400 and "vcpus" in j["error"], "wrong type gets 400", f"{st} {j}")
    st, j = P.call(base, "POST", "/v1/flavors", raw=b'{"name": "' + b"a" * 70000 + b'"}')
    P.tap(st == 413 and "error" in j, "oversized body gets 413", f"{st} {j}")
    st, j = P.call(base, "GET", "/v1/hosts", token="wrong-token")
    P.tap(st == 401 and "invalid token" in j["error"], "bad token gets 401", f"{st} {j}")
    st, j = P.call(base, "GET", "/v1/hosts", token=None)
    P.tap(st == 401, "missing token gets 401", f"{st} {j}")
    st, j = P.call(base, "POST", "/v1/flavors", raw=b"[1,2,3]")
    P.tap(st == 400, "a non-object body gets 400", f"{st} {j}")
    st, j = P.call(base, "POST", "/v1/flavors", raw=b'{"name":"a","name":"b","vcpus":1,"ram_mb":1}')
    P.tap(st == 400, "duplicate keys get 400", f"{st} {j}")

    # --- resources ---
    P.call(base, "POST", "/v1/flavors", body={"name": "small", "vcpus": 1, "ram_mb": 512, "disk_gb": 1})
    P.call(base, "POST", "/v1/flavors", body={"name": "huge", "vcpus": 2, "ram_mb": 100000, "disk_gb": 1})
    for name, hyp in (("img-any", ""), ("img-kumo", "kumo"), ("img-qemu", "qemu")):
        st, _ = P.call(base, "POST", "/v1/images", body={"name": name, "arch": "riscv64", "hypervisor": hyp,
                                                         "kernel": "/nonexistent/kernel"})
    st, a = P.call(base, "POST", "/v1/tenants", body={"name": "alpha", "max_instances": 20})
    st2, b = P.call(base, "POST", "/v1/tenants", body={"name": "beta", "max_instances": 2})
    P.tap(st == 201 and st2 == 201 and len(a["token"]) == 48, "tenants get tokens", f"{st} {a}")
    ta, tb = a["token"], b["token"]

    P.call(base, "POST", "/v1/flavors", body={"name": "tiny", "vcpus": 1, "ram_mb": 64, "disk_gb": 1})
    P.call(base, "POST", "/v1/images", body={"name": "img-idle", "arch": "riscv64", "hypervisor": "kumo",
                                             "kernel": idle, "append": "console=ttyS0"})

    # --- three agents, each in its own namespace (root) or on its own loopback address ---
    specs = [("h1", "kumo", 16, 16384, ["--kumo-bin", "/bin/false"]), ("h2", "kumo", 4, 4096, []),
             ("h3", "qemu", 4, 4096, [])]
    tokens, ports = {}, {}
    for i, (name, drv, vcpus, ram, extra) in enumerate(specs):
        addr = net.agent_addr(i)
        tokens[name] = P.host_token(base, name)
        ports[name] = 7001 if net.netns else P.free_port(addr)
        agents[name] = P.agent(tmp, base, name, addr, ports[name], drivers=drv,
                               vcpus=vcpus, ram=ram, extra=extra, net=net, idx=i, token=tokens[name])

    def hosts():
        return {h["name"]: h for h in P.call(base, "GET", "/v1/hosts")[1]["hosts"]}

    ok = P.wait_for(lambda: len([h for h in hosts().values() if h["up"]]) == 3, 15)
    P.tap(ok, "three agents register and heartbeat with their own host tokens", str(hosts()))
    if net.netns:
        mine = os.readlink("/proc/self/ns/net")
        theirs = [os.readlink(f"/proc/{a.p.pid}/ns/net") for a in agents.values()]
        P.tap(mine not in theirs and len(set(theirs)) == 3, "each agent runs in a network namespace of its own",
              f"{mine} {theirs}")

    # --- agent credentials: a host token acts only for its own host ---
    hid = {n: h["id"] for n, h in hosts().items()}
    t1 = tokens["h1"]
    st, j = P.call(base, "POST", f"/v1/agent/hosts/{hid['h1']}/heartbeat", token=t1)
    P.tap(st == 200 and "servers" in j, "an agent token heartbeats for its own host", f"{st} {j}")
    st, j = P.call(base, "POST", f"/v1/agent/hosts/{hid['h2']}/heartbeat", token=t1)
    P.tap(st == 403 and "'h1'" in j["error"], "an agent token cannot heartbeat for another host (403)", f"{st} {j}")
    st, j = P.call(base, "POST", "/v1/agent/register", token=t1,
                   body={"name": "h2", "url": "http://10.213.250.2:1", "archs": ["riscv64"], "drivers": ["kumo"],
                         "vcpus": 64, "ram_mb": 65536, "disk_gb": 1})
    P.tap(st == 403, "an agent token cannot register another host (403)", f"{st} {j}")
    st, j = P.call(base, "GET", "/v1/hosts", token=t1)
    st2, j2 = P.call(base, "POST", "/v1/flavors", token=t1, body={"name": "z", "vcpus": 1, "ram_mb": 1})
    P.tap(st == 403 and st2 == 403, "an agent token is no admin token (403)", f"{st} {j} {st2} {j2}")
    st, j = P.call(base, "POST", "/v1/hosts/tokens", token=t1, body={"host": "h1"})
    P.tap(st == 403, "an agent token cannot issue host tokens", f"{st} {j}")
    env = dict(os.environ, KUMO_URL=base, KUMO_ADMIN_TOKEN=P.ADMIN)
    env.pop("KUMO_TOKEN", None)
    r = subprocess.run([P.KUMO, "host", "token", "create", "h-cli", "--json"], capture_output=True, text=True,
                       env=env, timeout=30)
    import json as _json
    cli_tok = _json.loads(r.stdout).get("token") if r.returncode == 0 else None
    st, j = P.call(base, "POST", f"/v1/agent/hosts/{hid['h1']}/heartbeat", token=cli_tok or "x")
    P.tap(cli_tok and st == 403 and "'h-cli'" in j["error"],
          "kumo host token create issues a token bound to its host", f"{r.returncode} {r.stdout} {r.stderr} {st} {j}")

    # --- tenant isolation and quota ---
    st, j = P.call(base, "POST", "/v1/servers", token=tb, body={"name": "b1", "flavor": "small", "image": "img-any"})
    P.tap(st == 202 and j["state"] == "building" and "host" not in j, "tenant creates a server", f"{st} {j}")
    b1 = j["id"]
    st, j = P.call(base, "GET", f"/v1/servers/{b1}", token=ta)
    P.tap(st == 404, "tenant A gets 404 for tenant B's server", f"{st} {j}")
    st, j = P.call(base, "DELETE", f"/v1/servers/{b1}", token=ta)
    P.tap(st == 404, "tenant A cannot delete tenant B's server (404)", f"{st} {j}")
    st, j = P.call(base, "GET", "/v1/servers", token=ta)
    P.tap(st == 200 and all(s["id"] != b1 for s in j["servers"]), "tenant A's list hides B's servers", str(j))
    st, j = P.call(base, "GET", "/v1/hosts", token=ta)
    P.tap(st == 403, "a tenant token cannot see hosts", f"{st} {j}")
    st, j = P.call(base, "POST", f"/v1/agent/hosts/{hid['h1']}/heartbeat", token=ta)
    P.tap(st == 403, "a tenant token cannot act as an agent", f"{st} {j}")
    P.call(base, "POST", "/v1/servers", token=tb, body={"name": "b2", "flavor": "small", "image": "img-any"})
    st, j = P.call(base, "POST", "/v1/servers", token=tb, body={"name": "b3", "flavor": "small", "image": "img-any"})
    P.tap(st == 403 and "quota" in j["error"], "quota refuses the third server", f"{st} {j}")

    # --- explain and dry run ---
    st, j = P.call(base, "POST", "/v1/servers", token=ta, body={"name": "x", "flavor": "huge", "image": "img-any"})
    ex = (j or {}).get("explain", {})
    P.tap(st == 409 and ex.get("removed", {}).get("ram") == 3 and len(ex.get("rejected", [])) == 3
          and "MiB" in ex["rejected"][0]["reason"], "unplaceable request explains per filter and host", f"{st} {j}")
    st, j = P.call(base, "POST", "/v1/servers", token=ta,
                   body={"name": "d", "flavor": "small", "image": "img-any", "dry_run": True})
    P.tap(st == 200 and len(j["ranking"]) == 3 and "free_ram" in j["ranking"][0]["weighers"],
          "dry run ranks every host with weigher contributions", f"{st} {j}")

    # --- routing by hypervisor ---
    def host_of(sid):
        for s in P.call(base, "GET", "/v1/servers")[1]["servers"]:
            if s["id"] == sid:
                return s["host"]
        return None

    placed = []
    for i in range(3):
        st, j = P.call(base, "POST", "/v1/servers", token=ta, body={"name": f"q{i}", "flavor": "small", "image": "img-qemu"})
        placed.append(host_of(j["id"]) if st == 202 else f"status {st}")
    P.tap(all(h == "h3" for h in placed), "qemu images land only on the host offering qemu", str(placed))

    # --- anti-affinity across hosts ---
    st, j = P.call(base, "POST", "/v1/server-groups", token=ta, body={"name": "web", "policy": "anti-affinity"})
    P.tap(st == 201, "server group created", f"{st} {j}")
    hs = []
    for i in range(3):
        st, j = P.call(base, "POST", "/v1/servers", token=ta,
                       body={"name": f"web{i}", "flavor": "small", "image": "img-any", "group": "web"})
        hs.append(host_of(j["id"]) if st == 202 else None)
    P.tap(None not in hs and len(set(hs)) == 3, "anti-affinity group spreads over three hosts", str(hs))
    st, j = P.call(base, "POST", "/v1/servers", token=ta,
                   body={"name": "web3", "flavor": "small", "image": "img-any", "group": "web"})
    P.tap(st == 409 and j["explain"]["removed"].get("server_group") == 3,
          "a fourth member is refused by the anti-affinity filter", f"{st} {j}")

    # --- server-group members walk the alternates too, with the group re-checked ---
    def settled(sid):
        st, j = P.call(base, "GET", f"/v1/servers/{sid}", token=ta)
        return j if st == 200 and j["state"] in ("active", "error") else None

    P.call(base, "POST", "/v1/server-groups", token=ta, body={"name": "solo", "policy": "anti-affinity"})
    st, j = P.call(base, "POST", "/v1/servers", token=ta,
                   body={"name": "solo0", "flavor": "tiny", "image": "img-idle", "group": "solo"})
    solo = j.get("id") if st == 202 else None
    first = host_of(solo) if solo else None
    done = solo and P.wait_for(lambda: settled(solo), 20)
    P.tap(first == "h1" and done and done["state"] == "active" and done["attempts"] == 2 and host_of(solo) == "h2",
          "a group member whose build fails moves to its alternate and runs there",
          f"first {first}, now {host_of(solo) if solo else None}: {done}")
    st, j = P.call(base, "GET", f"/v1/servers/{solo}/console", token=ta)
    P.tap(st == 200 and "console" in j, "the console comes from the agent with its registered key", f"{st} {j}")
    agent_url = f"http://{net.agent_addr(1)}:{7001 if net.netns else '?'}"
    if net.netns:
        st, j = P.call(agent_url, "GET", f"/v1/console/{solo}", token=P.ADMIN)
        P.tap(st == 401, "the agent's console refuses the admin token", f"{st}")
    st, j = P.call(base, "PUT", f"/v1/agent/servers/{solo}", token=t1, body={"state": "stopped"})
    P.tap(st == 403, "an agent token cannot report a server placed on another host (403)", f"{st} {j}")

    # --- the kumo driver: control API socket, re-adoption after an agent restart ---
    sock = os.path.join(tmp, "state-h2", "vms", str(solo), "vm.sock")
    st, vm = P.unix_get(sock, "/vm")
    P.tap(st == 200 and vm["state"] == "running", "the kumo driver runs the VMM with its control API socket",
          f"{st} {vm}")
    pid = P.vm_pid(tmp, "h2", solo)
    agents["h2"].stop(signal.SIGKILL)
    agents["h2"] = P.agent(tmp, base, "h2", net.agent_addr(1), ports["h2"], drivers="kumo", vcpus=4, ram=4096,
                           net=net, idx=1, token=tokens["h2"])
    logf = os.path.join(tmp, "agent-h2.log")
    adopted = P.wait_for(lambda: f"re-adopted server {solo} (kumo driver, VM running)" in open(logf).read(), 10)
    time.sleep(1)  # a few heartbeats
    st, j = P.call(base, "GET", f"/v1/servers/{solo}", token=ta)
    P.tap(adopted and pid and P.vm_pid(tmp, "h2", solo) == pid and P.pid_running(pid) and j["state"] == "active",
          "a restarted agent re-adopts its kumo VM through the control API socket", f"pid {pid}, {j}")

    P.call(base, "POST", "/v1/server-groups", token=ta, body={"name": "pair", "policy": "anti-affinity"})
    pair = []
    for i in range(2):  # p0 goes to h1 (alternate h2), p1 to h2 before p0's build fails
        st, j = P.call(base, "POST", "/v1/servers", token=ta,
                       body={"name": f"pair{i}", "flavor": "tiny", "image": "img-idle", "group": "pair"})
        pair.append((j["id"], host_of(j["id"])) if st == 202 else (None, f"status {st}"))
    res = [P.wait_for(lambda: settled(sid), 20) if sid else None for sid, _ in pair]
    final = [host_of(sid) for sid, _ in pair]
    states = sorted(r["state"] if r else "?" for r in res)
    P.tap([h for _, h in pair] == ["h1", "h2"] and states == ["active", "error"] and len(set(final)) == 2
          and final[1] == "h2" and "could not start" in res[0]["fault"],
          "a failed member is not moved onto a host its group already uses (anti-affinity re-checked)",
          f"placed {pair}, final {final}, {res}")

    # --- failed builds walk the alternates, then error ---
    st, j = P.call(base, "POST", "/v1/servers", token=ta, body={"name": "bad", "flavor": "small", "image": "img-kumo"})
    sid = j["id"]
    done = P.wait_for(lambda: (lambda s: s if s[1]["state"] == "error" else None)(
        P.call(base, "GET", f"/v1/servers/{sid}", token=ta)), 20)
    P.tap(done and done[1]["attempts"] == 2 and "could not start" in done[1]["fault"],
          "a failed build is retried on the alternate, then reports the fault", str(done))

    # --- deleting a running kumo VM stops it through its control API ---
    pid = P.vm_pid(tmp, "h2", solo)
    st, j = P.call(base, "DELETE", f"/v1/servers/{solo}", token=ta)
    gone = P.wait_for(lambda: P.call(base, "GET", f"/v1/servers/{solo}", token=ta)[0] == 404, 15)
    log = open(os.path.join(tmp, "agent-h2.log")).read()
    P.tap(st == 202 and gone and pid and not P.pid_running(pid) and "stopped through the control API" in log
          and "signalling" not in log, "delete stops a kumo VM with shutdown, then stop, on its control API",
          f"{st} gone={gone} pid={pid} running={pid and P.pid_running(pid)}")

    # --- delete returns resources; usage ---
    st, j = P.call(base, "DELETE", f"/v1/servers/{sid}", token=ta)
    gone = P.wait_for(lambda: P.call(base, "GET", f"/v1/servers/{sid}", token=ta)[0] == 404, 10)
    P.tap(st == 202 and gone, "delete goes through the agent and the server disappears", f"{st} {j}")
    st, j = P.call(base, "GET", "/v1/usage", token=ta)
    P.tap(st == 200 and j["usage"] and j["usage"][0]["tenant"] == "alpha" and j["usage"][0]["vm_seconds"] > 0,
          "usage reports the tenant's VM-seconds", f"{st} {j}")

    # --- a stopped agent marks its host down; new servers avoid it ---
    agents["h1"].stop()
    down = P.wait_for(lambda: not hosts()["h1"]["up"], 10)
    P.tap(down, "a stopped agent's host goes down", str(hosts().get("h1")))
    where = []
    for i in range(4):
        st, j = P.call(base, "POST", "/v1/servers", token=ta, body={"name": f"after{i}", "flavor": "small", "image": "img-any"})
        where.append(host_of(j["id"]) if st == 202 else f"status {st}")
    P.tap("h1" not in where and all(w in ("h2", "h3") for w in where), "new servers avoid the down host", str(where))

    # --- the database agrees: no host over capacity ---
    over = [h for h in hosts().values() if h["vcpus_used"] > h["vcpus"] or h["ram_mb_used"] > h["ram_mb"]]
    P.tap(not over, "no host is over capacity", str(over))
finally:
    P.cleanup(tmp, agents.values(), ctl, net)
sys.exit(1 if P.failures else 0)
