"""A tiny client for kumo's control API over its Unix socket (http.client + AF_UNIX)."""
import http.client
import json
import os
import socket
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


def diff_equals_full(parent, diff, full):
    """Whether snapshot `parent` with `diff`'s dirty pages laid over it is the same machine as
    the full snapshot `full` taken at the same moment. dirty.bin holds one bit per page
    (little-endian 64-bit words). Returns (ok, detail)."""
    md, mf = (json.load(open(os.path.join(d, "manifest.json"))) for d in (diff, full))
    with open(os.path.join(parent, "memory.bin"), "rb") as f:
        mem = bytearray(f.read())
    page = md["memory"]["dirty"]["page_bytes"]
    dirty = open(os.path.join(diff, "dirty.bin"), "rb").read()
    npages = len(mem) // page
    pages = [p for p in range(npages) if dirty[p // 8] >> (p % 8) & 1]
    with open(os.path.join(diff, "memory.bin"), "rb") as f:
        for p in pages:
            f.seek(p * page)
            mem[p * page:(p + 1) * page] = f.read(page)
    same_mem = mem == open(os.path.join(full, "memory.bin"), "rb").read()
    same_dev = open(os.path.join(diff, "devices.bin"), "rb").read() == open(os.path.join(full, "devices.bin"), "rb").read()
    same_cpu = md["harts"] == mf["harts"] and md["guest_ticks"] == mf["guest_ticks"]
    ndirty = len(pages)
    good = (same_mem and same_dev and same_cpu and md["memory"]["parent"] == os.path.realpath(parent)
            and 0 < ndirty < npages and md["memory"]["dirty"].get("pages") == ndirty)
    mib = ndirty * page / (1 << 20)
    return good, (f"{ndirty}/{npages} dirty 4 KiB pages ({mib:.1f} MiB)" if good else
                  f"memory {same_mem}, devices {same_dev}, harts {same_cpu}, dirty {ndirty}/{npages}, "
                  f"parent {md['memory'].get('parent')}")

