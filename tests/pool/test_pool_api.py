"""Pool integration without guest boots: a controller (SQLite) and three agents on 127.0.0.2-4,
bad input, tenant isolation, quota, explain and dry run, image routing by hypervisor,
anti-affinity across hosts, build failures walking the alternates, a stopped agent's host
going down and being avoided, usage. TAP lines; every wait is bounded."""
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import poolh as P  # noqa: E402

tmp = P.tmpdir()
port = P.free_port()
ctl, base = P.controller(tmp, os.path.join(tmp, "pool.db"), port, ["--heartbeat-timeout", "2"])
agents = {}
try:
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

    # --- three agents on their own loopback addresses ---
    specs = [("h1", "127.0.0.2", "kumo"), ("h2", "127.0.0.3", "kumo"), ("h3", "127.0.0.4", "qemu")]
    for name, addr, drv in specs:
        agents[name] = P.agent(tmp, base, name, addr, P.free_port(addr), drivers=drv)

    def hosts():
        return {h["name"]: h for h in P.call(base, "GET", "/v1/hosts")[1]["hosts"]}

    ok = P.wait_for(lambda: len([h for h in hosts().values() if h["up"]]) == 3, 15)
    P.tap(ok, "three agents register and heartbeat", str(hosts()))

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

    # --- failed builds walk the alternates, then error ---
    st, j = P.call(base, "POST", "/v1/servers", token=ta, body={"name": "bad", "flavor": "small", "image": "img-kumo"})
    sid = j["id"]
    done = P.wait_for(lambda: (lambda s: s if s[1]["state"] == "error" else None)(
        P.call(base, "GET", f"/v1/servers/{sid}", token=ta)), 20)
    P.tap(done and done[1]["attempts"] == 2 and "could not start" in done[1]["fault"],
          "a failed build is retried on the alternate, then reports the fault", str(done))

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
    for a in agents.values():
        a.stop()
    ctl.stop()
    if P.failures == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"# logs kept in {tmp}")
sys.exit(1 if P.failures else 0)
