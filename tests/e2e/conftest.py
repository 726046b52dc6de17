"""End-to-end test fixtures: start real Tern servers on loopback.

Run with Debian's interpreter (it has python3-pytest and python3-slixmpp):

    TERN_BUILD=$PWD/build-asan /usr/bin/python3 -m pytest -q tests/e2e

Fixtures:
  tern         function-scoped factory: tern(users=..., hosts=..., **server_options)
  tern_module  the same, module-scoped (one server shared by a module's tests)
  server       a module-scoped server with the default hosts and USERS

Every server gets its own temporary directory (config, data_dir, log). On
teardown the server receives SIGTERM; the test fails if it does not exit 0
within 10 s or if its log shows a sanitizer report.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")

# Accounts created on every server unless a test asks for others.
USERS = {
    "alice@localhost": "alice-secret",
    "bob@localhost": "bob-secret",
    "carol@localhost": "carol-secret",
    "zoe@localhost": "p\u00e4ssw\u00f6rd-\u00df\u20ac",  # non-ASCII password
    "alice@example.org": "alice-at-example",  # a different account than alice@localhost
    "dave@example.org": "dave-secret",
}

DEFAULT_HOSTS = {
    "localhost": {"registration": "no"},
    "example.org": {},
}

# Test-friendly server defaults. Rate limits are off by default because all
# tests log in from 127.0.0.1; the tests of those limits switch them on.
DEFAULT_OPTIONS = {
    "log_level": "debug",
    "listen": "127.0.0.1",
    "require_encryption": "yes",
    "max_stanza_size": "262144",
    "max_output_buffer": "1M",
    "handshake_timeout": "60",
    "idle_timeout": "600",
    "sasl_iterations": "4096",
    "auth_max_attempts": "3",
    "auth_ip_limit": "0",
    "auth_account_limit": "0",
    "auth_window": "300",
    "hide_version": "no",
    # scripts/test.sh runs the suite a second time with two event loops.
    "workers": os.environ.get("TERN_TEST_WORKERS", "1"),
}


def tern_build_dir():
    b = os.environ.get("TERN_BUILD")
    if b:
        return Path(b).resolve()
    for cand in ("build-asan", "build"):
        if (REPO / cand / "tern").exists():
            return REPO / cand
    return REPO / "build-asan"


def free_ports(n):
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def sanitizer_findings(text):
    return [p for p in SANITIZER_PATTERNS if p in text]


def _env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:quarantine_size_mb=16")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


ACTIVE_SERVERS = []


class TernServer:
    """One Tern process with its own config and data directory."""

    def __init__(self, workdir, hosts, options, name="tern"):
        self.build = tern_build_dir()
        self.binary = self.build / "tern"
        self.ctl = self.build / "ternctl"
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.cfg_path = self.workdir / "tern.conf"
        self.log_path = self.workdir / "tern.log"
        self.hosts = hosts
        self.options = dict(DEFAULT_OPTIONS)
        self.options.update({k: str(v) for k, v in options.items()})
        self.host = "127.0.0.1"
        self.c2s_port = self.tls_port = self.http_port = None
        self.name = name
        self.proc = None
        self.users = {}
        self.problems = []
        self._log_file = None
        self.shutdown_status = None  # exit status of a deliberate shutdown()

    # ----------------------------------------------------------- config
    def write_config(self):
        lines = ["# written by tests/e2e/conftest.py", "[server]"]
        opts = dict(self.options)
        opts["data_dir"] = str(self.data_dir)
        opts["c2s_port"] = str(self.c2s_port)
        opts["c2s_tls_port"] = str(self.tls_port)
        # The web listener: a free port unless the test chose one; no HTTPS
        # (it would need its own certificate) unless asked for.
        opts.setdefault("http_port", str(self.http_port))
        opts.setdefault("https_port", "0")
        self.http_port = int(opts["http_port"])
        for k, v in opts.items():
            lines.append("%s = %s" % (k, v))
        for domain, hopts in self.hosts.items():
            lines.append("")
            lines.append("[host %s]" % domain)
            for k, v in hopts.items():
                lines.append("%s = %s" % (k, v))
        self.cfg_path.write_text("\n".join(lines) + "\n")

    # ---------------------------------------------------------- process
    def start(self):
        if not self.binary.exists() or not self.ctl.exists():
            pytest.fail("Tern binaries not found in %s (set TERN_BUILD)" % self.build)
        for attempt in range(3):
            self.c2s_port, self.tls_port, self.http_port = free_ports(3)
            self.write_config()
            self._log_file = open(self.log_path, "ab")
            self._log_file.write(("---- start attempt %d, ports %d/%d/%d\n"
                                  % (attempt + 1, self.c2s_port, self.tls_port,
                                     self.http_port)).encode())
            self._log_file.flush()
            self.shutdown_status = None
            self.proc = subprocess.Popen([str(self.binary), "-c", str(self.cfg_path)],
                                         stdin=subprocess.DEVNULL, stdout=self._log_file,
                                         stderr=subprocess.STDOUT, env=_env(),
                                         cwd=str(self.workdir))
            ACTIVE_SERVERS.append(self)
            if self._wait_ready():
                return self
            log = self.log_text()
            rc = self.proc.poll()
            if rc is None:
                self.proc.kill()
                self.proc.wait()
            ACTIVE_SERVERS.remove(self)
            self._log_file.close()
            if rc is not None and re.search(r"address already in use|EADDRINUSE", log, re.I):
                continue  # lost a port race; try other ports
            pytest.fail("tern did not become ready within %.0fs (exit %s); log:\n%s"
                        % (READY_TIMEOUT, rc, log[-8000:]))
        pytest.fail("tern could not bind its ports after 3 attempts")

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        pat = re.compile(r"\bready\b", re.I)
        while time.monotonic() < deadline:
            text = self.log_text()
            tail = text.split("---- start attempt")[-1]
            if pat.search(tail):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=80):
        return "\n".join(self.log_text().splitlines()[-n:])

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def shutdown(self, timeout=STOP_TIMEOUT):
        """Deliberate SIGTERM during a test; returns the exit status (None if
        it had to be killed). The server can be start()ed again afterwards,
        with the same data_dir."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        self.shutdown_status = rc
        if rc != 0:
            self.problems.append("deliberate shutdown: exit status %s" % rc)
        if self in ACTIVE_SERVERS:
            ACTIVE_SERVERS.remove(self)
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        return rc

    def crash(self):
        """SIGKILL, as a power cut would, for durability tests. The server
        can be start()ed again on the same data_dir."""
        self.proc.kill()
        self.proc.wait()
        self.shutdown_status = self.proc.returncode
        if self in ACTIVE_SERVERS:
            ACTIVE_SERVERS.remove(self)
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def stop(self):
        """SIGTERM, wait, kill; returns a list of problems (empty = clean)."""
        problems = []
        if self.proc is None:
            return problems
        if self.proc.poll() is not None and self.shutdown_status is not None \
                and self.proc.returncode == self.shutdown_status:
            pass  # stopped by shutdown(); its status is in self.problems
        elif self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append("tern did not exit within %.0fs of SIGTERM (killed)" % STOP_TIMEOUT)
            else:
                if self.proc.returncode != 0:
                    problems.append("tern exited with status %d after SIGTERM"
                                    % self.proc.returncode)
        else:
            problems.append("tern died during the test (status %d)" % self.proc.returncode)
        if self in ACTIVE_SERVERS:
            ACTIVE_SERVERS.remove(self)
        if self._log_file:
            self._log_file.close()
        found = sanitizer_findings(self.log_text())
        if found:
            problems.append("sanitizer report in the tern log (%s)" % ", ".join(found))
        problems.extend(self.problems)
        if problems:
            problems.append("log (%s), last lines:\n%s" % (self.log_path, self.log_tail(150)))
        self.proc = None
        return problems

    # ---------------------------------------------------------- ternctl
    def ternctl(self, *args, input=None, timeout=60):
        r = subprocess.run([str(self.ctl), "-c", str(self.cfg_path)] + list(args),
                           input=input, capture_output=True, text=True, encoding="utf-8",
                           errors="replace", env=_env(),
                           timeout=timeout, cwd=str(self.workdir))
        found = sanitizer_findings(r.stderr)
        if found:
            self.problems.append("sanitizer report from ternctl %s:\n%s" % (" ".join(args), r.stderr))
        return r

    def add_user(self, jid, password):
        r = self.ternctl("user", "add", jid, input=password + "\n")
        assert r.returncode == 0, "ternctl user add %s: exit %d: %s" % (jid, r.returncode, r.stderr)
        self.users[jid] = password

    def password(self, jid):
        return self.users[jid]


class ServerFactory:
    def __init__(self, tmp_path_factory, basename):
        self.tmp_path_factory = tmp_path_factory
        self.basename = re.sub(r"[^A-Za-z0-9_]+", "_", basename)[-40:]
        self.servers = []

    def __call__(self, users=None, hosts=None, **options):
        hosts = DEFAULT_HOSTS if hosts is None else hosts
        users = USERS if users is None else users
        workdir = self.tmp_path_factory.mktemp("tern_" + self.basename)
        srv = TernServer(workdir, hosts, options, name=workdir.name)
        self.servers.append(srv)
        srv.start()
        for jid, pw in users.items():
            srv.add_user(jid, pw)
        return srv

    def finish(self):
        problems = []
        for srv in self.servers:
            p = srv.stop()
            if p:
                problems.append("[%s]\n%s" % (srv.name, "\n".join(p)))
        self.servers = []
        return problems


@pytest.fixture
def tern(request, tmp_path_factory):
    f = ServerFactory(tmp_path_factory, request.node.name)
    yield f
    problems = f.finish()
    if problems:
        pytest.fail("server problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def tern_module(request, tmp_path_factory):
    f = ServerFactory(tmp_path_factory, request.module.__name__)
    yield f
    problems = f.finish()
    if problems:
        pytest.fail("server problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def server(tern_module):
    return tern_module()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for srv in list(ACTIVE_SERVERS):
            rep.sections.append(("tern log %s (tail)" % srv.name, srv.log_tail(60)))
