"""Processes the harness starts: CPU pinning, fd limits, ports, cleanup.

Every process is started in its own session (process group) and recorded,
so that a failure, Ctrl-C or SIGTERM anywhere stops exactly the processes
this harness started and nothing else on the machine.
"""

import os
import random
import resource
import signal
import socket
import subprocess
import sys
import time

# The loadgen and servers hold one fd per session; the machine allows 20000.
NOFILE = 20000
# Ports the harness must never take, even when they look free.
WELL_KNOWN = {5222, 5223, 5269, 5280, 5443}

_started = []  # Popen objects still to be stopped


def _child_setup():
    """Runs in the child between fork and exec: raises the fd limit to
    NOFILE (root may raise the hard limit too; others get what fits)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < NOFILE:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
            return
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, hard))


def pinned(cmd, cpus):
    """Prefixes cmd with taskset for a CPU list such as "0" or "0,1";
    cpus None leaves the process unpinned. taskset execs the command, so
    the PID stays the same."""
    return cmd if cpus is None else ["taskset", "-c", cpus] + list(cmd)


def start(cmd, cpus=None, log=None, **kw):
    """Starts cmd in a new session, output appended to the file log."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        p = subprocess.Popen(pinned(cmd, cpus), stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, preexec_fn=_child_setup,
                             start_new_session=True, **kw)
    finally:
        if log:
            out.close()
    _started.append(p)
    return p


def run(cmd, cpus=None, timeout=None, **kw):
    """Runs cmd to completion (with the fd limit raised); returns the
    CompletedProcess. The process is killed if the harness is interrupted."""
    p = subprocess.Popen(pinned(cmd, cpus), preexec_fn=_child_setup, start_new_session=True, **kw)
    _started.append(p)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(p, grace=2)
        raise
    finally:
        if p in _started:
            _started.remove(p)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def stop(p, grace=10.0):
    """SIGTERM to the process group of p, SIGKILL to the group if p has not
    exited after grace seconds. The group is the one start() created, so it
    holds only our processes (e.g. ejabberd's erl_child_setup helper). The
    group is only signalled while p is unreaped, so its ID cannot have been
    reused by anyone else."""
    if p in _started:
        _started.remove(p)
    if p.poll() is not None:
        return
    _signal_group(p, signal.SIGTERM)
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(p, signal.SIGKILL)
        p.wait()


def _signal_group(p, sig):
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def stop_all():
    for p in list(reversed(_started)):
        stop(p, grace=3)


def _on_signal(signum, frame):
    stop_all()
    sys.exit(128 + signum)


def install_cleanup():
    """Stops every started process on SIGINT/SIGTERM/SIGHUP. Normal exits
    and exceptions are covered by the caller's try/finally."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)


def free_port():
    """A free loopback TCP port below the ephemeral range, so that the
    loadgen's own outgoing connections can never collide with it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, max(10001, low))
        if port in WELL_KNOWN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


STREAM_OPEN = ("<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client'"
               " xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


def _offers_features(port, domain):
    """True when a stream opened on port gets its <stream:features/>."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        try:
            s.connect(("127.0.0.1", port))
            s.sendall((STREAM_OPEN % domain).encode())
            got = b""
            while b"features" not in got and len(got) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                got += chunk
            s.sendall(b"</stream:stream>")
            return True
        except OSError:
            return False


def wait_ready(port, proc, domain, timeout=60.0):
    """Waits until the server on 127.0.0.1:port answers a stream header
    with its features. A listening socket is not enough: ejabberd accepts
    connections before its virtual hosts are up and leaves them hanging.
    Fails early when the server process has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before it was ready")
        if _offers_features(port, domain):
            return
        time.sleep(0.3)
    raise RuntimeError(f"no XMPP stream features on port {port} after {timeout:.0f} s")


def children(pid):
    """PIDs whose parent is pid."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces: fields start after the ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def find_process(root, name, depth=4):
    """The PID of the process called name: root itself (when the launch
    chain only exec'd) or one of its descendants."""
    if comm(root) == name:
        return root
    if depth == 0:
        return None
    for child in children(root):
        found = find_process(child, name, depth - 1)
        if found:
            return found
    return None
