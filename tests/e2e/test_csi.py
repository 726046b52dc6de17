"""XEP-0352 Client State Indication: while a client is inactive, presence
for it is held (only the latest per sender) and delivered before anything
else it receives, or when it becomes active again; messages are never
delayed. Raw XML, directed presence (no roster needed)."""

import time

import pytest

import xmpp_raw as X
from xmpp_raw import NS_CLIENT, q, server_connect, server_login

NS_CSI = "urn:xmpp:csi:0"


@pytest.fixture(scope="module")
def server(tern_module):
    return tern_module()


def login(server, jid, resource):
    return server_login(server, jid, resource=resource)


def bye(*streams):
    for st in streams:
        try:
            st.close_stream()
            st.wait_closed(2.0)
        except (OSError, X.StreamClosed, X.ServerXmlError):
            pass
        st.close()


def presence(sender, to, status=None, type_=None):
    extra = "<status>%s</status>" % status if status else ""
    sender.send_presence(to=to, type_=type_, extra=extra)


def stanzas(stream, seconds):
    """What arrives within seconds (an upper bound), in order."""
    stream.pump(seconds)
    got = [e for e in stream.pending
           if e.tag in (q(NS_CLIENT, "message"), q(NS_CLIENT, "presence"), q(NS_CLIENT, "iq"))]
    stream.pending.clear()
    return got


def describe(el):
    local = el.tag.split("}", 1)[1]
    if local == "presence":
        return ("presence", el.get("from"), el.get("type"), el.findtext(q(NS_CLIENT, "status")))
    if local == "message":
        return ("message", el.get("from"), el.findtext(q(NS_CLIENT, "body")))
    return (local, el.get("from"), el.get("type"))


def read_until(stream, pred, timeout=10.0):
    """Elements in order up to and including the first matching pred."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        el = stream.next(max(0.05, deadline - time.monotonic()))
        out.append(el)
        if pred(el):
            return out


def go_inactive(stream):
    stream.send("<inactive xmlns='%s'/>" % NS_CSI)
    # The nonza has no answer: a ping round trip shows it was processed.
    assert stream.ping_server()


def test_feature_after_authentication(server):
    with server_connect(server) as s:
        s.open_stream("localhost")
        s.starttls()
        assert s.features.find(q(NS_CSI, "csi")) is None
        ok, _ = s.sasl_plain("alice", server.password("alice@localhost"))
        assert ok
        feats = s.restart("localhost")
        assert feats.find(q(NS_CSI, "csi")) is not None


def test_presence_held_until_message(server):
    alice = login(server, "alice@localhost", "phone")
    bob = login(server, "bob@localhost", "pc")
    carol = login(server, "carol@localhost", "pc")
    try:
        go_inactive(alice)
        presence(bob, alice.jid, "first")
        presence(carol, alice.jid, "carol here")
        presence(bob, alice.jid, "second")
        presence(bob, alice.jid, "third")
        assert bob.ping_server() and carol.ping_server()
        assert [describe(e) for e in stanzas(alice, 1.0)] == [], "presence not held"
        bob.send_message(alice.jid, "wake up")
        got = read_until(alice, lambda e: e.tag == q(NS_CLIENT, "message"))
        assert [describe(e) for e in got] == [
            ("presence", carol.jid, None, "carol here"),
            ("presence", bob.jid, None, "third"),
            ("message", bob.jid, "wake up"),
        ]
        assert [describe(e) for e in stanzas(alice, 0.5)] == []
    finally:
        bye(alice, bob, carol)


def test_active_flushes(server):
    alice = login(server, "alice@localhost", "tablet")
    bob = login(server, "bob@localhost", "pc2")
    try:
        go_inactive(alice)
        presence(bob, alice.jid, "away")
        presence(bob, alice.jid, type_="unavailable")
        assert bob.ping_server()
        assert stanzas(alice, 0.5) == []
        alice.send("<active xmlns='%s'/>" % NS_CSI)
        got = read_until(alice, lambda e: e.tag == q(NS_CLIENT, "presence"))
        assert describe(got[-1]) == ("presence", bob.jid, "unavailable", None)
        assert [describe(e) for e in stanzas(alice, 0.5)] == []
        # Active again: presence is delivered at once.
        presence(bob, alice.jid, "back")
        el = alice.expect(lambda e: e.tag == q(NS_CLIENT, "presence"))
        assert describe(el) == ("presence", bob.jid, None, "back")
    finally:
        bye(alice, bob)


def test_messages_are_not_delayed(server):
    alice = login(server, "alice@localhost", "watch")
    bob = login(server, "bob@localhost", "pc3")
    try:
        go_inactive(alice)
        bob.send_message(alice.jid, "now")
        m = alice.expect_message(timeout=10)
        assert m.findtext(q(NS_CLIENT, "body")) == "now"
        # iqs as well, and they flush held presence first.
        presence(bob, alice.jid, "held")
        assert bob.ping_server()
        iq_id = bob.next_id()
        bob.send("<iq type='get' id='%s' to='%s'><query xmlns='jabber:iq:version'/></iq>"
                 % (iq_id, alice.jid))
        got = read_until(alice, lambda e: e.tag == q(NS_CLIENT, "iq"))
        assert [describe(e) for e in got] == [
            ("presence", bob.jid, None, "held"),
            ("iq", bob.jid, "get"),
        ]
    finally:
        bye(alice, bob)


def test_csi_before_bind_is_harmless(server):
    s = server_login(server, "alice@localhost", bind=False)
    try:
        s.send("<inactive xmlns='%s'/>" % NS_CSI)
        s.bind("late-csi")
        assert s.ping_server()
    finally:
        bye(s)
