"""Hostile and broken web clients: the HTTP listener (RFC 9112 framing and
limits), CORS, BOSH (XEP-0124/0206) protocol errors and WebSocket (RFC 6455
/ RFC 7395) handshake and framing errors, slow and idle connections.

Raw sockets and the standard library only. Every test checks the precise
answer and then that the server still serves a fresh client: a GET of
/.well-known/host-meta and an XMPP login over TCP.
"""

import base64
import hashlib
import os
import socket
import struct
import time
import xml.etree.ElementTree as ET

import pytest

from xmpp_raw import server_login

NS_HTTPBIND = "http://jabber.org/protocol/httpbind"
NS_XBOSH = "urn:xmpp:xbosh"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
NS_STREAMS = "http://etherx.jabber.org/streams"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

GOOD_ORIGIN = "https://good.example"
EVIL_ORIGIN = "https://evil.example"
MAX_BODY = 4096
MAX_STANZA = 16384
WS_MAX_MESSAGE = MAX_STANZA + 1024  # websocket.c: max_stanza_size + 1024
HTTP_TIMEOUT = 2

USERS = {"alice@localhost": "alice-secret"}
WEB_OPTIONS = {
    "cors_origins": GOOD_ORIGIN,
    "http_max_body": str(MAX_BODY),
    "http_timeout": str(HTTP_TIMEOUT),
    "max_stanza_size": str(MAX_STANZA),
    "bosh_max_hold": "2",  # lets a client ask for hold='2' (requests='3')
}


def q(ns, local):
    return "{%s}%s" % (ns, local)


# --------------------------------------------------------------------------
# the server: one per module, started again if a test killed it (the dead
# one is then reported by the fixture's teardown)

class _Holder:
    srv = None


@pytest.fixture(scope="module")
def _web_holder():
    return _Holder()


@pytest.fixture
def web(_web_holder, tern_module):
    if _web_holder.srv is None or not _web_holder.srv.alive():
        _web_holder.srv = tern_module(users=USERS, **WEB_OPTIONS)
    return _web_holder.srv


# --------------------------------------------------------------------------
# HTTP client

class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version, self.status, self.reason = version, status, reason
        self.headers, self.body = headers, body

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return "<%s %d %s %r %r>" % (self.version, self.status, self.reason, self.headers,
                                     self.body[:200])


class Conn:
    """One HTTP connection with a read buffer."""

    def __init__(self, server, timeout=5.0):
        self.sock = socket.create_connection((server.host, server.http_port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def read_exact(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, timeout=5.0, head=False):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = headers[name] + ", " + value if name in headers else value
        status = int(status)
        body = b""
        if status >= 200 and status not in (204, 304) and not head:
            assert "content-length" in headers, "response without Content-Length: %r" % lines
            body = self.read_exact(int(headers["content-length"]),
                                   max(0.01, deadline - time.monotonic()))
        return Response(version, status, reason, headers, body)

    def expect_eof(self, timeout=3.0):
        """The server closes the connection and sends nothing more."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
            except EOFError:
                break
            except ConnectionResetError:
                break
            except socket.timeout:
                raise AssertionError("connection still open %.1fs later" % timeout)
        assert self.buf == b"", "unexpected bytes before the close: %r" % self.buf[:200]


def http_get(server, path, headers=(), timeout=5.0):
    with Conn(server) as c:
        c.send("GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n"
               % (path, "".join("%s: %s\r\n" % h for h in headers)))
        return c.read_response(timeout)


def assert_closed_with(c, status, timeout=5.0):
    r = c.read_response(timeout)
    assert r.status == status, r
    assert r.version == "HTTP/1.1", r
    assert (r.header("connection") or "").lower() == "close", r
    c.expect_eof()
    return r


def assert_healthy(server):
    """A fresh web client and a fresh XMPP client are served correctly."""
    assert server.alive(), "tern died"
    t0 = time.monotonic()
    r = http_get(server, "/.well-known/host-meta")
    assert r.status == 200, r
    assert r.header("content-type") == "application/xrd+xml", r
    xrd = ET.fromstring(r.body)
    links = {ln.get("rel"): ln.get("href")
             for ln in xrd.iter("{http://docs.oasis-open.org/ns/xri/xrd-1.0}Link")}
    assert links.get("urn:xmpp:alt-connections:xbosh") == "http://localhost/http-bind", links
    assert links.get("urn:xmpp:alt-connections:websocket") == "ws://localhost/xmpp-websocket", links
    assert time.monotonic() - t0 < 2.0, "host-meta took %.1fs" % (time.monotonic() - t0)
    s = server_login(server, "alice@localhost/health")
    try:
        assert s.ping_server()
    finally:
        s.close()


# --------------------------------------------------------------------------
# HTTP framing and limits

@pytest.mark.parametrize("raw", [
    b"GARBAGE / HTTP/1.1\r\nHost: localhost\r\n\r\n",             # unknown method
    b"GET /\x01x HTTP/1.1\r\nHost: localhost\r\n\r\n",            # control char in target
    b"GET / HTTP/1.1\r\nHost localhost\r\n\r\n",                  # header without ':'
    b"GET / HTTP/1.1\r\nHost : localhost\r\n\r\n",               # space before ':' (§5.1 MUST)
    b"POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Length: 12x\r\n\r\n",
    # RFC 9112 §6.3: both framings at once is a smuggling attempt
    b"POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
    b"Content-Length: 6\r\n\r\nhello!",
], ids=["method", "target-ctl", "no-colon", "space-before-colon", "bad-content-length",
        "cl-and-chunked", "two-content-lengths"])
def test_malformed_request_400_and_closed(web, raw):
    """RFC 9112 §2.2, §3, §5, §6.3: 400 Bad Request, then the connection closes."""
    with Conn(web) as c:
        c.send(raw)
        r = assert_closed_with(c, 400)
        assert r.header("content-type").startswith("text/plain"), r
    assert_healthy(web)


def test_bad_http_version(web):
    """A garbled HTTP-version is answered 505 (request.c maps http-parser's
    invalid-version error to it); the HTTP/2 connection preface is not an
    HTTP/1.1 method (400); a textual 'HTTP/2.0' request line must not be
    answered as HTTP/2.0 (RFC 9110 §6.2: 505, or a response of the highest
    version the server conforms to)."""
    for raw in (b"GET / HTTP/1.x\r\nHost: localhost\r\n\r\n",
                b"GET / HTTP/12.1\r\nHost: localhost\r\n\r\n"):
        with Conn(web) as c:
            c.send(raw)
            assert_closed_with(c, 505)
    assert_healthy(web)
    with Conn(web) as c:
        c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert_closed_with(c, 400)
    with Conn(web) as c:
        c.send(b"GET /.well-known/host-meta HTTP/2.0\r\nHost: localhost\r\n\r\n")
        r = c.read_response()
        assert r.version == "HTTP/1.1", r
        assert r.status in (200, 505), r
    assert_healthy(web)


def test_header_block_over_8k_431(web):
    """Header fields over 8 KB: 431 (RFC 6585 §5), connection closed."""
    with Conn(web) as c:
        c.send("GET /.well-known/host-meta HTTP/1.1\r\nHost: localhost\r\n"
               + "".join("X-Pad-%d: %s\r\n" % (i, "a" * 1000) for i in range(9)) + "\r\n")
        assert_closed_with(c, 431)
    assert_healthy(web)


def test_url_over_2k_414(web):
    """A request target over 2 KB: 414 (RFC 9110 §15.5.15), connection closed."""
    with Conn(web) as c:
        c.send("GET /.well-known/host-meta?%s HTTP/1.1\r\nHost: localhost\r\n\r\n" % ("x" * 2100))
        assert_closed_with(c, 414)
    assert_healthy(web)


def test_content_length_over_max_body_413_without_body(web):
    """Content-Length over http_max_body is refused on the headers alone
    (RFC 9110 §15.5.14): 413 arrives although no body byte was sent."""
    with Conn(web) as c:
        c.send("POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n"
               "Content-Length: %d\r\n\r\n" % (MAX_BODY + 1))
        t0 = time.monotonic()
        assert_closed_with(c, 413, timeout=HTTP_TIMEOUT - 0.5)
        assert time.monotonic() - t0 < 1.0
    assert_healthy(web)


def test_chunked_body_over_limit_413(web):
    """A chunked body growing past http_max_body: 413, connection closed."""
    with Conn(web) as c:
        c.send("POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n"
               "Transfer-Encoding: chunked\r\n\r\n")
        chunk = "<body xmlns='%s'>" % NS_HTTPBIND + "x" * 2500
        for _ in range(2):
            c.send("%x\r\n%s\r\n" % (len(chunk), chunk))
        assert_closed_with(c, 413)
    assert_healthy(web)


def test_chunked_body_within_limit_is_accepted(web):
    """The same framing under the limit reaches BOSH (control for the 413)."""
    with Conn(web) as c:
        body = "<body xmlns='%s' rid='1' wait='5' hold='1' to='nowhere.example'/>" % NS_HTTPBIND
        c.send("POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n"
               "Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"
               % (10, body[:10], len(body) - 10, body[10:]))
        r = c.read_response()
        assert r.status == 200, r
        assert_terminate(r, "host-unknown")
    assert_healthy(web)


def test_unknown_path_404_keeps_connection(web):
    with Conn(web) as c:
        c.send("GET /no/such/thing HTTP/1.1\r\nHost: localhost\r\n\r\n")
        r = c.read_response()
        assert r.status == 404, r
        assert r.header("connection") is None, r
        # The connection is still usable.
        c.send("GET /.well-known/host-meta.json HTTP/1.1\r\nHost: localhost\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert r.header("content-type") == "application/json", r
    assert_healthy(web)


def test_get_on_bosh_path_405_with_allow(web):
    """RFC 9110 §15.5.6: 405 carries Allow."""
    with Conn(web) as c:
        c.send("GET /http-bind HTTP/1.1\r\nHost: localhost\r\n\r\n")
        r = c.read_response()
        assert r.status == 405, r
        allow = {m.strip() for m in (r.header("allow") or "").split(",")}
        assert "POST" in allow and "GET" not in allow, r
    assert_healthy(web)


def test_options_preflight_allowed_origin(web):
    with Conn(web) as c:
        c.send("OPTIONS /http-bind HTTP/1.1\r\nHost: localhost\r\nOrigin: %s\r\n"
               "Access-Control-Request-Method: POST\r\n"
               "Access-Control-Request-Headers: content-type\r\n\r\n" % GOOD_ORIGIN)
        r = c.read_response()
        assert r.status == 200, r
        assert r.header("access-control-allow-origin") == GOOD_ORIGIN, r
        assert "Origin" in (r.header("vary") or ""), r
        methods = {m.strip() for m in (r.header("access-control-allow-methods") or "").split(",")}
        assert "POST" in methods, r
        assert "content-type" in (r.header("access-control-allow-headers") or "").lower(), r
    assert_healthy(web)


def test_disallowed_origin_gets_no_cors_and_no_websocket(web):
    """cors_origins = https://good.example: another Origin gets no
    Access-Control-Allow-Origin (preflight nor BOSH), and its WebSocket
    upgrade is refused with 403 (RFC 6455 §4.2.2 item 4)."""
    with Conn(web) as c:
        c.send("OPTIONS /http-bind HTTP/1.1\r\nHost: localhost\r\nOrigin: %s\r\n"
               "Access-Control-Request-Method: POST\r\n\r\n" % EVIL_ORIGIN)
        r = c.read_response()
        assert r.header("access-control-allow-origin") is None, r
    r = bosh_post(web, "<body xmlns='%s' sid='0123' rid='5'/>" % NS_HTTPBIND, origin=EVIL_ORIGIN)
    assert r.status == 200 and r.header("access-control-allow-origin") is None, r
    with Conn(web) as c:
        c.send(ws_request(origin=EVIL_ORIGIN))
        r = assert_closed_with(c, 403)
        assert r.header("upgrade") is None and r.header("sec-websocket-accept") is None, r
    # The same upgrade from the allowed origin works.
    ws = WebSocket.connect(web, origin=GOOD_ORIGIN)
    ws.close()
    assert_healthy(web)


# --------------------------------------------------------------------------
# BOSH

def bosh_post(server, body, origin=None, conn=None, timeout=5.0):
    own = conn is None
    c = conn or Conn(server)
    try:
        c.send("POST /http-bind HTTP/1.1\r\nHost: localhost\r\n"
               "Content-Type: text/xml; charset=utf-8\r\n%sContent-Length: %d\r\n\r\n"
               % ("Origin: %s\r\n" % origin if origin else "", len(body.encode())) + body)
        return c.read_response(timeout)
    finally:
        if own:
            c.close()


def bosh_send(server, body):
    """Sends a BOSH request without waiting for its answer."""
    c = Conn(server, timeout=15)
    c.send("POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n"
           "Content-Length: %d\r\n\r\n" % len(body.encode()) + body)
    return c


def parse_body(r):
    assert r.header("content-type").startswith("text/xml"), r
    el = ET.fromstring(r.body)
    assert el.tag == q(NS_HTTPBIND, "body"), r
    return el


def assert_terminate(r, condition):
    el = parse_body(r)
    assert el.get("type") == "terminate", r
    assert el.get("condition") == condition, r
    return el


def body_xml(sid=None, rid=None, payload="", **attrs):
    a = {"xmlns": NS_HTTPBIND}
    if sid is not None:
        a["sid"] = sid
    if rid is not None:
        a["rid"] = str(rid)
    a.update(attrs)
    s = "<body" + "".join(" %s='%s'" % (k.replace("__", ":"), v) for k, v in a.items())
    return s + (">%s</body>" % payload if payload else "/>")


def bosh_create(server, hold=1, wait=10):
    rid = int.from_bytes(os.urandom(4), "big") + 1000
    r = bosh_post(server, body_xml(rid=rid, to="localhost", hold=hold, wait=wait, ver="1.11",
                                   **{"xmlns:xmpp": NS_XBOSH, "xmpp__version": "1.0"}))
    assert r.status == 200, r
    el = parse_body(r)
    assert el.get("type") is None, r
    sid = el.get("sid")
    assert sid and len(sid) >= 16, r
    assert el.find(q(NS_STREAMS, "features")) is not None, r
    return sid, rid, el, r


def test_bosh_body_not_xml_400(web):
    """XEP-0124 §17.1: HTTP 400 with a bad-request terminate body."""
    r = bosh_post(web, "this is not <xml")
    assert r.status == 400, r
    assert_terminate(r, "bad-request")
    r = bosh_post(web, "<notbody xmlns='%s' rid='1'/>" % NS_HTTPBIND)
    assert r.status == 400, r
    assert_terminate(r, "bad-request")
    assert_healthy(web)


def test_bosh_unknown_sid_item_not_found(web):
    """XEP-0124 §17.2: an unknown sid is item-not-found (HTTP 200)."""
    r = bosh_post(web, body_xml(sid="deadbeef" * 4, rid=100))
    assert r.status == 200, r
    assert_terminate(r, "item-not-found")
    assert_healthy(web)


@pytest.mark.parametrize("to,condition", [(None, "improper-addressing"),
                                          ("nowhere.example", "host-unknown")])
def test_bosh_create_bad_to(web, to, condition):
    """XEP-0124 §17.2: session creation without 'to' or for a host not served."""
    attrs = {"hold": "1", "wait": "10"}
    if to:
        attrs["to"] = to
    r = bosh_post(web, body_xml(rid=4242, **attrs))
    assert r.status == 200, r
    el = assert_terminate(r, condition)
    assert el.get("sid") is None, r
    assert_healthy(web)


def test_bosh_rid_outside_window_terminates(web):
    """XEP-0124 §14.2: a rid beyond the window ends the session with
    item-not-found, and the sid is dead afterwards."""
    sid, rid, el, _ = bosh_create(web)
    requests = int(el.get("requests"))
    r = bosh_post(web, body_xml(sid=sid, rid=rid + 1 + requests))
    assert r.status == 200, r
    assert_terminate(r, "item-not-found")
    r = bosh_post(web, body_xml(sid=sid, rid=rid + 1))
    assert_terminate(r, "item-not-found")
    assert_healthy(web)


def test_bosh_retransmission_gets_identical_response(web):
    """XEP-0124 §14.3: a repeated rid gets the very same response again, and
    the session goes on (SASL, restart, bind)."""
    sid, rid, _, created = bosh_create(web)
    again = bosh_post(web, body_xml(sid=sid, rid=rid))
    assert again.status == 200 and again.body == created.body, (created, again)

    auth = base64.b64encode(b"\0alice\0alice-secret").decode()
    payload = "<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (NS_SASL, auth)
    r1 = bosh_post(web, body_xml(sid=sid, rid=rid + 1, payload=payload))
    assert parse_body(r1).find(q(NS_SASL, "success")) is not None, r1
    r1b = bosh_post(web, body_xml(sid=sid, rid=rid + 1, payload=payload))
    assert r1b.status == 200 and r1b.body == r1.body, (r1, r1b)

    r2 = bosh_post(web, body_xml(sid=sid, rid=rid + 2, to="localhost",
                                 **{"xmlns:xmpp": NS_XBOSH, "xmpp__restart": "true"}))
    feats = parse_body(r2).find(q(NS_STREAMS, "features"))
    assert feats is not None and feats.find(q(NS_BIND, "bind")) is not None, r2
    r3 = bosh_post(web, body_xml(sid=sid, rid=rid + 3, payload=(
        "<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='%s'>"
        "<resource>bosh</resource></bind></iq>" % NS_BIND)))
    iq = parse_body(r3).find("{jabber:client}iq")
    assert iq is not None and iq.get("type") == "result", r3
    assert iq.findtext(".//" + q(NS_BIND, "jid")) == "alice@localhost/bosh", r3
    r4 = bosh_post(web, body_xml(sid=sid, rid=rid + 4, type="terminate"))
    assert parse_body(r4).get("type") == "terminate", r4
    assert_healthy(web)


def test_bosh_pause_over_maxpause_policy_violation(web):
    """XEP-0124 §10: a 'pause' above maxpause is a policy-violation."""
    sid, rid, el, _ = bosh_create(web)
    maxpause = int(el.get("maxpause"))
    r = bosh_post(web, body_xml(sid=sid, rid=rid + 1, pause=maxpause + 1))
    assert r.status == 200, r
    assert_terminate(r, "policy-violation")
    r = bosh_post(web, body_xml(sid=sid, rid=rid + 2))
    assert_terminate(r, "item-not-found")
    assert_healthy(web)


def test_bosh_requests_in_order_answer_the_oldest(web):
    """rid+1, rid+2, rid+3 sent without waiting with requests='2' and
    hold='1': the server holds at most `hold` requests and answers the
    oldest at once when a new one arrives (XEP-0124 §11: not overactive,
    since it has responded), so rid+1 and rid+2 come back empty and not
    terminal, and rid+3 waits."""
    sid, rid, el, _ = bosh_create(web, hold=1, wait=5)
    assert el.get("requests") == "2" and el.get("hold") == "1", el.attrib
    conns = []
    try:
        for i in (1, 2, 3):
            conns.append(bosh_send(web, body_xml(sid=sid, rid=rid + i)))
            time.sleep(0.2)  # in order, also when workers forward
        for c in conns[:2]:
            r = c.read_response(timeout=2)
            b = parse_body(r)
            assert r.status == 200 and b.get("type") is None and len(b) == 0, r
        with pytest.raises(socket.timeout):
            conns[2].read_response(timeout=0.5)
        r = bosh_post(web, body_xml(sid=sid, rid=rid + 4, type="terminate"))
        assert parse_body(r).get("type") == "terminate", r
        r = conns[2].read_response(timeout=3)
        assert r.status == 200, r
    finally:
        for c in conns:
            c.close()
    assert_healthy(web)


def test_bosh_too_many_simultaneous_requests(web):
    """XEP-0124 §11: more simultaneous requests than 'requests' (hold='2',
    requests='3': two held, one early, then another) is a policy-violation;
    the held requests are answered with it too."""
    sid, rid, el, _ = bosh_create(web, hold=2, wait=10)
    assert el.get("hold") == "2" and el.get("requests") == "3", el.attrib
    conns = []
    try:
        for i in (1, 2, 4):  # rid+1, rid+2 held; rid+4 waits for rid+3
            conns.append(bosh_send(web, body_xml(sid=sid, rid=rid + i)))
            time.sleep(0.2)
        for c in conns:
            with pytest.raises(socket.timeout):
                c.read_response(timeout=0.05)
        r = bosh_post(web, body_xml(sid=sid, rid=rid + 5))
        assert r.status == 200, r
        assert_terminate(r, "policy-violation")
        for c in conns[:2]:
            assert_terminate(c.read_response(timeout=3), "policy-violation")
        r = conns[2].read_response(timeout=3)
        assert parse_body(r).get("type") == "terminate", r
    finally:
        for c in conns:
            c.close()
    r = bosh_post(web, body_xml(sid=sid, rid=rid + 3))
    assert_terminate(r, "item-not-found")
    assert_healthy(web)


# --------------------------------------------------------------------------
# WebSocket

def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def ws_request(key=None, version="13", protocol="xmpp", origin=None, path="/xmpp-websocket"):
    h = ["GET %s HTTP/1.1" % path, "Host: localhost", "Upgrade: websocket",
         "Connection: Upgrade", "Sec-WebSocket-Key: %s" % (key or ws_key())]
    if version is not None:
        h.append("Sec-WebSocket-Version: %s" % version)
    if protocol is not None:
        h.append("Sec-WebSocket-Protocol: %s" % protocol)
    if origin:
        h.append("Origin: %s" % origin)
    return "\r\n".join(h) + "\r\n\r\n"


def frame(opcode, payload, fin=True, mask=True):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, m | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


class WebSocket:
    """A minimal RFC 6455 client over Conn."""

    def __init__(self, conn):
        self.c = conn

    @classmethod
    def connect(cls, server, origin=None):
        c = Conn(server)
        key = ws_key()
        c.send(ws_request(key=key, origin=origin))
        r = c.read_response(head=True)
        assert r.status == 101, r
        assert (r.header("upgrade") or "").lower() == "websocket", r
        assert r.header("sec-websocket-protocol") == "xmpp", r
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        assert r.header("sec-websocket-accept") == accept, r
        return cls(c)

    def close(self):
        self.c.close()

    def send(self, opcode, payload, **kw):
        self.c.send(frame(opcode, payload, **kw))

    def send_text(self, text):
        self.send(1, text)

    def recv_frame(self, timeout=5.0):
        b0, b1 = self.c.read_exact(2, timeout)
        assert not b1 & 0x80, "server frames must not be masked (RFC 6455 §5.1)"
        assert not b0 & 0x70, "reserved bits set"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.c.read_exact(2, timeout))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.c.read_exact(8, timeout))[0]
        return bool(b0 & 0x80), b0 & 0x0F, self.c.read_exact(n, timeout)

    def recv_message(self, timeout=5.0):
        """(opcode, payload) of the next message; text is checked to be one
        XML element with its namespaces declared (RFC 7395 §3.3.3)."""
        fin, op, data = self.recv_frame(timeout)
        while not fin:
            fin, cont, more = self.recv_frame(timeout)
            assert cont == 0, "interleaved frame %d in a fragmented message" % cont
            data += more
        if op == 1:
            return op, ET.fromstring(data.decode("utf-8"))
        return op, data

    def expect_close(self, code, timeout=5.0):
        op, data = self.recv_message(timeout)
        assert op == 8, "expected a close frame, got opcode %d: %r" % (op, data)
        assert len(data) >= 2, "close frame without a status code"
        got = struct.unpack("!H", data[:2])[0]
        assert got == code, "close code %d, expected %d (%r)" % (got, code, data)

    def open_stream(self):
        self.send_text("<open xmlns='%s' to='localhost' version='1.0'/>" % NS_FRAMING)
        op, el = self.recv_message()
        assert op == 1 and el.tag == q(NS_FRAMING, "open"), el
        assert el.get("from") == "localhost" and el.get("id"), el.attrib
        op, el = self.recv_message()
        assert op == 1 and el.tag == q(NS_STREAMS, "features"), el
        return el


@pytest.mark.parametrize("kw,status,header", [
    ({"protocol": None}, 400, None),
    ({"protocol": "chat, mqtt"}, 400, None),
    ({"version": "8"}, 426, ("sec-websocket-version", "13")),
    ({"key": "short"}, 400, None),
    ({"key": base64.b64encode(os.urandom(12)).decode()}, 400, None),  # decodes to 12 bytes
    ({"key": "!!!!!!!!!!!!!!!!!!!!!!=="}, 400, None),
], ids=["no-protocol", "other-protocols", "version-8", "short-key", "12-byte-key",
        "not-base64-key"])
def test_websocket_bad_handshake(web, kw, status, header):
    """RFC 7395 §3.2 (xmpp subprotocol), RFC 6455 §4.2.1/§4.2.2/§4.4."""
    with Conn(web) as c:
        c.send(ws_request(**kw))
        r = assert_closed_with(c, status)
        assert r.header("sec-websocket-accept") is None, r
        if header:
            assert r.header(header[0]) == header[1], r
    assert_healthy(web)


def test_websocket_handshake_split_across_segments(web):
    """A handshake whose header field name is split between two TCP
    segments is the same request (RFC 9112 §2.2: a message is a byte
    stream): 101."""
    key = ws_key()
    raw = ws_request(key=key).encode()
    cut = raw.index(b"Sec-WebSocket-Key") + len(b"Sec-WebSocket-")
    with Conn(web) as c:
        c.send(raw[:cut])
        time.sleep(0.3)
        c.send(raw[cut:])
        r = c.read_response(head=True)
        assert r.status == 101, r
    assert_healthy(web)


def test_websocket_unmasked_frame_1002(web):
    """RFC 6455 §5.1: a client frame without a mask fails the connection
    with 1002; the frame's content is not processed."""
    ws = WebSocket.connect(web)
    try:
        ws.send(1, "<open xmlns='%s' to='localhost' version='1.0'/>" % NS_FRAMING, mask=False)
        ws.expect_close(1002)
        ws.c.expect_eof()
    finally:
        ws.close()
    assert_healthy(web)


def test_websocket_binary_frame_1003(web):
    """RFC 7395 §3.3.1 / RFC 6455 §7.4.1: binary data is refused with 1003."""
    ws = WebSocket.connect(web)
    try:
        ws.open_stream()
        ws.send(2, b"\x00\x01\x02binary")
        ws.expect_close(1003)
        ws.send(8, struct.pack("!H", 1000))
        ws.c.expect_eof()
    finally:
        ws.close()
    assert_healthy(web)


def test_websocket_message_too_big_1009(web):
    """A message over max_stanza_size + 1024 is refused with 1009 (RFC 6455
    §7.4.1), also when it arrives in fragments that are each small."""
    for fragmented in (False, True):
        ws = WebSocket.connect(web)
        try:
            ws.open_stream()
            text = "<message xmlns='jabber:client' to='alice@localhost'><body>%s</body></message>"
            big = text % ("x" * (WS_MAX_MESSAGE + 1 - len(text % "")))
            assert len(big) == WS_MAX_MESSAGE + 1
            if fragmented:
                half = len(big) // 2
                ws.c.send(frame(1, big[:half], fin=False) + frame(0, big[half:]))
            else:
                ws.send_text(big)
            ws.expect_close(1009)
            try:
                ws.send(8, struct.pack("!H", 1009))
            except OSError:
                pass
            ws.c.expect_eof()
        finally:
            ws.close()
    assert_healthy(web)


def show(el):
    return ET.tostring(el) if isinstance(el, ET.Element) else el


def test_websocket_not_xml_stream_error(web):
    """RFC 7395 §3.6.1: a stream error travels as its own message, followed
    by <close/>, then the WebSocket close handshake (1000)."""
    ws = WebSocket.connect(web)
    try:
        ws.open_stream()
        ws.send_text("<<this is not xml>>")
        op, el = ws.recv_message()
        assert op == 1 and el.tag == q(NS_STREAMS, "error"), (op, show(el))
        assert el.find(q(NS_STREAM_ERRORS, "not-well-formed")) is not None, show(el)
        op, el = ws.recv_message()
        assert op == 1 and el.tag == q(NS_FRAMING, "close"), (op, show(el))
        ws.expect_close(1000)
        ws.send(8, struct.pack("!H", 1000))
        ws.c.expect_eof()
    finally:
        ws.close()
    assert_healthy(web)


# --------------------------------------------------------------------------
# slow and idle clients

def test_slowloris_gets_408_while_others_are_served(web):
    """A request trickling in slower than http_timeout is answered 408
    (RFC 9110 §15.5.9) and closed within a few seconds; meanwhile a normal
    client is answered at once."""
    raw = b"GET /.well-known/host-meta HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"z" * 200
    with Conn(web) as slow:
        t0 = time.monotonic()
        sent, checked = 0, False
        slow.sock.settimeout(0.25)  # also paces the trickle: a byte per 0.25 s
        while b"\r\n\r\n" not in slow.buf:
            assert time.monotonic() - t0 < 8, "no answer to the slow request"
            assert sent < len(raw), "the whole request went out: too fast to test"
            try:
                slow.send(raw[sent:sent + 1])
                sent += 1
            except OSError:
                pass  # closed by the server: its answer is read below
            try:
                d = slow.sock.recv(65536)
            except socket.timeout:
                d = None
            except ConnectionResetError:
                d = b""
            if d == b"":
                break
            slow.buf += d or b""
            if not checked and time.monotonic() - t0 > 1.0:
                t1 = time.monotonic()
                r = http_get(web, "/.well-known/host-meta")
                assert r.status == 200, r
                took = time.monotonic() - t1
                assert took < 0.5, "normal client waited %.2fs" % took
                checked = True
        elapsed = time.monotonic() - t0
        assert checked
        r = slow.read_response(timeout=1)
        assert r.status == 408, r
        assert (r.header("connection") or "").lower() == "close", r
        assert HTTP_TIMEOUT - 0.2 <= elapsed <= HTTP_TIMEOUT + 3, elapsed
        slow.expect_eof()
    assert_healthy(web)


def test_many_half_open_connections_do_not_block(web):
    """50 idle or half-sent connections do not keep a new client waiting."""
    idle = []
    try:
        for i in range(50):
            c = Conn(web)
            if i % 2:
                c.send(b"GET /.well-known/host-me")
            idle.append(c)
        t0 = time.monotonic()
        r = http_get(web, "/.well-known/host-meta")
        assert r.status == 200, r
        assert time.monotonic() - t0 < 1.0
        ws = WebSocket.connect(web)
        ws.open_stream()
        ws.close()
        assert_healthy(web)
        # Idle ones are closed after http_timeout, the half-sent ones answered 408.
        for i, c in enumerate(idle):
            if i % 2:
                r = c.read_response(timeout=HTTP_TIMEOUT + 4)
                assert r.status == 408, r
            c.expect_eof(timeout=HTTP_TIMEOUT + 4)
    finally:
        for c in idle:
            c.close()
    assert_healthy(web)
