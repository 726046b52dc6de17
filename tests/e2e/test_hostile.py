"""Hostile and broken clients: stream errors (RFC 6120 §4.9.3), XML
restrictions (§11.1), size and time limits, connection storms, slow readers.
Raw sockets only."""

import socket
import ssl
import struct
import time

import pytest

import slix
import xmpp_raw as X
from xmpp_raw import NS_SASL, NS_TLS, server_connect, server_login, stream_header

HDR = stream_header()
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"

BILLION_LAUGHS = (
    "<?xml version='1.0'?>"
    "<!DOCTYPE stream:stream ["
    "<!ENTITY lol 'lol'>"
    + "".join("<!ENTITY lol%d '%s'>" % (i, ("&lol%d;" % (i - 1) if i > 1 else "&lol;") * 10)
              for i in range(1, 10))
    + "]>" + stream_header(xml_decl=False)
    + "<message to='bob@localhost'><body>&lol9;</body></message>"
)

# name -> (bytes sent on a fresh TCP connection, accepted conditions)
PRE_TLS_CASES = {
    "malformed": (HDR + "<message><body>x</message>", {"not-well-formed"}),
    "junk-before-header": ("GARBAGE\r\n" + HDR, {"not-well-formed"}),
    "http-request": ("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", {"not-well-formed"}),
    "doctype": ("<?xml version='1.0'?><!DOCTYPE stream:stream>" + stream_header(xml_decl=False),
                {"restricted-xml"}),
    "external-entity": ("<?xml version='1.0'?><!DOCTYPE stream:stream "
                        "[<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
                        + stream_header(xml_decl=False) + "<message><body>&xxe;</body></message>",
                        {"restricted-xml"}),
    "comment": (HDR + "<!-- hello -->", {"restricted-xml"}),
    "comment-in-stanza": (HDR + "<starttls xmlns='%s'><!-- x --></starttls>" % NS_TLS,
                          {"restricted-xml"}),
    "processing-instruction": (HDR + "<?tern do-something?>", {"restricted-xml"}),
    "undefined-entity": (HDR + "<message><body>&xxe;</body></message>",
                         {"restricted-xml", "not-well-formed"}),
    "bad-stream-namespace": (stream_header(stream_ns="http://example.com/streams"),
                             {"invalid-namespace"}),
    "bad-content-namespace": (stream_header(xmlns="urn:tern:bogus"), {"invalid-namespace"}),
    "version-2": (stream_header(version="2.0"), {"unsupported-version"}),
    "unknown-host": (stream_header(to="unknown.example"), {"host-unknown"}),
    "invalid-utf8": (HDR.encode() + b"<message><body>\xff\xfe\xc3</body></message>",
                     {"not-well-formed", "bad-format"}),
    "control-character": (HDR + "<message><body>\x01</body></message>", {"not-well-formed"}),
    "duplicate-attribute": (HDR + "<message to='a@localhost' to='b@localhost'/>",
                            {"not-well-formed"}),
    "unbound-prefix": (HDR + "<foo:message/>", {"not-well-formed"}),
    "latin1-encoding": ("<?xml version='1.0' encoding='ISO-8859-1'?>" + stream_header(xml_decl=False),
                        {"unsupported-encoding"}),
    "billion-laughs": (BILLION_LAUGHS, {"restricted-xml"}),
}


@pytest.mark.parametrize("case", sorted(PRE_TLS_CASES))
def test_stream_error_before_tls(server, case):
    data, conditions = PRE_TLS_CASES[case]
    rss_before = server.rss_kb()
    with server_connect(server) as s:
        s.send(data)
        cond = s.expect_stream_error()
        assert cond in conditions, "%s: got <%s/>, expected %s" % (case, cond, conditions)
    assert server.alive()
    assert server.rss_kb() - rss_before < 64 * 1024


@pytest.mark.parametrize("case", ["malformed", "comment", "processing-instruction",
                                  "bad-stream-namespace", "unknown-host", "billion-laughs"])
def test_stream_error_direct_tls(server, case):
    data, conditions = PRE_TLS_CASES[case]
    with server_connect(server, direct_tls=True) as s:
        s.send(data)
        cond = s.expect_stream_error()
        assert cond in conditions, "%s: got <%s/>" % (case, cond)


def tls_unauthenticated(server):
    s = server_connect(server)
    s.open_stream("localhost")
    s.starttls()
    return s


@pytest.mark.parametrize("stanza", [
    "<message to='bob@localhost'><body>early</body></message>",
    "<presence/>",
    "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
], ids=["message", "presence", "iq"])
def test_stanza_before_auth(server, stanza):
    with tls_unauthenticated(server) as s:
        s.send(stanza)
        assert s.expect_stream_error() == "not-authorized"


def test_stanza_before_tls(server):
    with server_connect(server) as s:
        s.open_stream("localhost")
        s.send("<message to='bob@localhost'><body>plaintext</body></message>")
        assert s.expect_stream_error() in ("not-authorized", "policy-violation")


def test_comment_after_auth(server):
    with server_login(server, "alice@localhost/c") as s:
        s.send("<!-- sneaky -->")
        assert s.expect_stream_error() == "restricted-xml"


def test_unknown_top_level_element(server):
    with server_login(server, "alice@localhost/u") as s:
        s.send("<frobnicate xmlns='urn:tern:nonsense'/>")
        assert s.expect_stream_error() == "unsupported-stanza-type"


def test_malformed_after_auth(server):
    with server_login(server, "alice@localhost/m") as s:
        s.send("<message to='bob@localhost'><body>oops</bdy></message>")
        assert s.expect_stream_error() == "not-well-formed"


# --------------------------------------------------------------- sizes

def test_oversize_stanza(server):
    limit = int(server.options["max_stanza_size"])
    with server_login(server, "alice@localhost/big") as s:
        s.send_chunked("<message to='bob@localhost'><body>" + "a" * (limit + 4096) + "</body></message>")
        assert s.expect_stream_error(timeout=30) == "policy-violation"


def test_stanza_just_under_limit_is_delivered(server):
    limit = int(server.options["max_stanza_size"])
    b = server_login(server, "bob@localhost/bigrecv")
    a = server_login(server, "alice@localhost/bigsend")
    try:
        overhead = len("<message to='%s' type='chat' id='big1'><body></body></message>" % b.jid)
        body = "z" * (limit - overhead - 512)
        a.send_message(b.jid, body, id_="big1")
        m = b.expect_message(timeout=30)
        assert m.findtext("{jabber:client}body") == body
        assert a.ping_server()
    finally:
        a.close()
        b.close()


def test_one_megabyte_stanza_memory(server):
    """1 MB inside one message body, in 16 KB chunks: policy-violation, and
    the server must not buffer it all."""
    rss_before = server.rss_kb()
    with server_login(server, "alice@localhost/mb") as s:
        s.send("<message to='bob@localhost'><body>")
        s.send_chunked("b" * (1024 * 1024), chunk=16384)
        s.send_chunked("</body></message>")
        assert s.expect_stream_error(timeout=30) == "policy-violation"
    growth = server.rss_kb() - rss_before
    assert growth < 48 * 1024, "RSS grew by %d KB" % growth
    with server_login(server, "alice@localhost/after-mb") as s:
        assert s.ping_server()


def test_oversize_before_auth(server):
    rss_before = server.rss_kb()
    with tls_unauthenticated(server) as s:
        s.send("<auth xmlns='%s' mechanism='PLAIN'>" % NS_SASL)
        s.send_chunked("QUFB" * (1024 * 1024 // 4))
        s.send_chunked("</auth>")
        assert s.expect_stream_error(timeout=30) == "policy-violation"
    assert server.rss_kb() - rss_before < 48 * 1024


def test_oversize_before_tls(server):
    with server_connect(server) as s:
        s.send(HDR + "<starttls xmlns='%s'>" % NS_TLS)
        s.send_chunked("x" * (1024 * 1024))
        assert s.expect_stream_error(timeout=30) == "policy-violation"


def test_huge_stream_header(server):
    """A 1 MB attribute in the stream header: the server must cut it off
    (any stream error), not buffer it."""
    rss_before = server.rss_kb()
    with server_connect(server) as s:
        s.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
               "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' x='")
        s.send_chunked("h" * (1024 * 1024))
        try:
            s.expect_stream_error(timeout=30)
        except X.StreamClosed:
            pass  # closing without a header is acceptable for a non-XMPP peer
    assert server.alive()
    assert server.rss_kb() - rss_before < 48 * 1024


@pytest.mark.parametrize("shape", ["deep-nesting", "many-attributes", "many-namespaces", "many-children"])
def test_pathological_but_small_stanzas(server, shape):
    """Legal XML below the size limit that is expensive to parse or copy: the
    server either routes it or rejects it with a stream error, and keeps
    serving."""
    if shape == "deep-nesting":
        payload = "<x xmlns='urn:tern:deep'>" + "<a>" * 20000 + "</a>" * 20000 + "</x>"
    elif shape == "many-attributes":
        payload = "<x xmlns='urn:tern:attrs' %s/>" % " ".join("a%d='v'" % i for i in range(8000))
    elif shape == "many-namespaces":
        payload = "<x xmlns='urn:tern:ns' %s/>" % " ".join("xmlns:p%d='urn:p:%d'" % (i, i)
                                                           for i in range(4000))
    else:
        payload = "<x xmlns='urn:tern:kids'>" + "<c/>" * 30000 + "</x>"
    a = server_login(server, "alice@localhost/patho")
    b = server_login(server, "bob@localhost/patho")
    try:
        a.send("<message to='%s' id='patho'><body>p</body>%s</message>" % (b.jid, payload))
        try:
            m = b.expect_message(timeout=30)
            assert m.get("id") == "patho"
            assert a.ping_server()
        except TimeoutError:
            # not delivered: then alice's stream must have been closed
            # with a stream error
            cond = a.expect_stream_error(timeout=5)
            assert cond in ("policy-violation", "not-well-formed", "restricted-xml"), cond
    finally:
        a.close()
        b.close()
    with server_login(server, "carol@localhost/after-patho") as c:
        assert c.ping_server()


# ---------------------------------------------------------------- time

@pytest.fixture(scope="module")
def timeout_server(tern_module):
    return tern_module(users={"alice@localhost": "pw-alice"}, handshake_timeout=2, idle_timeout=4)


def test_handshake_timeout(timeout_server):
    start = time.monotonic()
    with server_connect(timeout_server) as s:
        s.open_stream("localhost")
        assert s.expect_stream_error(timeout=15) == "connection-timeout"
    elapsed = time.monotonic() - start
    assert 1.5 <= elapsed <= 12, elapsed


def test_handshake_timeout_after_tls(timeout_server):
    with server_connect(timeout_server) as s:
        s.open_stream("localhost")
        s.starttls()
        assert s.expect_stream_error(timeout=15) == "connection-timeout"


def test_silent_tcp_connection_is_dropped(timeout_server):
    with server_connect(timeout_server) as s:
        assert s.wait_closed(15), "a silent connection outlived handshake_timeout"


def test_idle_timeout(timeout_server):
    s = server_login(timeout_server, "alice@localhost/idle", "pw-alice")
    start = time.monotonic()
    try:
        assert s.expect_stream_error(timeout=20) == "connection-timeout"
    finally:
        s.close()
    elapsed = time.monotonic() - start
    assert 3 <= elapsed <= 15, "idle timeout after %.1fs (idle_timeout = 4)" % elapsed


def test_keepalive_prevents_idle_timeout(timeout_server):
    with server_login(timeout_server, "alice@localhost/alive", "pw-alice") as s:
        for _ in range(8):  # 8 s > idle_timeout
            time.sleep(1)
            s.send(" ")
        assert s.ping_server()


# ---------------------------------------------------- connection storms

def client_hello_bytes():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def test_connection_storm(tern):
    srv = tern(users={"alice@localhost": "pw-alice", "bob@localhost": "pw-bob"})
    hello = client_hello_bytes()
    assert hello[:1] == b"\x16"
    fds_before = srv.fd_count()
    total, batch, connected, failed = 2000, 100, 0, 0
    deadline = time.monotonic() + 240
    for start in range(0, total, batch):
        assert time.monotonic() < deadline, "storm took too long"
        socks = []
        for i in range(start, start + batch):
            kind = i % 6
            port = srv.tls_port if kind in (1, 2) else srv.c2s_port
            try:
                sk = socket.create_connection((srv.host, port), timeout=10)
            except OSError:
                failed += 1
                continue
            connected += 1
            try:
                if kind == 0:
                    pass  # connect and drop
                elif kind == 1:
                    sk.sendall(hello[: len(hello) // 2])  # half a ClientHello
                elif kind == 2:
                    sk.sendall(hello)  # full ClientHello, never finish
                elif kind == 3:
                    sk.sendall(HDR.encode())  # stream opened, then gone
                elif kind == 4:
                    sk.sendall((HDR + "<starttls xmlns='%s'/>" % NS_TLS).encode())
                else:
                    sk.sendall((HDR + "<message><body>unfinished").encode())
                if i % 2:
                    # abortive close (RST)
                    sk.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            socks.append(sk)
        for sk in socks:
            sk.close()
    assert connected >= total * 0.95, "only %d of %d connections accepted" % (connected, total)
    assert srv.alive(), "server died during the storm"

    async def main():
        a = await slix.connect(srv, "alice@localhost/after-storm", "pw-alice")
        b = await slix.connect(srv, "bob@localhost/after-storm", "pw-bob")
        try:
            a.send_message(mto=b.boundjid, mbody="still here", mtype="chat")
            m = await b.next_message(timeout=15)
            assert m["body"] == "still here"
        finally:
            await a.close()
            await b.close()
    slix.run(main())

    # every dropped connection's descriptor is released
    end = time.monotonic() + 20
    while srv.fd_count() > fds_before + 5 and time.monotonic() < end:
        time.sleep(0.5)
    assert srv.fd_count() <= fds_before + 5, \
        "fd leak: %d before, %d after the storm" % (fds_before, srv.fd_count())


# --------------------------------------------------------- slow readers

def server_side_tcp_state(server_port, client_port):
    """State (hex, as in /proc/net/tcp) of the server's end of the connection
    from client_port, or None once it is gone. Looked at from the server
    side because a FIN queued behind unread data never reaches a client that
    does not read."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, remote, st = parts[1], parts[2], parts[3]
            if int(local.split(":")[1], 16) == server_port and \
                    int(remote.split(":")[1], 16) == client_port:
                return st
    return None


ESTABLISHED = "01"


def test_slow_reader_bounded_and_nothing_lost(tern):
    """A client that stops reading: the server neither buffers for it
    without bound nor drops what it accepted. Past half of max_output_buffer
    new messages for it are bounced to the sender with resource-constraint;
    everything not bounced reaches the reader once it reads again."""
    srv = tern(users={"alice@localhost": "pw-a", "bob@localhost": "pw-b", "carol@localhost": "pw-c"},
               max_output_buffer="64K", max_stanza_size="32K")
    bob = server_login(srv, "bob@localhost/slow", "pw-b", rcvbuf=4096)
    alice = server_login(srv, "alice@localhost/flood", "pw-a")
    carol = server_login(srv, "carol@localhost/check", "pw-c")
    bob_port = bob.sock.getsockname()[1]
    body = "f" * 4000
    total = 3000  # about 12 MB offered to a client that reads nothing
    bounced = set()

    def drain_alice(wait, quiet=0.0):
        """Reads alice's bounces: waits up to wait for the first, then
        until nothing has come for quiet seconds."""
        while True:
            try:
                el = alice.next(timeout=wait, raise_errors=False)
            except TimeoutError:
                return
            if el.tag == "{jabber:client}message" and el.get("type") == "error":
                assert X.stanza_error(el) == ("wait", "resource-constraint"), X.stanza_error(el)
                bounced.add(el.get("id"))
            wait = quiet

    try:
        rss_before = srv.rss_kb()
        for start in range(0, total, 16):
            alice.send("".join("<message to='bob@localhost/slow' type='chat' id='f%d'>"
                               "<body>%s</body></message>" % (i, body)
                               for i in range(start, min(start + 16, total))))
            drain_alice(0.0)
        assert alice.ping_server(timeout=30)  # the sender is unaffected
        drain_alice(1.0)
        assert bounced, "nothing was refused although bob read nothing"
        # Under ASan every worker thread keeps its own allocator caches and
        # quarantine share, so the bound scales with the workers (a release
        # build grows by under 4 MB with one worker or two).
        workers = int(srv.options.get("workers", "1"))
        assert srv.rss_kb() - rss_before < 32 * 1024 * workers
        assert server_side_tcp_state(srv.c2s_port, bob_port) == ESTABLISHED
        alice.send_message(carol.jid, "after the flood")
        carol.expect_message(timeout=15, pred=lambda e: e.findtext("{jabber:client}body")
                             == "after the flood")
        # bob reads again: every message not bounced arrives, exactly once
        received = []
        while True:
            try:
                m = bob.expect_message(timeout=5)
            except TimeoutError:
                break
            received.append(m.get("id"))
        assert len(received) == len(set(received))
        # With several workers a bounce crosses back through an inbox and
        # may come after the first drain; nothing may be missing once alice
        # has heard everything.
        drain_alice(1.0, quiet=1.0)
        assert set(received) | bounced == {"f%d" % i for i in range(total)}
        assert not set(received) & bounced
    finally:
        alice.close()
        bob.close()
        carol.close()


def test_connections_per_address_limited(tern):
    """max_connections_per_ip: the connection over the limit gets a
    policy-violation stream error; others, and later ones, are served."""
    srv = tern(users={"alice@localhost": "pw-a"}, max_connections_per_ip="3")
    held = []
    try:
        for _ in range(3):
            s = server_connect(srv)
            s.open_stream("localhost")
            held.append(s)
        extra = server_connect(srv)
        assert extra.expect_stream_error(timeout=10) == "policy-violation"
        extra.close()
        held.pop().close()
        time.sleep(0.5)
        server_login(srv, "alice@localhost/limit", "pw-a").close()
    finally:
        for s in held:
            s.close()


def test_peer_reset_while_server_sends_stream_error(server):
    """The peer is gone (RST) by the time the server writes its stream
    header and error: the failed write must not leave a half-closed
    session behind for the sweep to close a second time."""
    for _ in range(50):
        sock = socket.create_connection((server.host, server.c2s_port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(b"junk before any stream header" * 10)
        sock.close()  # RST: the server's reply write fails
    time.sleep(4.5)  # past the sweep's 3 s limit for closing streams
    assert server.alive()
    server_login(server, "alice@localhost/after-reset").close()
