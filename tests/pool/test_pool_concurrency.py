"""Concurrency: three controller processes share one database (SQLite file, then a PostgreSQL
started here from Debian's postgresql package) and take 2,000 concurrent create requests for
a pool with room for 40 VMs, some in anti-affinity groups; one controller is killed and
restarted mid-burst. Then the database is checked directly: no host over capacity, each host's
usage equals the sum of its VMs (no leaked claim), every accepted request has its VM, no
anti-affinity group shares a host. Loopback only; bounded request counts and waits."""
import glob
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import poolh as P  # noqa: E402

REQUESTS = int(os.environ.get("KUMO_POOL_REQUESTS", "2000"))
THREADS = 24
HOSTS = 10


def sql_sqlite(db):
    import sqlite3

    def q(s):
        c = sqlite3.connect(db, timeout=30)
        try:
            return [tuple(r) for r in c.execute(s).fetchall()]
        finally:
            c.close()
    return q


def start_pg(tmp):
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        return None, None, "no PostgreSQL server binaries (apt-get install postgresql)"
    bindir = os.path.dirname(bins[-1])
    data = os.path.join(tmp, "pgdata")
    sock = tmp
    port = P.free_port()
    pre = []
    if os.geteuid() == 0:
        os.chmod(tmp, 0o777)
        pre = ["runuser", "-u", "postgres", "--"]
    r = subprocess.run(pre + [os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "kumo"],
                       capture_output=True, text=True)
    if r.returncode:
        return None, None, "initdb failed: " + r.stderr[-300:]
    opts = f"-c listen_addresses='' -k {sock} -p {port} -c max_connections=50 -c fsync=off"
    r = subprocess.run(pre + [os.path.join(bindir, "pg_ctl"), "-D", data, "-o", opts, "-l",
                              os.path.join(tmp, "pg.log"), "-w", "start"], capture_output=True, text=True)
    if r.returncode:
        return None, None, "pg_ctl start failed: " + r.stderr[-300:]
    url = f"postgresql:///postgres?host={sock}&port={port}&user=kumo"

    def stop():
        subprocess.run(pre + [os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "stop"],
                       capture_output=True)

    def q(s):
        r = subprocess.run(["psql", "-At", "-F", "|", url.replace("postgresql:///postgres", "postgresql:///postgres"),
                            "-c", s], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(r.stderr)
        return [tuple(int(x) if x.lstrip("-").isdigit() else x for x in line.split("|"))
                for line in r.stdout.splitlines() if line]
    return (url, q), stop, None


def run(label, tmp, url, q):
    ports = [P.free_port() for _ in range(3)]
    extra = ["--heartbeat-timeout", "3600"]
    # all three start together: the migration lock lets exactly one apply the schema
    ctls = [P.Proc([P.KUMO, "controller", "--db", url, "--listen", f"127.0.0.1:{p}", "--admin-token", P.ADMIN] + extra,
                   os.path.join(tmp, f"ctl{i}.log")) for i, p in enumerate(ports)]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    up = all(P.wait_http(b) for b in bases)
    P.tap(up, f"{label}: three controllers start together on one database")
    if not up:
        return ctls
    for i in range(HOSTS):
        P.call(bases[i % 3], "POST", "/v1/agent/register",
               body={"name": f"n{i}", "url": "http://127.0.0.1:1", "archs": ["riscv64"], "drivers": ["kumo"],
                     "vcpus": 4, "ram_mb": 4096, "disk_gb": 100})
    P.call(bases[0], "POST", "/v1/flavors", body={"name": "one", "vcpus": 1, "ram_mb": 1024, "disk_gb": 1})
    P.call(bases[0], "POST", "/v1/images", body={"name": "img", "arch": "riscv64"})
    st, t = P.call(bases[0], "POST", "/v1/tenants",
                   body={"name": "busy", "max_instances": 100000, "max_vcpus": 100000, "max_ram_mb": 100000000})
    tok = t["token"]
    for g in range(3):
        P.call(bases[0], "POST", "/v1/server-groups", token=tok, body={"name": f"aa{g}", "policy": "anti-affinity"})
    time.sleep(0.6)  # each controller's host cache refreshes

    accepted, statuses, lock = [], {}, threading.Lock()
    counter = iter(range(REQUESTS))

    def worker():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            body = {"name": f"v{i}", "flavor": "one", "image": "img", "request_id": f"r{i}"}
            if i % 5 == 0:
                body["group"] = f"aa{i % 3}"
            try:
                st, j = P.call(bases[i % 3], "POST", "/v1/servers", token=tok, body=body, timeout=60)
            except OSError:
                st, j = "conn", None
            with lock:
                statuses[st] = statuses.get(st, 0) + 1
                if st == 202:
                    accepted.append(j["id"])

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for th in threads:
        th.start()
    # kill controller 1 mid-burst and bring it back
    time.sleep(0.5)
    ctls[1].stop(signal.SIGKILL)
    ctls[1] = P.Proc([P.KUMO, "controller", "--db", url, "--listen", f"127.0.0.1:{ports[1]}", "--admin-token",
                      P.ADMIN] + extra, os.path.join(tmp, "ctl1-restarted.log"))
    for th in threads:
        th.join(300)
    print(f"# {label}: statuses {statuses}")
    P.tap(sum(statuses.values()) == REQUESTS and statuses.get(202, 0) > 0,
          f"{label}: {REQUESTS} concurrent creates answered", str(statuses))
    P.tap(statuses.get(500, 0) == 0, f"{label}: no server errors", str(statuses))

    hosts = q("SELECT id, vcpu_used, ram_used, instances, vcpu_total, ram_total FROM hosts ORDER BY id")
    live = q("SELECT host_id, COALESCE(SUM(vcpus),0), COALESCE(SUM(ram_mb),0), COUNT(*) FROM vms "
             "WHERE state <> 'deleted' GROUP BY host_id")
    by_host = {h: (v, r, n) for h, v, r, n in live}
    over = [h for h in hosts if h[1] > h[4] or h[2] > h[5] or by_host.get(h[0], (0, 0, 0))[0] > h[4]]
    P.tap(not over, f"{label}: no host over capacity", str(over))
    leaks = [h for h in hosts if (h[1], h[2], h[3]) != by_host.get(h[0], (0, 0, 0))]
    P.tap(not leaks, f"{label}: host usage equals its VMs (no leaked claim)", f"{leaks} vs {by_host}")
    total = sum(n for _, _, n in by_host.values())
    P.tap(total == HOSTS * 4, f"{label}: the pool fills exactly ({total} of {HOSTS * 4} slots)", str(total))
    ids = {r[0] for r in q("SELECT id FROM vms")}
    missing = [i for i in accepted if i not in ids]
    P.tap(not missing and len(accepted) == total, f"{label}: every accepted request has its VM",
          f"missing {missing[:5]}, accepted {len(accepted)}, in db {total}")
    shared = q("SELECT group_id, host_id, COUNT(*) FROM vms WHERE group_id <> 0 AND state <> 'deleted' "
               "GROUP BY group_id, host_id HAVING COUNT(*) > 1")
    members = q("SELECT COUNT(*) FROM vms WHERE group_id <> 0")[0][0]
    P.tap(not shared and members > 0, f"{label}: no anti-affinity group shares a host ({members} members)",
          str(shared))
    return ctls


tmp = P.tmpdir()
procs, stop_pg = [], None
try:
    db = os.path.join(tmp, "pool.db")
    procs += run("sqlite", tmp, db, sql_sqlite(db))
    for c in procs:
        c.stop()
    procs = []
    pg, stop_pg, why = start_pg(tmp)
    if pg is None:
        P.tap(False, "postgresql: server started", why)
    else:
        procs += run("postgresql", tmp, pg[0], pg[1])
finally:
    for c in procs:
        c.stop()
    if stop_pg:
        stop_pg()
    P.remove_tmp(tmp)
sys.exit(1 if P.failures else 0)
