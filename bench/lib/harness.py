"""One scenario against each server in turn: fresh server, accounts, CPU
pinning, the load generator (or another driver such as Tsung), stop."""

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field

from . import accounts, procs, servers, web

SCENARIOS = ("idle", "login", "chat", "muc", "presence", "web")
# loadgen exit status for "this server cannot run this scenario".
EXIT_UNSUPPORTED = 3
# Seconds between "ready" and the first loadgen connection, so start-up
# allocations and garbage collection are over before the loadgen reads the
# baseline memory. The Erlang VM keeps settling for a few seconds.
SETTLE = {"tern": 1.0, "prosody": 2.0, "ejabberd": 5.0}


@dataclass
class Target:
    server: str
    two_cores: bool = False

    @property
    def label(self):
        return self.server + (" (2 cores)" if self.two_cores else "")

    @property
    def server_cpus(self):
        return "0,1" if self.two_cores else "0"

    @property
    def loadgen_cpus(self):
        # With the server on both cores the loadgen is left to the scheduler.
        return None if self.two_cores else "1"


@dataclass
class Options:
    scenario: str
    users: int
    tls: bool = True
    mech: str = "scram-sha-1"
    rate: float = None
    duration: float = None
    hold: float = None
    settle: float = None
    concurrency: int = None
    rooms: int = None  # muc: users = rooms x room_size
    room_size: int = None
    roster_size: int = None  # presence: contacts per user
    messages: int = None  # web: messages each user sends to its partner
    subscribers: int = None  # pubsub: subscribers of the node; users = subscribers + 1
    loadgen_args: list = field(default_factory=list)


def loadgen_command(repo, opts, port, pid, json_path):
    cmd = [os.path.join(repo, "bench", "loadgen", "loadgen"), opts.scenario, "--host", "127.0.0.1",
           "--port", str(port), "--domain", servers.DOMAIN, "--users", str(opts.users),
           "--password", accounts.PASSWORD, "--mech", opts.mech, "--server-pid", str(pid),
           "--json", json_path]
    if opts.tls:
        cmd.append("--tls")
    for flag, value in (("--rate", opts.rate), ("--duration", opts.duration), ("--hold", opts.hold),
                        ("--settle", opts.settle), ("--concurrency", opts.concurrency),
                        ("--rooms", opts.rooms), ("--room-size", opts.room_size),
                        ("--roster-size", opts.roster_size), ("--subscribers", opts.subscribers)):
        if value is not None:
            cmd += [flag, _num(value)]
    return cmd + list(opts.loadgen_args)


def _num(value):
    return str(int(value)) if float(value).is_integer() else str(value)


def loadgen_timeout(opts):
    """A bound on one loadgen run: setup at a slow 50 logins/s, plus the
    measured phase, plus margin. Nothing hangs forever."""
    setup = opts.users / 50
    if opts.scenario == "presence":
        setup += opts.users * (opts.roster_size or 100) / 500  # subscriptions
    if opts.scenario == "muc" and opts.room_size:
        # every join is answered with every occupant's presence: about N^2
        # presences per room of N, and Prosody handles a few thousand a second
        setup += (opts.rooms or 1) * opts.room_size ** 2 / 2500
    if opts.scenario == "pubsub" and opts.subscribers:
        # one subscription (a storage write on every server) per subscriber
        setup += opts.subscribers / 20
    return setup + (opts.hold or 10) + (opts.duration or 10) + 120


def run_loadgen(repo, opts, target, srv, pid, json_path):
    """Runs the loadgen; returns (status, doc). status is "ok",
    "unsupported" or "failed: ..."."""
    cmd = loadgen_command(repo, opts, srv.port, pid, json_path)
    if opts.scenario == "presence" and not srv.rosters_preloaded:
        # The rosters are made over XMPP subscriptions before the measured
        # phase: slow (each change is a storage write), but it also tells
        # the loadgen whether the server has rosters at all.
        cmd.append("--setup-rosters")
    log = os.path.join(srv.workdir, "loadgen.log")
    with open(log, "w") as out:
        out.write(" ".join(cmd) + "\n")
        out.flush()
        res = procs.run(cmd, cpus=target.loadgen_cpus, timeout=loadgen_timeout(opts), stdout=out,
                        stderr=subprocess.STDOUT)
    with open(log) as f:
        text = f.read()
    doc = None
    if os.path.exists(json_path):
        with open(json_path) as f:
            doc = json.load(f)
    if res.returncode == EXIT_UNSUPPORTED or (doc and doc.get("unsupported")):
        return "unsupported", doc
    if res.returncode == 2 and "usage:" in text and opts.scenario in ("muc", "presence", "pubsub"):
        # A loadgen that does not know the scenario yet rejects it as a
        # usage error: the figure is unavailable, not a harness failure.
        return "unsupported", doc
    if res.returncode != 0 or doc is None:
        return f"failed: loadgen exit {res.returncode} (see {log})", doc
    return "ok", doc


def run_target(repo, workroot, opts, target, creds, cert, key, driver=None, log=print):
    """Fresh server for target, accounts, driver run, stop. driver(srv, pid,
    json_path) -> (status, doc) defaults to the loadgen. Returns the result
    entry for the report."""
    srv = servers.SERVERS[target.server](repo, os.path.join(workroot, target.server), cert, key, opts.tls)
    # Tern on two cores runs two event loops (workers); the peers use every
    # core they are given on their own.
    srv.workers = 2 if target.two_cores else 1
    # The web scenario turns on each server's BOSH and WebSocket endpoints.
    srv.web = opts.scenario == "web"
    # The pubsub scenario (bench/run psfan) turns on the peers' generic
    # pubsub services (Tern's is always on).
    srv.pubsub = opts.scenario == "pubsub"
    result = {"server": target.server, "label": target.label, "two_cores": target.two_cores,
              "version": srv.version(), "status": "failed", "loadgen": None}
    proc = None
    started = time.monotonic()
    try:
        srv.prepare(opts.users, creds, opts.roster_size if opts.scenario == "presence" else None)
        proc = procs.start(srv.command(), cpus=target.server_cpus, log=srv.log_path, env=srv.env(),
                           cwd=srv.workdir)
        procs.wait_ready(srv.port, proc, servers.DOMAIN, srv.start_timeout)
        pid = procs.find_process(proc.pid, srv.process_name)
        if pid is None:
            raise RuntimeError(f"no {srv.process_name} process under PID {proc.pid}")
        time.sleep(SETTLE[target.server])
        json_path = os.path.join(srv.workdir, "result.json")
        if driver:
            status, doc = driver(srv, pid, json_path)
        elif opts.scenario == "web":
            status, doc = web.run(repo, opts, target, srv, pid, json_path)
        else:
            status, doc = run_loadgen(repo, opts, target, srv, pid, json_path)
        result.update(status=status, loadgen=doc, server_pid_comm=srv.process_name)
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
        result["status"] = f"failed: {e}"
    finally:
        if proc:
            procs.stop(proc)
    # A crash or startup error is only visible in the server's own log.
    if result["status"].startswith("failed") and os.path.exists(srv.log_path):
        with open(srv.log_path, errors="replace") as f:
            tail = f.read()[-600:].strip()
        if tail:
            result["server_log_tail"] = tail
    log(f"  {target.label:<16} {result['status']}  ({time.monotonic() - started:.0f} s)")
    return result


def environment(repo):
    """Where and on what the figures were taken."""
    def cmd(*args):
        res = subprocess.run(args, capture_output=True, text=True)
        return res.stdout.strip() if res.returncode == 0 else None

    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), None)
    except OSError:
        pass
    return {
        "commit": cmd("git", "-C", repo, "rev-parse", "HEAD"),
        "dirty": bool(cmd("git", "-C", repo, "status", "--porcelain", "--untracked-files=no")),
        "cpu_model": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "os": cmd("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
        "openssl": cmd("openssl", "version"),
        "python": platform.python_version(),
    }


def warn_system_instances(log=print):
    """System prosody/ejabberd instances (e.g. started by a package's
    postinst) are left alone: the harness uses its own ports, directories
    and an unnamed Erlang node, so they cannot clash, but they do compete
    for CPU."""
    for name in ("lua5.4", "beam.smp"):
        for entry in os.listdir("/proc"):
            if entry.isdigit() and procs.comm(int(entry)) == name:
                log(f"bench: warning: a {name} process (PID {entry}) not started by this run is"
                    " running; it may take CPU from the measurement")
                break
