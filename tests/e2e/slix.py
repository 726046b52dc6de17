"""slixmpp (1.8) client wrapper for the end-to-end tests.

Each test runs its own asyncio loop (`run(coro)`); clients are created
inside that loop. TernClient connects to a fixed address (no DNS), disables
certificate verification (the server's certificates are self-signed) and
forces a SASL mechanism: slixmpp 1.8 implements -PLUS only with tls-unique
and has no channel-binding data on asyncio transports, so letting it choose
would pick a -PLUS mechanism it cannot complete.
"""

import asyncio
import logging
import ssl

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout  # noqa: F401  (re-exported)

log = logging.getLogger("tern.e2e.slix")

LOGIN_TIMEOUT = 30.0


def run(coro, timeout=120):
    """Runs a coroutine in a fresh event loop, with an overall time limit."""
    async def limited():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(limited())


class LoginFailed(Exception):
    def __init__(self, reason, condition=None):
        super().__init__("%s%s" % (reason, (": " + condition) if condition else ""))
        self.reason = reason
        self.condition = condition


class TernClient(slixmpp.ClientXMPP):
    def __init__(self, jid, password, port, *, host="127.0.0.1", direct_tls=False,
                 mech="SCRAM-SHA-256", plugins=(), **kw):
        super().__init__(jid, password, sasl_mech=mech, **kw)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.tern_address = (host, port)
        self.tern_direct_tls = direct_tls
        self.default_domain = self.boundjid.domain  # SNI and stream 'to'
        self.whitespace_keepalive = False
        self.messages = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.stream_errors = []
        self.auth_failures = []
        self.session_ready = asyncio.Event()
        self.disconnected_event = asyncio.Event()
        self._fail = None
        for p in plugins:
            self.register_plugin(p)
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("presence", self._on_presence)
        self.add_event_handler("stream_error", self._on_stream_error)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("failed_all_auth", self._on_failed_all_auth)
        self.add_event_handler("disconnected", self._on_disconnected)
        self.add_event_handler("connection_failed", self._on_connection_failed)

    # No DNS: always the test server's address; the service name is the
    # JID's domain.
    async def _pick_dns_answer(self, domain, port=None):
        return (self.boundjid.domain, self.tern_address[0], self.tern_address[1])

    def _on_session_start(self, _event):
        self.session_ready.set()

    def _on_message(self, msg):
        self.messages.put_nowait(msg)

    def _on_presence(self, pres):
        self.presences.put_nowait(pres)

    def _on_stream_error(self, err):
        self.stream_errors.append(err["condition"])

    def _on_failed_auth(self, stanza):
        self.auth_failures.append(stanza["condition"])

    def _on_failed_all_auth(self, _event):
        self._fail = LoginFailed("authentication failed",
                                 self.auth_failures[-1] if self.auth_failures else None)
        self.session_ready.set()

    def _on_disconnected(self, _reason):
        self.disconnected_event.set()
        if not self.session_ready.is_set():
            self._fail = LoginFailed("disconnected during login",
                                     self.auth_failures[-1] if self.auth_failures
                                     else (self.stream_errors[-1] if self.stream_errors else None))
            self.session_ready.set()

    def _on_connection_failed(self, err):
        self._fail = LoginFailed("connection failed: %s" % (err,))
        self.cancel_connection_attempt()
        self.session_ready.set()

    async def login(self, timeout=LOGIN_TIMEOUT):
        """Connects and waits for the session; raises LoginFailed."""
        self.disconnected_event.clear()
        self.connect(address=self.tern_address, use_ssl=self.tern_direct_tls,
                     force_starttls=not self.tern_direct_tls)
        try:
            await asyncio.wait_for(self.session_ready.wait(), timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise LoginFailed("timeout") from None
        if self._fail is not None:
            await self.close()
            raise self._fail
        return self

    async def close(self, timeout=5.0):
        if self.transport is None and not self.is_connecting():
            return
        self.cancel_connection_attempt()
        self.disconnect(wait=1.0)
        try:
            await asyncio.wait_for(self.disconnected_event.wait(), timeout)
        except asyncio.TimeoutError:
            self.abort()

    async def next_message(self, timeout=10.0, pred=None):
        """Next received message (optionally the next matching pred)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise asyncio.TimeoutError("no message within %ss" % timeout)
            msg = await asyncio.wait_for(self.messages.get(), remaining)
            if pred is None or pred(msg):
                return msg

    async def next_presence(self, timeout=10.0, pred=None):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise asyncio.TimeoutError("no presence within %ss" % timeout)
            p = await asyncio.wait_for(self.presences.get(), remaining)
            if pred is None or pred(p):
                return p

    async def no_message(self, wait=1.0, pred=None):
        """Asserts that no (matching) message arrives within wait seconds."""
        try:
            msg = await self.next_message(wait, pred)
        except asyncio.TimeoutError:
            return
        raise AssertionError("unexpected message: %s" % msg)


async def connect(server, jid, password, **kw):
    """Logs a client in to a TernServer (STARTTLS port unless direct_tls)."""
    direct = kw.pop("direct_tls", False)
    port = server.tls_port if direct else server.c2s_port
    c = TernClient(jid, password, port, host=server.host, direct_tls=direct, **kw)
    await c.login()
    return c
