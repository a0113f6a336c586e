"""A tiny client for kumo's control API over its Unix socket (http.client + AF_UNIX)."""
import http.client
import json
import os
import socket
import struct
import subprocess
import time


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def idle_firmware(path):
    """A firmware that never answers anything: wfi; j .-4 (unpriv 20191213 §2.5 JAL, priv 1.12 §3.3.3 WFI) at the firmware entry."""
    wfi = 0x10500073
    off = -4 & 0x1FFFFF
    jal = (((off >> 20) & 1) << 31) | (((off >> 1) & 0x3FF) << 21) | (((off >> 11) & 1) << 20) \
        | (((off >> 12) & 0xFF) << 12) | 0x6F
    with open(path, "wb") as f:
        f.write(struct.pack("<II", wfi, jal))


def call(sock, method, path, body=None, raw=None, headers=None, timeout=120):
    """Returns (status, parsed JSON or text or None, response headers)."""
    c = UnixHTTPConnection(sock, timeout=timeout)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"Content-Type": "application/json"} if data is not None else {}
        h.update(headers or {})
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        text = r.read().decode("utf-8", "replace")
        ctype = r.getheader("Content-Type") or ""
        parsed = json.loads(text) if text and ctype.startswith("application/json") else (text or None)
        return r.status, parsed, dict(r.getheaders())
    finally:
        c.close()


def wait_socket(sock, proc=None, timeout=10):
    """Waits until the API answers GET /vm; False when the process died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if os.path.exists(sock):
            try:
                if call(sock, "GET", "/vm", timeout=5)[0] == 200:
                    return True
            except OSError:
                pass
        time.sleep(0.05)
    return False


def snapshot_paused(sock, path):
    """Pauses the VM and snapshots it (PUT /snapshot/create, full) to directory path; returns
    (status, body) of the create: 204 when the snapshot was written."""
    call(sock, "PATCH", "/vm", {"state": "paused"})
    st, body, _ = call(sock, "PUT", "/snapshot/create", {"snapshot_path": path})
    return st, body


def vm_agent(sock):
    """GET /vm's guest agent object (docs/guest-agent.md), or None when there is none."""
    st, body, _ = call(sock, "GET", "/vm")
    return (body or {}).get("agent") if st == 200 else None


def wait_agent(sock, pred, timeout):
    """Polls GET /vm until pred(agent) holds or timeout seconds passed; returns the last agent
    object (None when GET /vm never had one)."""
    deadline = time.monotonic() + timeout
    ag = None
    while time.monotonic() < deadline:
        ag = vm_agent(sock)
        if ag and pred(ag):
            return ag
        time.sleep(0.5)
    return ag


def agent_nic0(ag):
    """The first NIC of an agent object (its mac_change, guest_mac, ...), {} when there is none."""
    return ((ag or {}).get("nics") or [{}])[0]


def snapshot_memory(d):
    """Guest RAM as snapshot d stores it (a diff: its dirty pages, zeros elsewhere): memory.bin,
    or memory.zst + memory.idx (one zstd frame per non-zero chunk, in chunk order) decompressed
    with the zstd tool."""
    m = json.load(open(os.path.join(d, "manifest.json")))["memory"]
    if m.get("compression") != "zstd":
        return bytearray(open(os.path.join(d, "memory.bin"), "rb").read())
    size, chunk = int(m["size"], 16), m["index"]["chunk_bytes"]
    idx = open(os.path.join(d, "memory.idx"), "rb").read()
    out = subprocess.run(["zstd", "-d", "-c", "-q"], input=open(os.path.join(d, "memory.zst"), "rb").read(),
                         capture_output=True, check=True).stdout
    mem, pos = bytearray(size), 0
    for c in range(len(idx) // 16):
        if struct.unpack_from("<QQ", idx, 16 * c)[1]:
            n = min(chunk, size - c * chunk)
            mem[c * chunk:c * chunk + n] = out[pos:pos + n]
            pos += n
    return mem


def diff_equals_full(parent, diff, full):
    """Whether snapshot `parent` with `diff`'s dirty pages laid over it is the same machine as
    the full snapshot `full` taken at the same moment (any of them may be zstd-compressed).
    dirty.bin holds one bit per page (little-endian 64-bit words). Returns (ok, detail)."""
    md, mf = (json.load(open(os.path.join(d, "manifest.json"))) for d in (diff, full))
    mem, dmem = snapshot_memory(parent), snapshot_memory(diff)
    page = md["memory"]["dirty"]["page_bytes"]
    dirty = open(os.path.join(diff, "dirty.bin"), "rb").read()
    npages = len(mem) // page
    pages = [p for p in range(npages) if dirty[p // 8] >> (p % 8) & 1]
    for p in pages:
        mem[p * page:(p + 1) * page] = dmem[p * page:(p + 1) * page]
    same_mem = mem == snapshot_memory(full)
    same_dev = open(os.path.join(diff, "devices.bin"), "rb").read() == open(os.path.join(full, "devices.bin"), "rb").read()
    same_cpu = md["harts"] == mf["harts"] and md["guest_ticks"] == mf["guest_ticks"]
    ndirty = len(pages)
    good = (same_mem and same_dev and same_cpu and md["memory"]["parent"] == os.path.realpath(parent)
            and 0 < ndirty < npages and md["memory"]["dirty"].get("pages") == ndirty)
    mib = ndirty * page / (1 << 20)
    return good, (f"{ndirty}/{npages} dirty 4 KiB pages ({mib:.1f} MiB)" if good else
                  f"memory {same_mem}, devices {same_dev}, harts {same_cpu}, dirty {ndirty}/{npages}, "
                  f"parent {md['memory'].get('parent')}")

