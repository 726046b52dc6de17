"""Message Carbons (XEP-0280) against a real server: the exact <sent/> and
<received/> copies from a raw client, which messages are copied and to
whom, and the happy path with slixmpp's xep_0280 plugin."""

import asyncio

import pytest

import slix
from xmpp_raw import NS_CLIENT, q, server_login, stanza_error

NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_HINTS = "urn:xmpp:hints"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
DISCO_INFO = "http://jabber.org/protocol/disco#info"


@pytest.fixture(params=[1, 2], ids=["1worker", "2workers"])
def srv(tern, request):
    return tern(workers=request.param)


def login(server, jid, carbons=True, presence=True, priority=None):
    s = server_login(server, jid)
    if carbons:
        res = s.iq("set", "<enable xmlns='%s'/>" % NS_CARBONS)
        assert res.get("type") == "result", stanza_error(res)
        assert len(res) == 0
    if presence:
        extra = "<priority>%d</priority>" % priority if priority is not None else ""
        s.send_presence(extra=extra)
        s.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("from") == s.jid
                 and e.get("type") is None, what="own presence echo")
    return s


def settle(*streams, wait=0.4):
    """Reads and forgets what the logins caused (sibling presence)."""
    for s in streams:
        s.pump(wait)
        s.pending.clear()


def send(s, to, body, type_="chat", extra=""):
    id_ = s.next_id()
    type_attr = " type='%s'" % type_ if type_ else ""
    s.send("<message to='%s' id='%s'%s>%s%s</message>"
           % (to, id_, type_attr, "<body>%s</body>" % body if body else "", extra))
    return id_


def is_carbon(kind):
    return lambda e: e.tag == q(NS_CLIENT, "message") and e.find(q(NS_CARBONS, kind)) is not None


def is_plain(id_):
    return lambda e: e.tag == q(NS_CLIENT, "message") and e.get("id") == id_ \
        and e.find(q(NS_CARBONS, "sent")) is None and e.find(q(NS_CARBONS, "received")) is None


def expect_carbon(s, kind, id_):
    """The <sent/>/<received/> copy of message id_ on s; checks the wrapper
    (§6, §7: from the bare JID, to this resource) and returns the inner
    message."""
    el = s.expect(lambda e: is_carbon(kind)(e) and e.find(q(NS_CARBONS, kind)).find(
        q(NS_FORWARD, "forwarded")) is not None and e.find(q(NS_CARBONS, kind)).find(
        q(NS_FORWARD, "forwarded")).find(q(NS_CLIENT, "message")).get("id") == id_,
        what="%s carbon of %s" % (kind, id_))
    assert el.get("from") == s.jid.split("/")[0]
    assert el.get("to") == s.jid
    wrapper = el.find(q(NS_CARBONS, kind))
    assert len(wrapper) == 1 and len(el) == 1
    inner = wrapper.find(q(NS_FORWARD, "forwarded")).find(q(NS_CLIENT, "message"))
    assert el.get("type") == inner.get("type")
    return inner


def nothing(s, pred, wait=0.8):
    s.pump(wait)
    bad = [e for e in s.pending if pred(e)]
    assert not bad, "unexpected: %r" % [(e.tag, e.attrib) for e in bad]


def any_message(e):
    return e.tag == q(NS_CLIENT, "message")


def test_disco_advertises_carbons(tern):
    srv = tern()
    s = login(srv, "alice@localhost/one", carbons=False, presence=False)
    res = s.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to="localhost")
    feats = {f.get("var") for f in res.find(q(DISCO_INFO, "query"))
             if f.tag == q(DISCO_INFO, "feature")}
    assert NS_CARBONS in feats
    s.close()


def test_received_and_sent_copies(srv):
    a1 = login(srv, "alice@localhost/one")
    a2 = login(srv, "alice@localhost/two")
    b = login(srv, "bob@localhost/pc", carbons=False)
    settle(a1, a2, b)

    # bob -> alice/one: the original to one, a <received/> copy to two
    mid = send(b, a1.jid, "hello one")
    orig = a1.expect(is_plain(mid), what="original")
    assert orig.get("from") == b.jid and orig.get("to") == a1.jid
    inner = expect_carbon(a2, "received", mid)
    assert inner.get("from") == b.jid and inner.get("to") == a1.jid
    assert inner.get("type") == "chat"
    assert inner.findtext(q(NS_CLIENT, "body")) == "hello one"
    nothing(a1, is_carbon("received"))
    nothing(a2, is_plain(mid))

    # alice/one -> bob: a <sent/> copy to two, none to the sender
    mid = send(a1, "bob@localhost", "hello bob")
    orig = b.expect(is_plain(mid), what="original at bob")
    assert orig.get("from") == a1.jid
    inner = expect_carbon(a2, "sent", mid)
    assert inner.get("from") == a1.jid and inner.get("to") == "bob@localhost"
    assert inner.findtext(q(NS_CLIENT, "body")) == "hello bob"
    nothing(a1, is_carbon("sent"))
    nothing(b, is_carbon("sent"))
    nothing(b, is_carbon("received"))

    # to the bare JID: both resources get the original, nobody a copy
    mid = send(b, "alice@localhost", "hello both")
    for s in (a1, a2):
        s.expect(is_plain(mid), what="original to bare")
        nothing(s, is_carbon("received"))
    for s in (a1, a2, b):
        s.close()


def test_private_and_no_copy_are_not_copied(srv):
    a1 = login(srv, "alice@localhost/one")
    a2 = login(srv, "alice@localhost/two")
    b = login(srv, "bob@localhost/pc", carbons=False)
    settle(a1, a2, b)
    for marker in ("<private xmlns='%s'/>" % NS_CARBONS, "<no-copy xmlns='%s'/>" % NS_HINTS):
        mid = send(b, a1.jid, "secret in", extra=marker)
        orig = a1.expect(is_plain(mid), what="original")
        # §7: the receiving server removes <private/>; no-copy stays
        assert orig.find(q(NS_CARBONS, "private")) is None
        if "no-copy" in marker:
            assert orig.find(q(NS_HINTS, "no-copy")) is not None
        mid_out = send(a1, "bob@localhost", "secret out", extra=marker)
        b.expect(is_plain(mid_out), what="original at bob")
        nothing(a2, lambda e: is_carbon("received")(e) or is_carbon("sent")(e))
    for s in (a1, a2, b):
        s.close()


def test_disabled_and_never_enabled_get_nothing(srv):
    a1 = login(srv, "alice@localhost/one")
    a2 = login(srv, "alice@localhost/two")
    a3 = login(srv, "alice@localhost/plain", carbons=False)
    b = login(srv, "bob@localhost/pc", carbons=False)
    res = a2.iq("set", "<disable xmlns='%s'/>" % NS_CARBONS)
    assert res.get("type") == "result", stanza_error(res)
    # §10.1: repeating is not an error
    res = a2.iq("set", "<disable xmlns='%s'/>" % NS_CARBONS)
    assert res.get("type") == "result", stanza_error(res)
    settle(a1, a2, a3, b)
    mid = send(b, a1.jid, "only for one")
    a1.expect(is_plain(mid), what="original")
    mid2 = send(a1, "bob@localhost", "sent by one")
    b.expect(is_plain(mid2))
    for s in (a2, a3):
        nothing(s, any_message)
    # sent copies happen whether or not the sender has carbons on
    mid3 = send(a3, "bob@localhost", "sent by plain")
    b.expect(is_plain(mid3))
    expect_carbon(a1, "sent", mid3)
    nothing(a2, any_message)
    # enable again
    res = a2.iq("set", "<enable xmlns='%s'/>" % NS_CARBONS)
    assert res.get("type") == "result"
    mid4 = send(b, a1.jid, "again")
    expect_carbon(a2, "received", mid4)
    for s in (a1, a2, a3, b):
        s.close()


def test_negative_priority_and_unavailable_resources(srv):
    a1 = login(srv, "alice@localhost/one")
    a2 = login(srv, "alice@localhost/low", priority=-1)
    a3 = login(srv, "alice@localhost/silent", presence=False)  # carbons on, no presence
    b = login(srv, "bob@localhost/pc", carbons=False)
    settle(a1, a2, a3, b)
    # to the bare JID: only non-negative priorities get the original
    mid = send(b, "alice@localhost", "to bare")
    a1.expect(is_plain(mid))
    inner = expect_carbon(a2, "received", mid)
    assert inner.get("to") == "alice@localhost"
    expect_carbon(a3, "received", mid)
    nothing(a1, is_carbon("received"))
    nothing(a2, is_plain(mid))
    # to a full JID, that resource gets it whatever its priority
    mid = send(b, a2.jid, "to low")
    a2.expect(is_plain(mid))
    expect_carbon(a1, "received", mid)
    expect_carbon(a3, "received", mid)
    nothing(a2, is_carbon("received"))
    # to a resource that does not exist: delivered as to the bare JID
    mid = send(b, "alice@localhost/gone", "to gone")
    a1.expect(is_plain(mid))
    expect_carbon(a2, "received", mid)
    nothing(a1, is_carbon("received"))
    for s in (a1, a2, a3, b):
        s.close()


def test_which_messages_are_copied(srv):
    a1 = login(srv, "alice@localhost/one")
    a2 = login(srv, "alice@localhost/two")
    b = login(srv, "bob@localhost/pc", carbons=False)
    settle(a1, a2, b)
    copied = [
        ("normal", "with body", ""),
        (None, "no type", ""),
        ("normal", None, "<received xmlns='urn:xmpp:receipts' id='x'/>"),
        ("normal", None, "<active xmlns='http://jabber.org/protocol/chatstates'/>"),
        ("normal", None, "<x xmlns='%s'><invite from='c@localhost'/></x>" % NS_MUC_USER),
        ("normal", None, "<x xmlns='jabber:x:conference' jid='room@muc.localhost'/>"),
    ]
    not_copied = [
        ("headline", "news", ""),
        ("normal", None, "<x xmlns='urn:example:other'/>"),
        ("chat", "muc pm", "<x xmlns='%s'/>" % NS_MUC_USER),  # received MUC-PM
        ("error", "err", ""),
    ]
    for type_, body, extra in copied:
        mid = send(b, a1.jid, body, type_=type_, extra=extra)
        a1.expect(is_plain(mid))
        expect_carbon(a2, "received", mid)
    for type_, body, extra in not_copied:
        mid = send(b, a1.jid, body, type_=type_, extra=extra)
        a1.expect(is_plain(mid), what="original %s" % mid)
    nothing(a2, any_message)
    # a MUC-PM the user sends is copied; carbons are never copied again
    mid = send(a1, "bob@localhost", "pm out", extra="<x xmlns='%s'/>" % NS_MUC_USER)
    expect_carbon(a2, "sent", mid)
    fake = ("<sent xmlns='%s'><forwarded xmlns='%s'><message xmlns='jabber:client' "
            "id='inner'/></forwarded></sent>" % (NS_CARBONS, NS_FORWARD))
    mid = send(b, a1.jid, "looks like a carbon", extra=fake)
    a1.expect(lambda e: e.get("id") == mid, what="the fake carbon itself")
    nothing(a2, any_message)
    for s in (a1, a2, b):
        s.close()


def test_messages_between_own_resources(tern):
    srv = tern()
    a1 = login(srv, "alice@localhost/one")
    a2 = login(srv, "alice@localhost/two")
    a3 = login(srv, "alice@localhost/three")
    settle(a1, a2, a3)
    mid = send(a1, a2.jid, "note to two")
    a2.expect(is_plain(mid))
    # one copy for the third resource, none back to the writer
    expect_carbon(a3, "received", mid)
    nothing(a3, lambda e: is_carbon("sent")(e) or is_carbon("received")(e))
    nothing(a1, any_message)
    for s in (a1, a2, a3):
        s.close()


def test_enable_rules(tern):
    srv = tern()
    a = login(srv, "alice@localhost/one", carbons=False, presence=False)
    res = a.iq("get", "<enable xmlns='%s'/>" % NS_CARBONS)
    assert stanza_error(res) == ("modify", "bad-request")
    res = a.iq("set", "<enable xmlns='%s'/>" % NS_CARBONS, to="bob@localhost")
    assert stanza_error(res) == ("cancel", "not-allowed")
    res = a.iq("set", "<enable xmlns='%s'/>" % NS_CARBONS, to="alice@localhost")
    assert res.get("type") == "result"
    a.close()


def test_slixmpp_carbons(tern):
    srv = tern()

    async def scenario():
        pw = srv.password("alice@localhost")
        a1 = await slix.connect(srv, "alice@localhost/one", pw, plugins=["xep_0280"])
        a2 = await slix.connect(srv, "alice@localhost/two", pw, plugins=["xep_0280"])
        b = await slix.connect(srv, "bob@localhost/pc", srv.password("bob@localhost"))
        try:
            copies = asyncio.Queue()
            a2.add_event_handler("carbon_received", lambda m: copies.put_nowait(
                ("received", m["carbon_received"])))
            a2.add_event_handler("carbon_sent", lambda m: copies.put_nowait(
                ("sent", m["carbon_sent"])))
            for c in (a1, a2):
                await c.plugin["xep_0280"].enable()
            for c in (a1, a2, b):
                c.send_presence()
            await asyncio.sleep(0.3)
            b.send_message(mto="alice@localhost/one", mbody="hi from bob", mtype="chat")
            m = await a1.next_message(pred=lambda m: m["body"] == "hi from bob")
            assert m["from"] == "bob@localhost/pc"
            kind, inner = await asyncio.wait_for(copies.get(), 10)
            assert kind == "received" and inner["body"] == "hi from bob"
            assert inner["from"] == "bob@localhost/pc" and inner["to"] == "alice@localhost/one"
            a1.send_message(mto="bob@localhost", mbody="hi from alice", mtype="chat")
            await b.next_message(pred=lambda m: m["body"] == "hi from alice")
            kind, inner = await asyncio.wait_for(copies.get(), 10)
            assert kind == "sent" and inner["body"] == "hi from alice"
            assert inner["to"] == "bob@localhost"
        finally:
            for c in (a1, a2, b):
                await c.close()

    slix.run(scenario())
