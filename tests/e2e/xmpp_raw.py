"""Raw-socket XMPP client for protocol-level and hostile end-to-end tests.

Blocking sockets, standard library only (plus `cryptography`, if present, to
read a certificate's signature hash for tls-server-end-point). Everything the
server sends is parsed incrementally with expat; top-level elements (stanzas,
features, SASL/TLS nonzas, stream errors) are queued as ElementTree elements
whose tags are in Clark notation ("{namespace}local").

Typical use:

    s = RawStream.connect(host, port)          # TCP (STARTTLS port)
    feats = s.open_stream("localhost")          # sends header, returns <features/>
    s.starttls()                                # proceed + TLS + restart
    ok, cond = s.sasl_plain("alice", "secret")
    s.restart()
    jid = s.bind("res")

or simply `RawStream.login(host, port, "alice", "localhost", "secret")`.
"""

import base64
import hashlib
import hmac
import os
import re
import secrets
import select
import socket
import ssl
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
import xml.parsers.expat
from collections import deque

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_CLIENT = "jabber:client"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_SASL_CB = "urn:xmpp:sasl-cb:0"
NS_LIMITS = "urn:xmpp:stream-limits:0"
NS_REGISTER = "jabber:iq:register"
NS_REGISTER_FEATURE = "http://jabber.org/features/iq-register"
NS_XML = "http://www.w3.org/XML/1998/namespace"

DEFAULT_TIMEOUT = 15.0


def q(ns, local):
    """Clark-notation tag."""
    return "{%s}%s" % (ns, local)


def xml_escape(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))


def stream_header(to="localhost", version="1.0", lang="en", xmlns=NS_CLIENT,
                  stream_ns=NS_STREAMS, xml_decl=True, extra=""):
    parts = ["<stream:stream"]
    if xmlns is not None:
        parts.append(" xmlns='%s'" % xmlns)
    if stream_ns is not None:
        parts.append(" xmlns:stream='%s'" % stream_ns)
    if to is not None:
        parts.append(" to='%s'" % to)
    if version is not None:
        parts.append(" version='%s'" % version)
    if lang is not None:
        parts.append(" xml:lang='%s'" % lang)
    if extra:
        parts.append(" " + extra)
    parts.append(">")
    decl = "<?xml version='1.0'?>" if xml_decl else ""
    return decl + "".join(parts)


class StreamClosed(Exception):
    """The server closed the stream or the connection without a stream error."""


class StreamErrorReceived(Exception):
    def __init__(self, condition, text, element):
        super().__init__("stream error <%s/>%s" % (condition, (": " + text) if text else ""))
        self.condition = condition
        self.text = text
        self.element = element


class ServerXmlError(AssertionError):
    """What the server sent is not well-formed XML."""


def stream_error_condition(el):
    cond, text = None, None
    for child in el:
        if child.tag.startswith("{%s}" % NS_STREAM_ERRORS):
            local = child.tag.split("}", 1)[1]
            if local == "text":
                text = child.text
            elif cond is None:
                cond = local
    return cond, text


def stanza_error(el):
    """(type, condition) of a stanza of type='error', or (None, None)."""
    err = el.find(q(NS_CLIENT, "error"))
    if err is None:
        return None, None
    cond = None
    for child in err:
        if child.tag.startswith("{%s}" % NS_STANZAS) and not child.tag.endswith("}text"):
            cond = child.tag.split("}", 1)[1]
            break
    return err.get("type"), cond


class _Reader:
    """Incremental parser for the server-to-client stream."""

    def __init__(self):
        self.reset()

    def reset(self):
        p = xml.parsers.expat.ParserCreate(namespace_separator=" ")
        # Debian's expat has the 2.6 reparse deferral backported: without
        # this, a large start tag can sit unparsed until more bytes arrive.
        if hasattr(p, "SetReparseDeferralEnabled"):
            p.SetReparseDeferralEnabled(False)
        p.buffer_text = True
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._chars
        self.parser = p
        self.pending = b""
        self.header = None          # (tag, attrs) of the server's <stream:stream>
        self.stack = []
        self.elements = deque()     # complete top-level elements
        self.stream_closed = False  # </stream:stream> seen

    @staticmethod
    def _name(n):
        if " " in n:
            ns, local = n.split(" ", 1)
            return "{%s}%s" % (ns, local)
        return n

    def _start(self, name, attrs):
        tag = self._name(name)
        attrs = {self._name(k): v for k, v in attrs.items()}
        if self.header is None and not self.stack:
            self.header = (tag, attrs)
            return
        if not self.stack:
            el = ET.Element(tag, attrs)
        else:
            el = ET.SubElement(self.stack[-1], tag, attrs)
        self.stack.append(el)

    def _end(self, name):
        if not self.stack:
            self.stream_closed = True
            return
        el = self.stack.pop()
        if not self.stack:
            self.elements.append(el)

    def _chars(self, data):
        if not self.stack:
            return  # whitespace between stanzas
        el = self.stack[-1]
        if len(el):
            last = el[-1]
            last.tail = (last.tail or "") + data
        else:
            el.text = (el.text or "") + data

    def feed(self, data):
        # Python's expat on Debian 12 has reparse deferral on and no way to
        # turn it off: a start tag split over two reads may then wait for
        # bytes that never come. Feeding only up to the last '>' keeps every
        # Parse call on a tag boundary (the server escapes '>' in values).
        self.pending = getattr(self, "pending", b"") + data
        cut = self.pending.rfind(b">") + 1
        if cut == 0:
            return
        data, self.pending = self.pending[:cut], self.pending[cut:]
        try:
            self.parser.Parse(data, False)
        except xml.parsers.expat.ExpatError as e:
            raise ServerXmlError("server sent malformed XML: %s" % e) from None


class RawStream:
    def __init__(self, sock, host, port, direct_tls=False, server_name="localhost"):
        self.sock = sock
        self.host = host
        self.port = port
        self.server_name = server_name
        self.reader = _Reader()
        self.pending = deque()      # parsed elements not yet consumed
        self.eof = False
        self.tls = False
        self.keylog = None
        self.received = bytearray()  # raw log of everything received (debugging)
        self.features = None
        self.jid = None
        self.direct_tls = direct_tls
        self._ids = 0

    # ------------------------------------------------------------ connect
    @classmethod
    def connect(cls, host, port, direct_tls=False, server_name="localhost",
                timeout=DEFAULT_TIMEOUT, tls_max=None, alpn=("xmpp-client",), rcvbuf=None,
                source=None):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source:
            sock.bind((source, 0))  # another loopback address, e.g. 127.0.0.2
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((host, port))
        s = cls(sock, host, port, direct_tls=direct_tls, server_name=server_name)
        if direct_tls:
            s._wrap_tls(tls_max=tls_max, alpn=alpn)
        return s

    def _tls_context(self, tls_max=None, alpn=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if tls_max is not None:
            ctx.maximum_version = tls_max
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        # The key log gives us the TLS 1.3 exporter secret, from which the
        # RFC 9266 tls-exporter channel binding is derived (Python's ssl
        # module has no export_keying_material).
        fd, path = tempfile.mkstemp(prefix="tern-keylog-")
        os.close(fd)
        self.keylog = path
        ctx.keylog_filename = path
        return ctx

    def _wrap_tls(self, tls_max=None, alpn=None):
        ctx = self._tls_context(tls_max=tls_max, alpn=alpn)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.server_name)
        self.tls = True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        if self.keylog:
            try:
                os.unlink(self.keylog)
            except OSError:
                pass
            self.keylog = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------- I/O
    send_timeout = 30.0

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.settimeout(self.send_timeout)  # reads leave short timeouts behind
        self.sock.sendall(data)

    def send_chunked(self, data, chunk=16384):
        """Sends data in pieces; stops quietly if the server closes on us."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        sent = 0
        self.sock.settimeout(self.send_timeout)
        try:
            for i in range(0, len(data), chunk):
                self.sock.sendall(data[i:i + chunk])
                sent += len(data[i:i + chunk])
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass
        return sent

    def _recv(self, timeout):
        """Reads once; returns False on timeout. Sets self.eof on close."""
        if self.eof:
            return False
        if not (self.tls and self.sock.pending()):
            r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
            if not r:
                return False
        try:
            self.sock.settimeout(max(0.05, timeout))
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return False
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError, BrokenPipeError):
            self.eof = True
            return True
        except ssl.SSLError:
            self.eof = True
            return True
        if not data:
            self.eof = True
            return True
        self.received += data
        self.reader.feed(data)
        while self.reader.elements:
            self.pending.append(self.reader.elements.popleft())
        return True

    def pump(self, timeout=0.0):
        """Reads whatever arrives within timeout (at least one attempt)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self._recv(max(0.0, deadline - time.monotonic()))
            if self.eof or (not got and time.monotonic() >= deadline):
                return
            if got and time.monotonic() >= deadline:
                # drain what is immediately available
                while self._recv(0.0) and not self.eof:
                    pass
                return

    def wait_header(self, timeout=DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while self.reader.header is None:
            if self.eof:
                raise StreamClosed("connection closed before the stream header")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no stream header from server")
            self._recv(remaining)
        return self.reader.header

    def next(self, timeout=DEFAULT_TIMEOUT, raise_errors=True):
        """Next top-level element. Raises StreamErrorReceived for a stream
        error (if raise_errors), StreamClosed on close, TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            if self.pending:
                el = self.pending.popleft()
                if raise_errors and el.tag == q(NS_STREAMS, "error"):
                    cond, text = stream_error_condition(el)
                    raise StreamErrorReceived(cond, text, el)
                return el
            if self.eof or self.reader.stream_closed:
                raise StreamClosed("stream closed by server")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("nothing received within %.1fs" % timeout)
            self._recv(remaining)

    def expect(self, pred, timeout=DEFAULT_TIMEOUT, what="matching element"):
        """First element (in arrival order) satisfying pred; others are kept
        queued for later calls."""
        deadline = time.monotonic() + timeout
        scanned = 0
        while True:
            for i in range(scanned, len(self.pending)):
                el = self.pending[i]
                if el.tag == q(NS_STREAMS, "error"):
                    cond, text = stream_error_condition(el)
                    raise StreamErrorReceived(cond, text, el)
                if pred(el):
                    del self.pending[i]
                    return el
            scanned = len(self.pending)
            if self.eof or self.reader.stream_closed:
                raise StreamClosed("stream closed while waiting for %s" % what)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no %s within %.1fs" % (what, timeout))
            self._recv(remaining)

    def expect_stream_error(self, timeout=DEFAULT_TIMEOUT, close_timeout=5.0):
        """Reads until a stream error arrives; returns its condition. Asserts
        that the server then closes the stream and the connection (RFC 6120
        4.9.1.1)."""
        deadline = time.monotonic() + timeout
        while True:
            while self.pending:
                el = self.pending.popleft()
                if el.tag == q(NS_STREAMS, "error"):
                    cond, _ = stream_error_condition(el)
                    assert self.wait_closed(close_timeout), \
                        "server sent <%s/> but did not close the connection" % cond
                    return cond
            if self.eof or self.reader.stream_closed:
                raise StreamClosed("stream closed without a stream error; received: %r"
                                   % bytes(self.received[-500:]))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no stream error within %.1fs; received: %r"
                                   % (timeout, bytes(self.received[-500:])))
            self._recv(remaining)

    def wait_closed(self, timeout=5.0):
        """True once the TCP connection is closed by the server (all pending
        data is read and discarded-into-queue)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                self._recv(remaining)
            except ServerXmlError:
                pass
        return True

    def next_id(self):
        self._ids += 1
        return "t%d-%s" % (self._ids, uuid.uuid4().hex[:6])

    # ----------------------------------------------------------- stream
    def open_stream(self, to=None, timeout=DEFAULT_TIMEOUT, **kw):
        """Sends a stream header (resetting the parser) and returns the
        server's <stream:features/>."""
        to = self.server_name if to is None else to
        self.reader.reset()
        self.pending.clear()
        self.send(stream_header(to=to, **kw))
        self.wait_header(timeout)
        self.features = self.expect(lambda e: e.tag == q(NS_STREAMS, "features"),
                                    timeout, "stream features")
        return self.features

    restart = open_stream

    def header_attrs(self):
        return self.reader.header[1] if self.reader.header else None

    def close_stream(self):
        self.send("</stream:stream>")

    def starttls(self, tls_max=None, timeout=DEFAULT_TIMEOUT):
        assert self.features is not None and self.features.find(q(NS_TLS, "starttls")) is not None, \
            "server did not offer STARTTLS"
        self.send("<starttls xmlns='%s'/>" % NS_TLS)
        el = self.next(timeout)
        assert el.tag == q(NS_TLS, "proceed"), "expected <proceed/>, got %s" % el.tag
        assert not self.reader.stack and not self.pending
        self.sock.settimeout(timeout)
        self._wrap_tls(tls_max=tls_max)
        return self.open_stream()

    def mechanisms(self):
        m = self.features.find(q(NS_SASL, "mechanisms")) if self.features is not None else None
        if m is None:
            return []
        return [x.text.strip() for x in m.findall(q(NS_SASL, "mechanism")) if x.text]

    def cb_types(self):
        """XEP-0440 channel-binding types advertised in the features."""
        el = self.features.find(q(NS_SASL_CB, "sasl-channel-binding")) \
            if self.features is not None else None
        if el is None:
            return None
        return [c.get("type") for c in el.findall(q(NS_SASL_CB, "channel-binding"))]

    # ------------------------------------------------------------ SASL
    def _sasl_result(self, timeout):
        el = self.next(timeout)
        if el.tag == q(NS_SASL, "success"):
            return el
        if el.tag == q(NS_SASL, "failure"):
            return el
        if el.tag == q(NS_SASL, "challenge"):
            return el
        raise AssertionError("unexpected element during SASL: %s" % ET.tostring(el))

    @staticmethod
    def failure_condition(el):
        for c in el:
            if c.tag.startswith("{%s}" % NS_SASL) and not c.tag.endswith("}text"):
                return c.tag.split("}", 1)[1]
        return None

    def sasl_auth_raw(self, mech, initial=None):
        if initial is None:
            self.send("<auth xmlns='%s' mechanism='%s'/>" % (NS_SASL, mech))
        else:
            payload = base64.b64encode(initial).decode() if initial else "="
            self.send("<auth xmlns='%s' mechanism='%s'>%s</auth>" % (NS_SASL, mech, payload))

    def sasl_plain(self, user, password, authzid="", timeout=DEFAULT_TIMEOUT):
        """Returns (True, None) on success, (False, condition) on failure."""
        msg = ("%s\0%s\0%s" % (authzid, user, password)).encode("utf-8")
        self.sasl_auth_raw("PLAIN", msg)
        el = self._sasl_result(timeout)
        if el.tag == q(NS_SASL, "success"):
            return True, None
        if el.tag == q(NS_SASL, "failure"):
            return False, self.failure_condition(el)
        raise AssertionError("PLAIN: unexpected challenge")

    def sasl_scram(self, user, password, mech="SCRAM-SHA-256", cb_type=None, cb_data=None,
                   gs2_flag=None, timeout=DEFAULT_TIMEOUT, tamper_proof=False):
        """SCRAM client (RFC 5802/7677, channel binding RFC 5929/9266).
        gs2_flag overrides the channel binding flag ('n', 'y', 'p=TYPE').
        Returns (True, None) on success (after checking the server
        signature), (False, condition) on failure."""
        hname = mech[len("SCRAM-"):].replace("-PLUS", "").replace("-", "").lower()
        hfunc = getattr(hashlib, hname)
        if gs2_flag is None:
            if mech.endswith("-PLUS"):
                gs2_flag = "p=" + cb_type
            else:
                gs2_flag = "n"
        gs2_header = (gs2_flag + ",,").encode()
        cnonce = base64.b64encode(secrets.token_bytes(18)).decode()
        uname = user.replace("=", "=3D").replace(",", "=2C")
        client_first_bare = "n=%s,r=%s" % (uname, cnonce)
        self.sasl_auth_raw(mech, gs2_header + client_first_bare.encode("utf-8"))
        el = self._sasl_result(timeout)
        if el.tag == q(NS_SASL, "failure"):
            return False, self.failure_condition(el)
        assert el.tag == q(NS_SASL, "challenge"), "SCRAM: expected challenge"
        server_first = base64.b64decode(el.text or "").decode("utf-8")
        self.last_server_first = server_first
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert "m" not in attrs, "server sent reserved m= attribute"
        nonce = attrs["r"]
        assert nonce.startswith(cnonce) and len(nonce) > len(cnonce), "bad server nonce"
        salt = base64.b64decode(attrs["s"])
        iterations = int(attrs["i"])
        assert iterations >= 4096, "iteration count below RFC 7677 minimum: %d" % iterations
        cbind_input = gs2_header + (cb_data if gs2_flag.startswith("p=") else b"")
        without_proof = "c=%s,r=%s" % (base64.b64encode(cbind_input).decode(), nonce)
        salted = hashlib.pbkdf2_hmac(hname, password.encode("utf-8"), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hfunc).digest()
        stored_key = hfunc(client_key).digest()
        auth_message = ",".join([client_first_bare, server_first, without_proof]).encode("utf-8")
        client_sig = hmac.new(stored_key, auth_message, hfunc).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, client_sig))
        if tamper_proof:
            proof = bytes([proof[0] ^ 1]) + proof[1:]
        server_key = hmac.new(salted, b"Server Key", hfunc).digest()
        server_sig = hmac.new(server_key, auth_message, hfunc).digest()
        final = "%s,p=%s" % (without_proof, base64.b64encode(proof).decode())
        self.send("<response xmlns='%s'>%s</response>"
                  % (NS_SASL, base64.b64encode(final.encode()).decode()))
        el = self._sasl_result(timeout)
        if el.tag == q(NS_SASL, "failure"):
            return False, self.failure_condition(el)
        if el.tag == q(NS_SASL, "challenge"):
            # RFC 6120 6.4.6 allows the server-final-message as a challenge
            # followed by an empty success.
            server_final = base64.b64decode(el.text or "").decode()
            self.send("<response xmlns='%s'/>" % NS_SASL)
            el = self._sasl_result(timeout)
            if el.tag == q(NS_SASL, "failure"):
                return False, self.failure_condition(el)
        else:
            server_final = base64.b64decode(el.text or "").decode() if el.text else ""
        assert el.tag == q(NS_SASL, "success")
        fattrs = dict(kv.split("=", 1) for kv in server_final.split(",") if "=" in kv)
        assert "v" in fattrs, "SCRAM success without server signature: %r" % server_final
        assert base64.b64decode(fattrs["v"]) == server_sig, "server signature mismatch"
        return True, None

    # ------------------------------------------------- channel binding
    def tls_version(self):
        return self.sock.version() if self.tls else None

    def cb_tls_exporter(self):
        """RFC 9266 tls-exporter: TLS-Exporter("EXPORTER-Channel-Binding",
        empty context, 32), derived from the key-logged exporter secret
        (RFC 8446 7.5)."""
        assert self.tls and self.sock.version() == "TLSv1.3", "tls-exporter needs TLS 1.3"
        with open(self.keylog) as f:
            lines = [ln.split() for ln in f if ln.startswith("EXPORTER_SECRET ")]
        assert len(lines) == 1, "expected one EXPORTER_SECRET in the key log, got %d" % len(lines)
        secret = bytes.fromhex(lines[-1][2])
        cipher = self.sock.cipher()[0]
        hname = "sha384" if cipher.endswith("SHA384") else "sha256"
        return tls13_exporter(hname, secret, b"EXPORTER-Channel-Binding", b"", 32)

    def cb_tls_server_end_point(self):
        """RFC 5929 tls-server-end-point: hash of the server certificate with
        its signature hash (SHA-256 when that is MD5 or SHA-1)."""
        der = self.sock.getpeercert(binary_form=True)
        return cert_end_point_hash(der)

    # ------------------------------------------------------ bind etc.
    def bind(self, resource=None, timeout=DEFAULT_TIMEOUT):
        """Binds; returns the full JID, or raises AssertionError with the
        error condition."""
        iid = self.next_id()
        res = "<resource>%s</resource>" % xml_escape(resource) if resource is not None else ""
        self.send("<iq type='set' id='%s'><bind xmlns='%s'>%s</bind></iq>" % (iid, NS_BIND, res))
        el = self.expect(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == iid,
                         timeout, "bind result")
        if el.get("type") != "result":
            raise AssertionError("bind failed: %s" % (stanza_error(el),))
        jid = el.findtext("%s/%s" % (q(NS_BIND, "bind"), q(NS_BIND, "jid")))
        assert jid, "bind result without <jid/>"
        self.jid = jid
        return jid

    def iq(self, type_, payload="", to=None, timeout=DEFAULT_TIMEOUT, extra=""):
        """Sends an iq, returns the response element (result or error)."""
        iid = self.next_id()
        to_attr = " to='%s'" % xml_escape(to) if to else ""
        self.send("<iq type='%s' id='%s'%s%s>%s</iq>" % (type_, iid, to_attr, extra, payload))
        return self.expect(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == iid
                           and e.get("type") in ("result", "error"), timeout, "iq response")

    def send_presence(self, to=None, type_=None, extra=""):
        attrs = ""
        if to:
            attrs += " to='%s'" % xml_escape(to)
        if type_:
            attrs += " type='%s'" % type_
        self.send("<presence%s>%s</presence>" % (attrs, extra))

    def send_message(self, to, body, type_="chat", id_=None, extra_attrs=""):
        id_ = id_ or self.next_id()
        self.send("<message to='%s' type='%s' id='%s'%s><body>%s</body></message>"
                  % (xml_escape(to), type_, id_, extra_attrs, xml_escape(body)))
        return id_

    def expect_message(self, timeout=DEFAULT_TIMEOUT, pred=None):
        return self.expect(lambda e: e.tag == q(NS_CLIENT, "message") and (pred is None or pred(e)),
                           timeout, "message")

    def ping_server(self, timeout=DEFAULT_TIMEOUT):
        """True if the server answers an XEP-0199 ping with a result."""
        el = self.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=self.jid.split("@")[-1].split("/")[0]
                     if self.jid else self.server_name, timeout=timeout)
        return el.get("type") == "result"

    # --------------------------------------------------------- helpers
    @classmethod
    def login(cls, host, port, user, domain, password, resource=None, direct_tls=False,
              mech="PLAIN", timeout=DEFAULT_TIMEOUT, rcvbuf=None, bind=True, source=None):
        s = cls.connect(host, port, direct_tls=direct_tls, server_name=domain, timeout=timeout,
                        rcvbuf=rcvbuf, source=source)
        try:
            s.open_stream(domain, timeout=timeout)
            if not direct_tls:
                s.starttls(timeout=timeout)
            if mech == "PLAIN":
                ok, cond = s.sasl_plain(user, password, timeout=timeout)
            else:
                ok, cond = s.sasl_scram(user, password, mech=mech, timeout=timeout)
            if not ok:
                raise AssertionError("login %s@%s failed: %s" % (user, domain, cond))
            s.restart(domain, timeout=timeout)
            if bind:
                s.bind(resource, timeout=timeout)
        except BaseException:
            s.close()
            raise
        return s


def hkdf_expand_label(hname, secret, label, context, length):
    full = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    # HKDF-Expand (RFC 5869)
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(secret, t + info + bytes([i]), hname).digest()
        out += t
        i += 1
    return out[:length]


def tls13_exporter(hname, exporter_master_secret, label, context, length):
    h = getattr(hashlib, hname)
    derived = hkdf_expand_label(hname, exporter_master_secret, label, h(b"").digest(),
                                h().digest_size)
    return hkdf_expand_label(hname, derived, b"exporter", h(context).digest(), length)


def cert_end_point_hash(der):
    hname = "sha256"
    try:
        from cryptography import x509
        cert = x509.load_der_x509_certificate(der)
        alg = cert.signature_hash_algorithm
        if alg is not None and alg.name not in ("md5", "sha1"):
            hname = alg.name.replace("-", "")
    except ImportError:
        pass
    return hashlib.new(hname, der).digest()


def is_tag(el, ns, local):
    return el.tag == q(ns, local)


def raw_connect(host, port, timeout=DEFAULT_TIMEOUT):
    """Plain TCP socket (for byte-level abuse)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    return sock


def parse_jid(jid):
    """(local, domain, resource) of a JID string."""
    m = re.match(r"^(?:([^@/]*)@)?([^/]+)(?:/(.*))?$", jid)
    assert m, "bad JID %r" % jid
    return m.group(1), m.group(2), m.group(3)


def server_login(server, jid, password=None, resource=None, direct_tls=False, mech="PLAIN", **kw):
    """RawStream.login against a conftest TernServer; password defaults to
    the one the fixture created the account with."""
    local, domain, res = parse_jid(jid)
    if password is None:
        password = server.password("%s@%s" % (local, domain))
    port = server.tls_port if direct_tls else server.c2s_port
    return RawStream.login(server.host, port, local, domain, password,
                           resource=resource if resource is not None else res,
                           direct_tls=direct_tls, mech=mech, **kw)


def server_connect(server, direct_tls=False, domain="localhost", **kw):
    port = server.tls_port if direct_tls else server.c2s_port
    return RawStream.connect(server.host, port, direct_tls=direct_tls, server_name=domain, **kw)
