"""The web transport scenario: bench/web/loadgen.mjs (Node) against a
server's BOSH and WebSocket endpoints on its plain HTTP port.

The C loadgen speaks XMPP over TCP only; this driver takes its place for
`bench/run web`. The harness has already started the server with its web
endpoints on (Server.web), pinned it and found its PID; the Node loadgen
runs pinned to the loadgen CPU like the C one, reads the same /proc
figures, and writes JSON whose keys match the C loadgen's where the figure
is the same (bench/lib/report.py reads both).
"""

import json
import os
import shutil
import socket
import subprocess
import time

from . import accounts, procs, servers

NODE = "/usr/bin/node"
# The loadgen imports `ws` from here (installed by scripts/web-deps.sh).
WS_PACKAGE = os.path.join("tests", "web", "node_modules", "ws")

DEFAULT_USERS = 300
DEFAULT_MESSAGES = 20
DEFAULT_RATE = 500.0
DEFAULT_SETTLE = 5.0
DEFAULT_CONCURRENCY = 50


def node():
    return NODE if os.access(NODE, os.X_OK) else shutil.which("node")


def check(repo):
    """None when the web loadgen can run here, else why not."""
    if not node():
        return "node is not installed (scripts/web-deps.sh installs it)"
    if not os.path.isdir(os.path.join(repo, WS_PACKAGE)):
        return f"{WS_PACKAGE} is missing (run scripts/web-deps.sh)"
    return None


def wait_http(port, proc_pid, timeout=30.0):
    """Waits until 127.0.0.1:port answers an HTTP request with a status
    line (any status): the c2s port being ready does not prove that the
    HTTP listener is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{proc_pid}"):
            raise RuntimeError("server exited before its HTTP port was ready")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                if s.recv(16).startswith(b"HTTP/"):
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"no HTTP answer on port {port} after {timeout:.0f} s")


def command(repo, opts, srv, pid, json_path):
    cmd = [node(), os.path.join(repo, "bench", "web", "loadgen.mjs"),
           "--host", "127.0.0.1", "--port", str(srv.http_port), "--domain", servers.DOMAIN,
           "--bosh-path", srv.bosh_path, "--ws-path", srv.ws_path,
           "--users", str(opts.users), "--password", accounts.PASSWORD, "--mech", opts.mech,
           "--messages", str(opts.messages if opts.messages is not None else DEFAULT_MESSAGES),
           "--rate", _num(opts.rate if opts.rate is not None else DEFAULT_RATE),
           "--settle", _num(opts.settle if opts.settle is not None else DEFAULT_SETTLE),
           "--concurrency", str(opts.concurrency or DEFAULT_CONCURRENCY),
           "--server-pid", str(pid), "--json", json_path]
    return cmd + list(opts.loadgen_args)


def _num(value):
    return str(int(value)) if float(value).is_integer() else str(value)


def timeout(opts):
    """Logins at a slow 20/s, the settle, the message round at its rate,
    drain and close, plus margin."""
    messages = opts.messages if opts.messages is not None else DEFAULT_MESSAGES
    rate = opts.rate or DEFAULT_RATE
    return opts.users / 20 + (opts.settle or DEFAULT_SETTLE) + opts.users * messages / rate + 60


def run(repo, opts, target, srv, pid, json_path):
    """Runs the web loadgen against srv; returns (status, doc) like
    harness.run_loadgen."""
    problem = check(repo)
    if problem:
        return f"failed: {problem}", None
    wait_http(srv.http_port, pid)
    cmd = command(repo, opts, srv, pid, json_path)
    log = os.path.join(srv.workdir, "loadgen.log")
    with open(log, "w") as out:
        out.write(" ".join(cmd) + "\n")
        out.flush()
        res = procs.run(cmd, cpus=target.loadgen_cpus, timeout=timeout(opts), stdout=out,
                        stderr=subprocess.STDOUT, cwd=repo)
    doc = None
    if os.path.exists(json_path):
        with open(json_path) as f:
            doc = json.load(f)
    if res.returncode != 0 or doc is None:
        return f"failed: web loadgen exit {res.returncode} (see {log})", doc
    # Both transports must work for the figures to mean what they say.
    for kind, name in (("ws", "WebSocket"), ("bosh", "BOSH")):
        if not (doc.get("login_ms", {}).get(kind) or {}).get("n"):
            return f"failed: no {name} login succeeded (see {log})", doc
    return "ok", doc
