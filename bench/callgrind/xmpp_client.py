"""A small, blocking, strictly sequential XMPP client for cost measurements.

Everything it does is in lock-step with the server (send, then wait for the
answer), so the server handles the same events in the same order on every
run: under callgrind that makes instruction counts repeatable. Speed is not
a goal. Standard library only.
"""
import base64
import hashlib
import hmac
import random
import socket
import ssl
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

NS_STREAM = "http://etherx.jabber.org/streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_CLIENT = "jabber:client"
NS_PING = "urn:xmpp:ping"

TLS_MODES = ("starttls", "direct", "none")


class XmppError(Exception):
    pass


class ScramSha1:
    """SCRAM-SHA-1 (RFC 5802) client side, without channel binding.

    The PBKDF2 result is cached per (password, salt, iterations): the server
    keeps one salt per account, so repeated logins cost the client only HMACs.
    """

    _salted_cache = {}

    def __init__(self, user, password, nonce):
        self.password = password
        self.client_first_bare = "n=%s,r=%s" % (user, nonce)
        self.nonce = nonce
        self.expected_server_signature = None

    def initial_response(self):
        return "n,," + self.client_first_bare

    def respond(self, server_first):
        attrs = dict(part.split("=", 1) for part in server_first.split(","))
        if not attrs["r"].startswith(self.nonce):
            raise XmppError("SCRAM: server nonce does not extend ours")
        salt = base64.b64decode(attrs["s"])
        iterations = int(attrs["i"])
        key = (self.password, salt, iterations)
        salted = self._salted_cache.get(key)
        if salted is None:
            salted = hashlib.pbkdf2_hmac("sha1", self.password.encode(), salt, iterations)
            self._salted_cache[key] = salted
        client_key = hmac.digest(salted, b"Client Key", "sha1")
        stored_key = hashlib.sha1(client_key).digest()
        without_proof = "c=biws,r=" + attrs["r"]
        auth_message = ",".join((self.client_first_bare, server_first, without_proof)).encode()
        signature = hmac.digest(stored_key, auth_message, "sha1")
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.digest(salted, b"Server Key", "sha1")
        self.expected_server_signature = hmac.digest(server_key, auth_message, "sha1")
        return without_proof + ",p=" + base64.b64encode(proof).decode()

    def verify_success(self, server_final):
        attrs = dict(part.split("=", 1) for part in server_final.split(","))
        if base64.b64decode(attrs.get("v", "")) != self.expected_server_signature:
            raise XmppError("SCRAM: bad server signature")


class Session:
    """One client stream. Stanzas are returned as ElementTree elements with
    namespaced tags ('{jabber:client}message')."""

    def __init__(self, host, port, domain, tls_mode, timeout):
        if tls_mode not in TLS_MODES:
            raise ValueError("tls_mode must be one of %s" % (TLS_MODES,))
        self.domain = domain
        self.tls_mode = tls_mode
        self.jid = None
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_mode == "direct":
            self._start_tls(alpn=True)
        self._pending = []
        self._closed_by_peer = False
        self._open_stream()

    # ---- transport ------------------------------------------------------

    @staticmethod
    def _tls_context(alpn):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # Benchmark servers use throw-away self-signed certificates.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if alpn:
            ctx.set_alpn_protocols(["xmpp-client"])
        return ctx

    def _start_tls(self, alpn):
        self.sock = self._tls_context(alpn).wrap_socket(self.sock, server_hostname=self.domain)

    def send(self, text):
        self.sock.sendall(text.encode())

    def _open_stream(self):
        # A fresh parser per stream: a restart begins a new XML document.
        self._parser = ET.XMLPullParser(events=("start", "end"))
        self._depth = 0
        self._root = None
        self.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                  "xmlns:stream='http://etherx.jabber.org/streams' version='1.0' "
                  "to=%s>" % quoteattr(self.domain))
        features = self.next_stanza()
        if features.tag != "{%s}features" % NS_STREAM:
            raise XmppError("expected stream features, got %s" % features.tag)
        self.features = features

    def _collect(self):
        for event, elem in self._parser.read_events():
            if event == "start":
                if self._depth == 0:
                    self._root = elem
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 1:
                    self._pending.append(elem)
                    # Keep the stream's tree from growing with every stanza.
                    self._root.remove(elem)
                elif self._depth == 0:
                    self._closed_by_peer = True

    def next_stanza(self):
        """Block until the next top-level element arrives."""
        while not self._pending:
            if self._closed_by_peer:
                raise XmppError("server closed the stream")
            data = self.sock.recv(65536)
            if not data:
                raise XmppError("connection closed by server")
            self._parser.feed(data)
            self._collect()
        return self._pending.pop(0)

    # ---- login ----------------------------------------------------------

    def login(self, user, password, resource, nonce):
        if self.tls_mode == "starttls":
            if self.features.find("{%s}starttls" % NS_TLS) is None:
                raise XmppError("server does not offer STARTTLS")
            self.send("<starttls xmlns='%s'/>" % NS_TLS)
            answer = self.next_stanza()
            if answer.tag != "{%s}proceed" % NS_TLS:
                raise XmppError("STARTTLS refused: %s" % answer.tag)
            self._start_tls(alpn=False)
            self._open_stream()
        mechs = [m.text for m in self.features.iter("{%s}mechanism" % NS_SASL)]
        if "SCRAM-SHA-1" not in mechs:
            raise XmppError("SCRAM-SHA-1 not offered (offered: %s)" % mechs)
        scram = ScramSha1(user, password, nonce)
        self.send("<auth xmlns='%s' mechanism='SCRAM-SHA-1'>%s</auth>"
                  % (NS_SASL, _b64(scram.initial_response())))
        challenge = self.next_stanza()
        if challenge.tag != "{%s}challenge" % NS_SASL:
            raise XmppError("SASL: expected challenge, got %s" % challenge.tag)
        reply = scram.respond(_unb64(challenge.text))
        self.send("<response xmlns='%s'>%s</response>" % (NS_SASL, _b64(reply)))
        success = self.next_stanza()
        if success.tag != "{%s}success" % NS_SASL:
            raise XmppError("SASL failed: %s" % ET.tostring(success)[:200])
        scram.verify_success(_unb64(success.text))
        self._open_stream()
        self.send("<iq type='set' id='bind'><bind xmlns='%s'><resource>%s</resource></bind></iq>"
                  % (NS_BIND, escape(resource)))
        result = self.next_stanza()
        jid = result.find("{%s}bind/{%s}jid" % (NS_BIND, NS_BIND))
        if result.get("type") != "result" or jid is None:
            raise XmppError("bind failed: %s" % ET.tostring(result)[:200])
        self.jid = jid.text

    def sync(self, ping_id):
        """Ping the server and return every stanza received before the
        answer: afterwards nothing sent earlier is still in flight."""
        self.send("<iq type='get' id=%s to=%s><ping xmlns='%s'/></iq>"
                  % (quoteattr(ping_id), quoteattr(self.domain), NS_PING))
        before = []
        while True:
            stanza = self.next_stanza()
            if stanza.tag == "{%s}iq" % NS_CLIENT and stanza.get("id") == ping_id:
                return before
            before.append(stanza)

    def close(self):
        """Close the stream and wait for the server to close its side, so
        the server's teardown work happens before this returns."""
        try:
            self.send("</stream:stream>")
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
        except (OSError, ssl.SSLError):
            pass
        finally:
            self.sock.close()


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def _unb64(text):
    return base64.b64decode(text or "").decode()


def nonce_source(seed):
    """Client nonces of fixed length from a seeded PRNG: same length and
    same sequence on every run (only their length matters to the server's
    instruction count, but keeping them identical removes a question)."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    while True:
        yield "".join(rng.choice(alphabet) for _ in range(24))
