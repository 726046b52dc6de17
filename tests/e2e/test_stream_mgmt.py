"""XEP-0198 Stream Management: enabling, acknowledgements and their counts
(§4), resumption after a lost connection (§5) and what happens to the
unacknowledged stanzas of a session that is not resumed.

Raw XML for the exact protocol checks, slixmpp's xep_0198 plugin for
interoperability. Run also with TERN_TEST_WORKERS=2: resumption must find
the hibernated session on the worker owning the account."""

import asyncio
import socket
import time

import pytest

import slix
import xmpp_raw as X
from xmpp_raw import NS_CLIENT, q, server_connect, server_login

NS_SM = "urn:xmpp:sm:3"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_DELAY = "urn:xmpp:delay"


@pytest.fixture(scope="module")
def server(tern_module):
    return tern_module(sm_resume_timeout="60s")


# ------------------------------------------------------------- helpers

def is_stanza(el):
    return el.tag in (q(NS_CLIENT, "message"), q(NS_CLIENT, "presence"), q(NS_CLIENT, "iq"))


class SmClient:
    """A raw stream that keeps XEP-0198 counts: stanzas received since
    <enabled/> (what we acknowledge) and stanzas sent (the server's h)."""

    def __init__(self, stream):
        self.s = stream
        self.received = 0
        self.sent = 0
        self.stanzas = []  # every stanza received, in order
        self.requests = 0  # <r/> from the server

    def send_stanza(self, xml):
        self.s.send(xml)
        self.sent += 1

    def enable(self, resume=True, extra=""):
        self.s.send("<enable xmlns='%s'%s%s/>" % (NS_SM, " resume='true'" if resume else "", extra))
        el = self.s.expect(lambda e: e.tag in (q(NS_SM, "enabled"), q(NS_SM, "failed")),
                           what="enabled")
        assert el.tag == q(NS_SM, "enabled"), "enable failed: %r" % (list(el),)
        return el

    def pump_until(self, pred, timeout=10.0, what="stanza"):
        """Consumes elements, counting stanzas, until pred(stanza) holds;
        returns that stanza."""
        deadline = time.monotonic() + timeout
        while True:
            el = self.s.next(max(0.05, deadline - time.monotonic()))
            if el.tag == q(NS_SM, "r"):
                self.requests += 1
                continue
            if is_stanza(el):
                self.received += 1
                self.stanzas.append(el)
                if pred(el):
                    return el
            if time.monotonic() > deadline:
                raise TimeoutError("no %s" % what)

    def drain(self, seconds):
        """Reads for a while (an upper bound, for absence checks)."""
        deadline = time.monotonic() + seconds
        got = []
        while True:
            try:
                el = self.s.next(max(0.05, deadline - time.monotonic()))
            except TimeoutError:
                return got
            if el.tag == q(NS_SM, "r"):
                self.requests += 1
            elif is_stanza(el):
                self.received += 1
                self.stanzas.append(el)
                got.append(el)
            if time.monotonic() > deadline:
                return got

    def ack(self):
        self.s.send("<a xmlns='%s' h='%d'/>" % (NS_SM, self.received % 2**32))

    def server_h(self):
        self.s.send("<r xmlns='%s'/>" % NS_SM)
        el = self.s.expect(lambda e: e.tag == q(NS_SM, "a"), what="<a/>")
        return int(el.get("h"))

    def available(self):
        self.send_stanza("<presence/>")
        self.pump_until(lambda e: e.tag == q(NS_CLIENT, "presence")
                        and e.get("from") == self.s.jid, what="own presence")


def login(server, jid, resource, bind=True):
    return server_login(server, jid, resource=resource, bind=bind)


def kill(stream):
    """Drops the TCP connection without </stream:stream> or TLS
    close_notify, as a phone losing its network does."""
    try:
        socket.socket.shutdown(stream.sock, socket.SHUT_RDWR)
    except OSError:
        pass
    stream.close()


def bye(*streams):
    """Ends streams cleanly (</stream:stream>), so that no session stays
    behind hibernating on the shared server."""
    for st in streams:
        if st is None:
            continue
        try:
            st.close_stream()
            st.wait_closed(2.0)
        except (OSError, X.StreamClosed, X.ServerXmlError):
            pass
        st.close()


def body_of(el):
    return el.findtext(q(NS_CLIENT, "body"))


def messages_with_bodies(els):
    return [body_of(e) for e in els if e.tag == q(NS_CLIENT, "message") and body_of(e)]


def failed_condition(el):
    assert el.tag == q(NS_SM, "failed"), "expected <failed/>, got %s" % el.tag
    for c in el:
        if c.tag.startswith("{%s}" % NS_STANZAS):
            return c.tag.split("}", 1)[1]
    return None


def resume(server, jid, previd, h, timeout=15.0):
    """New connection authenticated as jid's account sending <resume/>;
    returns (stream, answer element)."""
    local, domain, _ = X.parse_jid(jid)
    s = login(server, "%s@%s" % (local, domain), None, bind=False)
    s.send("<resume xmlns='%s' previd='%s' h='%d'/>" % (NS_SM, previd, h))
    el = s.expect(lambda e: e.tag in (q(NS_SM, "resumed"), q(NS_SM, "failed")), timeout,
                  "resumed or failed")
    return s, el


def wait_log(server, pattern, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pattern in server.log_text():
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------- enabling

def test_feature_offered_after_authentication(server):
    with server_connect(server) as s:
        feats = s.open_stream("localhost")
        assert feats.find(q(NS_SM, "sm")) is None
        s.starttls()
        assert s.features.find(q(NS_SM, "sm")) is None, "sm offered before authentication"
        ok, _ = s.sasl_plain("alice", server.password("alice@localhost"))
        assert ok
        feats = s.restart("localhost")
        assert feats.find(q(NS_SM, "sm")) is not None


def test_enable_before_bind_fails(server):
    s = login(server, "alice@localhost", None, bind=False)
    try:
        s.send("<enable xmlns='%s' resume='true'/>" % NS_SM)
        el = s.expect(lambda e: e.tag in (q(NS_SM, "enabled"), q(NS_SM, "failed")))
        assert failed_condition(el) == "unexpected-request"
        # The stream goes on: bind and enable now.
        s.bind("late")
        SmClient(s).enable()
    finally:
        bye(s)


def test_enable_twice_fails(server):
    s = login(server, "alice@localhost", "twice")
    try:
        c = SmClient(s)
        c.enable()
        s.send("<enable xmlns='%s'/>" % NS_SM)
        el = s.expect(lambda e: e.tag in (q(NS_SM, "enabled"), q(NS_SM, "failed")))
        assert failed_condition(el) == "unexpected-request"
        assert s.ping_server()
    finally:
        bye(s)


def test_enabled_attributes(server):
    s = login(server, "alice@localhost", "attrs")
    s2 = login(server, "alice@localhost", "attrs2")
    try:
        el = SmClient(s).enable(resume=True)
        assert el.get("resume") in ("true", "1")
        assert int(el.get("max")) == 60
        sm_id = el.get("id")
        assert sm_id and len(sm_id) >= 16
        # A client asking for less gets less; ids are never reused.
        el2 = SmClient(s2).enable(resume=True, extra=" max='7'")
        assert int(el2.get("max")) == 7
        assert el2.get("id") != sm_id
    finally:
        bye(s, s2)


def test_enable_without_resume(server):
    s = login(server, "alice@localhost", "noresume")
    try:
        el = SmClient(s).enable(resume=False)
        assert el.get("resume") not in ("true", "1")
    finally:
        bye(s)


def test_r_and_a_before_enable_is_an_error(server):
    s = login(server, "alice@localhost", "early-r")
    try:
        s.send("<r xmlns='%s'/>" % NS_SM)
        assert s.expect_stream_error() == "unsupported-stanza-type"
    finally:
        bye(s)


# ---------------------------------------------------- counting (§4)

def test_server_counts_handled_stanzas(server):
    s = login(server, "alice@localhost", "count-in")
    try:
        c = SmClient(s)
        c.enable()
        assert c.server_h() == 0
        c.available()
        iq_id = s.next_id()
        c.send_stanza("<iq type='get' id='%s' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
                      % iq_id)
        c.pump_until(lambda e: e.get("id") == iq_id)
        # A stanza the server refuses (no such user) was still handled.
        c.send_stanza("<message to='nobody@localhost' type='chat'><body>x</body></message>")
        assert c.server_h() == c.sent == 3
    finally:
        bye(s)


def test_client_acks_and_server_requests(server):
    a = login(server, "alice@localhost", "count-out")
    b = login(server, "bob@localhost", "count-out")
    try:
        c = SmClient(a)
        c.enable()
        for i in range(7):
            b.send_message(a.jid, "m%d" % i)
        c.pump_until(lambda e: body_of(e) == "m6")
        assert c.received == 7
        # Past 5 unacknowledged stanzas the server asks for an ack.
        deadline = time.monotonic() + 10
        while c.requests == 0 and time.monotonic() < deadline:
            c.drain(0.2)
        assert c.requests >= 1, "server never sent <r/>"
        c.ack()
        # Acknowledging exactly what was received is fine.
        assert a.ping_server()
    finally:
        bye(a, b)


def test_ack_too_high_is_a_stream_error(server):
    a = login(server, "alice@localhost", "too-high")
    try:
        c = SmClient(a)
        c.enable()
        c.available()
        a.send("<a xmlns='%s' h='%d'/>" % (NS_SM, c.received + 5))
        with pytest.raises(X.StreamErrorReceived) as ei:
            while True:
                a.next()
        assert ei.value.condition == "undefined-condition"
        el = ei.value.element.find(q(NS_SM, "handled-count-too-high"))
        assert el is not None, "no <handled-count-too-high/> in the stream error"
        assert int(el.get("h")) == c.received + 5
        assert int(el.get("send-count")) == c.received
    finally:
        bye(a)


def test_max_unacked_cuts_the_client_off_without_losing_messages(tern):
    srv = tern(sm_max_unacked="10", sm_resume_timeout="60s")
    a = login(srv, "alice@localhost", "lazy")
    b = login(srv, "bob@localhost", "sender")
    try:
        SmClient(a).enable()
        ids = [b.send_message("alice@localhost/lazy", "flood %d" % i) for i in range(14)]
        assert a.expect_stream_error(timeout=15) == "policy-violation"
        # Nothing the client acknowledged: every message comes back to
        # the sender (or is stored for later), none is silently lost.
        got = set()
        deadline = time.monotonic() + 15
        while len(got) < len(ids) and time.monotonic() < deadline:
            try:
                el = b.expect(lambda e: e.tag == q(NS_CLIENT, "message")
                              and e.get("type") == "error", timeout=0.5)
            except TimeoutError:
                continue
            got.add(el.get("id"))
        if len(got) < len(ids):
            missing = set(ids) - got
            stored = offline_bodies(srv, "alice@localhost", "after")
            assert missing <= {i for i, _ in stored}, "lost: %s" % (missing - got,)
    finally:
        bye(a, b)


# --------------------------------------------------- resumption (§5)

def test_resume_after_lost_connection(server):
    alice = login(server, "alice@localhost", "phone")
    bob = login(server, "bob@localhost", "pc")
    try:
        c = SmClient(alice)
        enabled = c.enable()
        previd = enabled.get("id")
        c.available()
        bob.send_message(alice.jid, "before 1")
        bob.send_message(alice.jid, "before 2")
        c.pump_until(lambda e: body_of(e) == "before 2")
        c.ack()
        acked = c.received
        # Received but not acknowledged when the connection dies.
        bob.send_message(alice.jid, "unacked")
        c.pump_until(lambda e: body_of(e) == "unacked")
        kill(alice)
        assert wait_log(server, "waits 60s for resumption")
        for i in range(5):
            bob.send_message(alice.jid, "while away %d" % i)
        assert bob.ping_server()  # the messages have been routed

        alice2, el = resume(server, "alice@localhost", previd, acked)
        alice = alice2
        assert el.tag == q(NS_SM, "resumed"), "resume failed: %r" % failed_condition(el)
        assert el.get("previd") == previd
        assert int(el.get("h")) == c.sent  # the presence we sent
        c2 = SmClient(alice2)
        c2.received = acked
        c2.pump_until(lambda e: body_of(e) == "while away 4")
        bodies = messages_with_bodies(c2.stanzas)
        assert bodies == ["unacked"] + ["while away %d" % i for i in range(5)]
        assert messages_with_bodies(c2.drain(1.0)) == [], "duplicates after resumption"
        # Same session: same full JID, reachable and able to send.
        alice2.jid = "alice@localhost/phone"
        bob.send_message("alice@localhost/phone", "after")
        c2.pump_until(lambda e: body_of(e) == "after")
        alice2.send_message("bob@localhost/pc", "hello from resumed")
        m = bob.expect_message(pred=lambda e: body_of(e) == "hello from resumed")
        assert m.get("from") == "alice@localhost/phone"
        c2.ack()
        # The count goes on from the old connection's.
        assert c2.server_h() == c.sent + 1
        # No error reached the sender.
        assert not [e for e in bob.pending if e.get("type") == "error"]
    finally:
        bye(alice, bob)


def test_no_unavailable_presence_while_hibernating(server):
    phone = login(server, "carol@localhost", "phone")
    desk = login(server, "carol@localhost", "desk")
    try:
        desk.send_presence()
        desk.expect(lambda e: e.tag == q(NS_CLIENT, "presence")
                    and e.get("from") == desk.jid)
        c = SmClient(phone)
        previd = c.enable().get("id")
        c.available()
        desk.expect(lambda e: e.tag == q(NS_CLIENT, "presence")
                    and e.get("from") == phone.jid and e.get("type") is None)
        kill(phone)
        assert wait_log(server, "carol@localhost/phone waits")
        desk.pump(1.0)
        gone = [e for e in desk.pending if e.tag == q(NS_CLIENT, "presence")
                and e.get("type") == "unavailable"]
        assert gone == [], "hibernating session announced unavailable"
        phone, el = resume(server, "carol@localhost", previd, c.received)
        assert el.tag == q(NS_SM, "resumed")
    finally:
        bye(phone, desk)


def test_resume_unknown_id_fails_and_stream_continues(server):
    s, el = resume(server, "alice@localhost", "0123456789abcdef0123456789abcdef", 0)
    try:
        assert failed_condition(el) == "item-not-found"
        s.bind("after-failed-resume")
        assert s.ping_server()
    finally:
        bye(s)


def test_resume_of_another_accounts_session_fails(server):
    a = login(server, "alice@localhost", "victim")
    try:
        previd = SmClient(a).enable().get("id")
        s, el = resume(server, "bob@localhost", previd, 0)
        try:
            assert failed_condition(el) == "item-not-found"
        finally:
            bye(s)
        assert a.ping_server()
    finally:
        bye(a)


def test_resume_while_old_connection_is_open(server):
    old = login(server, "alice@localhost", "stale")
    bob = login(server, "bob@localhost", "stale-peer")
    new = None
    try:
        c = SmClient(old)
        previd = c.enable().get("id")
        c.available()
        bob.send_message(old.jid, "to old")
        c.pump_until(lambda e: body_of(e) == "to old")
        new, el = resume(server, "alice@localhost", previd, 0)
        assert el.tag == q(NS_SM, "resumed")
        assert old.expect_stream_error() == "conflict"
        # Everything unacknowledged comes again, on the new stream.
        c2 = SmClient(new)
        c2.pump_until(lambda e: body_of(e) == "to old")
        bob.send_message("alice@localhost/stale", "to new")
        c2.pump_until(lambda e: body_of(e) == "to new")
    finally:
        bye(old, bob, new)


def test_resume_after_bind_fails(server):
    a = login(server, "alice@localhost", "bound-resume")
    try:
        a.send("<resume xmlns='%s' previd='abc' h='0'/>" % NS_SM)
        el = a.expect(lambda e: e.tag in (q(NS_SM, "resumed"), q(NS_SM, "failed")))
        assert failed_condition(el) == "unexpected-request"
    finally:
        bye(a)


def test_clean_close_ends_the_session(server):
    a = login(server, "alice@localhost", "clean")
    try:
        c = SmClient(a)
        previd = c.enable().get("id")
        c.available()
        a.close_stream()
        assert a.wait_closed()
    finally:
        bye(a)
    s, el = resume(server, "alice@localhost", previd, 0)
    s.close()
    assert failed_condition(el) == "item-not-found"


def test_resume_with_too_high_h(server):
    a = login(server, "alice@localhost", "resume-high")
    try:
        c = SmClient(a)
        previd = c.enable().get("id")
        c.available()
        kill(a)
        assert wait_log(server, "alice@localhost/resume-high waits")
        s = login(server, "alice@localhost", None, bind=False)
        try:
            s.send("<resume xmlns='%s' previd='%s' h='%d'/>" % (NS_SM, previd, c.received + 3))
            assert s.expect_stream_error() == "undefined-condition"
        finally:
            bye(s)
        # The session is still there to be resumed properly.
        s, el = resume(server, "alice@localhost", previd, c.received)
        a = s
        assert el.tag == q(NS_SM, "resumed")
    finally:
        bye(a)


# ------------------------------------------- sessions not resumed

def offline_bodies(srv, jid, resource):
    """Logs in, sends initial presence and returns (id, body) of the
    messages that arrive (offline storage, when a module provides it)."""
    s = login(srv, jid, resource)
    try:
        s.send_presence()
        s.pump(1.5)
        return [(e.get("id"), body_of(e)) for e in s.pending
                if e.tag == q(NS_CLIENT, "message") and body_of(e)]
    finally:
        bye(s)


def test_expiry_reroutes_to_other_resource(tern):
    srv = tern(sm_resume_timeout="2s")
    phone = login(srv, "alice@localhost", "phone")
    desk = login(srv, "alice@localhost", "desk")
    bob = login(srv, "bob@localhost", "pc")
    try:
        desk.send_presence()
        desk.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("from") == desk.jid)
        c = SmClient(phone)
        c.enable()
        c.available()
        bob.send_message(phone.jid, "seen but unacked")
        c.pump_until(lambda e: body_of(e) == "seen but unacked")
        kill(phone)
        assert wait_log(srv, "alice@localhost/phone waits")
        bob.send_message("alice@localhost/phone", "while hibernating")
        # After the timeout: unavailable for the phone, then its messages.
        desk.expect(lambda e: e.tag == q(NS_CLIENT, "presence")
                    and e.get("from") == "alice@localhost/phone"
                    and e.get("type") == "unavailable", timeout=15)
        got = []
        while len(got) < 2:
            m = desk.expect_message(timeout=10, pred=lambda e: body_of(e) is not None)
            got.append(m)
        assert [body_of(m) for m in got] == ["seen but unacked", "while hibernating"]
        for m in got:
            d = m.find(q(NS_DELAY, "delay"))
            assert d is not None and d.get("from") == "localhost" and d.get("stamp")
            assert m.get("from") == "bob@localhost/pc"
        # And nothing went back to bob.
        bob.pump(0.5)
        assert not [e for e in bob.pending if e.get("type") == "error"]
    finally:
        bye(phone, desk)
        bob.close()


def test_expiry_with_no_other_resource_loses_nothing(tern):
    srv = tern(sm_resume_timeout="2s")
    phone = login(srv, "alice@localhost", "phone")
    bob = login(srv, "bob@localhost", "pc")
    try:
        c = SmClient(phone)
        previd = c.enable().get("id")
        c.available()
        id1 = bob.send_message(phone.jid, "one")
        c.pump_until(lambda e: body_of(e) == "one")
        kill(phone)
        assert wait_log(srv, "alice@localhost/phone waits")
        id2 = bob.send_message("alice@localhost/phone", "two")
        assert wait_log(srv, "not resumed: session ended", timeout=15)
        s, el = resume(srv, "alice@localhost", previd, 0)
        s.close()
        assert failed_condition(el) == "item-not-found"
        # RFC 6121 §8.5.2: bounced to the sender, unless offline storage
        # took them; either way not lost.
        bounced = set()
        deadline = time.monotonic() + 5
        while len(bounced) < 2 and time.monotonic() < deadline:
            try:
                e = bob.expect(lambda e: e.tag == q(NS_CLIENT, "message")
                               and e.get("type") == "error", timeout=0.5)
            except TimeoutError:
                continue
            assert X.stanza_error(e)[1] == "service-unavailable"
            bounced.add(e.get("id"))
        missing = {id1, id2} - bounced
        if missing:
            stored = {i for i, _ in offline_bodies(srv, "alice@localhost", "later")}
            assert missing <= stored, "messages lost: %s" % (missing - stored)
    finally:
        phone.close()
        bob.close()


def test_expiry_answers_unacked_iq(tern):
    srv = tern(sm_resume_timeout="2s")
    phone = login(srv, "alice@localhost", "phone")
    bob = login(srv, "bob@localhost", "pc")
    try:
        c = SmClient(phone)
        c.enable()
        iq_id = "q1"
        bob.send("<iq type='get' id='%s' to='%s'><query xmlns='jabber:iq:version'/></iq>"
                 % (iq_id, phone.jid))
        c.pump_until(lambda e: e.get("id") == iq_id)
        kill(phone)
        el = bob.expect(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == iq_id,
                        timeout=15)
        assert el.get("type") == "error"
        assert X.stanza_error(el)[1] == "service-unavailable"
    finally:
        phone.close()
        bob.close()


# ------------------------------------------------------------ workers

def test_resume_with_two_workers(tern):
    srv = tern(workers=2, sm_resume_timeout="30s")
    # With two workers the accounts hash to both; every pair is tried so
    # that both the same-worker and the cross-worker cases run.
    for who in ("alice@localhost", "bob@localhost", "carol@localhost", "dave@example.org"):
        peer = "zoe@localhost"
        a = login(srv, who, "w")
        z = login(srv, peer, "w")
        try:
            c = SmClient(a)
            previd = c.enable().get("id")
            c.available()
            z.send_message(a.jid, "first")
            c.pump_until(lambda e: body_of(e) == "first")
            kill(a)
            assert wait_log(srv, "%s/w waits" % who)
            z.send_message(a.jid, "second")
            assert z.ping_server()
            local, domain, _ = X.parse_jid(who)
            a, el = resume(srv, who, previd, 0)
            assert el.tag == q(NS_SM, "resumed")
            c2 = SmClient(a)
            c2.pump_until(lambda e: body_of(e) == "second")
            assert messages_with_bodies(c2.stanzas) == ["first", "second"]
        finally:
            bye(a, z)


# ------------------------------------------------------------ slixmpp

def test_slixmpp_enable_and_acks(server):
    async def main():
        alice = await slix.connect(server, "alice@localhost/slix", server.password("alice@localhost"),
                                   plugins=["xep_0198"])
        bob = await slix.connect(server, "bob@localhost/slix", server.password("bob@localhost"))
        try:
            sm = alice.plugin["xep_0198"]
            deadline = asyncio.get_running_loop().time() + 10
            while not sm.enabled_in and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            assert sm.enabled_in, "slixmpp did not get <enabled/>"
            for i in range(12):
                bob.send_message(mto="alice@localhost/slix", mbody="s%d" % i, mtype="chat")
            for i in range(12):
                m = await alice.next_message(pred=lambda m: m["body"].startswith("s"))
                assert m["body"] == "s%d" % i
            # slixmpp answered our <r/>s: nothing is left unacknowledged
            # and no stream error was raised.
            assert not alice.stream_errors
        finally:
            await asyncio.gather(alice.close(), bob.close(), return_exceptions=True)
    slix.run(main())


def test_slixmpp_resumes_after_abort(server):
    async def main():
        alice = await slix.connect(server, "alice@localhost/slixres",
                                   server.password("alice@localhost"), plugins=["xep_0198"])
        bob = await slix.connect(server, "bob@localhost/slixres", server.password("bob@localhost"))
        try:
            sm = alice.plugin["xep_0198"]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while not (sm.enabled_in and sm.sm_id) and loop.time() < deadline:
                await asyncio.sleep(0.05)
            assert sm.sm_id, "no resumable session"
            bob.send_message(mto="alice@localhost/slixres", mbody="r0", mtype="chat")
            assert (await alice.next_message())["body"] == "r0"
            resumed = asyncio.Event()
            alice.add_event_handler("session_resumed", lambda _e: resumed.set())
            alice.abort()  # no </stream:stream>: the session hibernates
            assert wait_log(server, "alice@localhost/slixres waits")
            for i in range(1, 4):
                bob.send_message(mto="alice@localhost/slixres", mbody="r%d" % i, mtype="chat")
            alice.connect(address=alice.tern_address, force_starttls=True)
            await asyncio.wait_for(resumed.wait(), 20)
            for i in range(1, 4):
                m = await alice.next_message()
                assert m["body"] == "r%d" % i
            with pytest.raises(asyncio.TimeoutError):
                await alice.next_message(timeout=1.0)
        finally:
            await asyncio.gather(alice.close(), bob.close(), return_exceptions=True)
    slix.run(main())


def test_idle_timeout_hibernates(tern):
    srv = tern(idle_timeout="2s", sm_resume_timeout="30s")
    a = login(srv, "alice@localhost", "idle")
    b = None
    try:
        c = SmClient(a)
        previd = c.enable().get("id")
        # Said nothing for longer than idle_timeout: a stream error, but
        # the session waits for resumption.
        assert a.expect_stream_error(timeout=15) == "connection-timeout"
        assert wait_log(srv, "alice@localhost/idle waits")
        b = login(srv, "bob@localhost", "pc")
        b.send_message("alice@localhost/idle", "while idle")
        assert b.ping_server()
        a, el = resume(srv, "alice@localhost", previd, 0)
        assert el.tag == q(NS_SM, "resumed")
        SmClient(a).pump_until(lambda e: body_of(e) == "while idle")
    finally:
        bye(a)
        if b:
            b.close()


def test_new_bind_of_the_resource_ends_the_hibernated_session(tern):
    srv = tern(sm_resume_timeout="60s")
    a = login(srv, "alice@localhost", "phone")
    b = login(srv, "bob@localhost", "pc")
    try:
        c = SmClient(a)
        previd = c.enable().get("id")
        c.available()
        kill(a)
        assert wait_log(srv, "alice@localhost/phone waits")
        mid = b.send_message("alice@localhost/phone", "queued")
        assert b.ping_server()
        # RFC 6120 §7.7.2.2: the new binding wins, the old session ends.
        a = login(srv, "alice@localhost", "phone")
        assert wait_log(srv, "not resumed: session ended")
        s, el = resume(srv, "alice@localhost", previd, 0)
        s.close()
        assert failed_condition(el) == "item-not-found"
        # The queued message was undeliverable when the old session ended
        # (the new one was not bound yet): bounced, or stored offline.
        try:
            err = b.expect(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("id") == mid,
                           timeout=3)
            assert err.get("type") == "error"
        except TimeoutError:
            a.send_presence()
            a.expect_message(pred=lambda e: body_of(e) == "queued")
    finally:
        bye(a)
        b.close()
