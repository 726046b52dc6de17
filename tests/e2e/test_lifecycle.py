"""Server process lifecycle: SIGTERM shutdown, persistence across restarts,
certificates per virtual host, configuration errors."""

import subprocess
import time

import pytest

from conftest import tern_build_dir
from xmpp_raw import server_connect, server_login

try:
    from cryptography import x509
except ImportError:  # pragma: no cover
    x509 = None


# alice@localhost and bob@localhost hash to different workers when there are
# two, so these also cover signals passed on from worker 0 to the others.
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_sends_system_shutdown(tern, workers):
    srv = tern(users={"alice@localhost": "pw-a", "bob@localhost": "pw-b"}, workers=workers)
    authed = server_login(srv, "alice@localhost/shutdown", "pw-a")
    direct = server_login(srv, "bob@localhost/shutdown", "pw-b", direct_tls=True)
    pre_auth = server_connect(srv)
    pre_auth.open_stream("localhost")
    pre_auth.starttls()
    try:
        start = time.monotonic()
        rc = srv.shutdown()
        assert rc == 0, "exit status %s after SIGTERM" % rc
        assert time.monotonic() - start < 10
        for s in (authed, direct, pre_auth):
            assert s.expect_stream_error(timeout=5) == "system-shutdown"
    finally:
        for s in (authed, direct, pre_auth):
            s.close()


def test_accounts_persist_across_restart(tern):
    srv = tern(users={"alice@localhost": "persist-pw"})
    r = srv.ternctl("user", "add", "bob@localhost", input="bob-pw\n")
    assert r.returncode == 0, r.stderr
    assert srv.shutdown() == 0
    srv.start()  # same data_dir, new ports
    server_login(srv, "alice@localhost", "persist-pw").close()
    server_login(srv, "bob@localhost", "bob-pw").close()
    with server_connect(srv) as s:
        s.open_stream("localhost")
        s.starttls()
        ok, cond = s.sasl_plain("alice", "wrong")
        assert not ok and cond == "not-authorized"


@pytest.mark.skipif(x509 is None, reason="python3-cryptography not installed")
@pytest.mark.parametrize("domain", ["localhost", "example.org"])
@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct_tls"])
def test_certificate_per_host(server, domain, direct_tls):
    """SNI selects the host's (generated, self-signed) certificate."""
    with server_connect(server, direct_tls=direct_tls, domain=domain) as s:
        s.open_stream(domain)
        if not direct_tls:
            s.starttls()
        cert = x509.load_der_x509_certificate(s.sock.getpeercert(binary_form=True))
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert domain in san.get_values_for_type(x509.DNSName)


def test_config_error_is_reported(tmp_path):
    build = tern_build_dir()
    if not (build / "tern").exists():
        pytest.fail("Tern binaries not found in %s (set TERN_BUILD)" % build)
    cfg = tmp_path / "bad.conf"
    cfg.write_text("[server]\ndata_dir = %s\nno_such_option = 1\n\n[host localhost]\n"
                   % (tmp_path / "data"))
    r = subprocess.run([str(build / "tern"), "-c", str(cfg)], capture_output=True, text=True,
                       timeout=20, stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "bad.conf:3" in out, "expected a file:line message, got:\n" + out
    for p in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert p not in out


def test_duplicate_host_is_an_error(tmp_path):
    build = tern_build_dir()
    if not (build / "tern").exists():
        pytest.fail("Tern binaries not found in %s (set TERN_BUILD)" % build)
    cfg = tmp_path / "dup.conf"
    cfg.write_text("[server]\ndata_dir = %s\n[host localhost]\n[host localhost]\n" % (tmp_path / "d"))
    r = subprocess.run([str(build / "tern"), "-c", str(cfg)], capture_output=True, text=True,
                       timeout=20, stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert "dup.conf:4" in r.stdout + r.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reloads_limits_and_log_level(tern, workers):
    """SIGHUP applies a new max_stanza_size to existing streams and a new
    log level; a broken file is reported and the running config is kept.
    Every worker reloads its own copy."""
    import signal
    srv = tern(users={"alice@localhost": "pw-a", "bob@localhost": "pw-b"},
               max_stanza_size="16K", max_output_buffer="1M", log_level="info", workers=workers)
    a = server_login(srv, "alice@localhost/hup", "pw-a")
    b = server_login(srv, "bob@localhost/hup", "pw-b")
    try:
        big = "x" * 40000
        srv.options["max_stanza_size"] = "64K"
        srv.options["log_level"] = "debug"
        srv.write_config()
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while srv.log_text().count("configuration reloaded") < workers and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert srv.log_text().count("configuration reloaded") == workers
        a.send_message(b.jid, big)
        m = b.expect_message(timeout=10)
        assert len(m.findtext("{jabber:client}body")) == 40000

        # A broken file: the error is logged, the server keeps running.
        srv.cfg_path.write_text(srv.cfg_path.read_text() + "\nbogus_option = 1\n")
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while srv.log_text().count("reload failed") < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        assert srv.log_text().count("reload failed") == workers
        assert a.ping_server()
    finally:
        a.close()
        b.close()
    srv.write_config()
