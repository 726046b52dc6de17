"""Blocking Command (XEP-0191) against a real server: the blocklist
protocol with exact pushes and errors from a raw client, what a block does
to stanzas in both directions, durability across a restart, and the happy
path with slixmpp's xep_0191 plugin."""

import asyncio

import pytest

import slix
from xmpp_raw import NS_CLIENT, NS_STANZAS, q, server_login, stanza_error

NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
NS_ROSTER = "jabber:iq:roster"
DISCO_INFO = "http://jabber.org/protocol/disco#info"


@pytest.fixture(params=[1, 2], ids=["1worker", "2workers"])
def srv(tern, request):
    return tern(workers=request.param)


def login(server, jid, presence=True, blocklist=True):
    """A raw session; blocklist=True asks for the list first, which makes
    the session one that receives pushes (§3.2)."""
    s = server_login(server, jid)
    if blocklist:
        items = get_blocklist(s)
        assert items is not None
    if presence:
        s.send_presence()
        s.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("from") == s.jid
                 and e.get("type") is None, what="own presence echo")
    return s


def get_blocklist(s):
    res = s.iq("get", "<blocklist xmlns='%s'/>" % NS_BLOCKING)
    assert res.get("type") == "result", stanza_error(res)
    bl = res.find(q(NS_BLOCKING, "blocklist"))
    assert bl is not None, "result without <blocklist/>"
    assert all(i.tag == q(NS_BLOCKING, "item") for i in bl)
    return sorted(i.get("jid") for i in bl)


def items_xml(jids):
    return "".join("<item jid='%s'/>" % j for j in jids)


def block(s, *jids):
    res = s.iq("set", "<block xmlns='%s'>%s</block>" % (NS_BLOCKING, items_xml(jids)))
    assert res.get("type") == "result", stanza_error(res)
    assert len(res) == 0, "block result with a payload"


def unblock(s, *jids):
    res = s.iq("set", "<unblock xmlns='%s'>%s</unblock>" % (NS_BLOCKING, items_xml(jids)))
    assert res.get("type") == "result", stanza_error(res)


def expect_push(s, kind, jids):
    """The next block/unblock push; checks its items and answers it."""
    el = s.expect(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("type") == "set"
                  and e.find(q(NS_BLOCKING, kind)) is not None, what="%s push" % kind)
    assert el.get("to") == s.jid
    assert el.get("from") in (None, s.jid.split("/")[0])
    got = sorted(i.get("jid") for i in el.find(q(NS_BLOCKING, kind)))
    assert got == sorted(jids), "%s push items %r, want %r" % (kind, got, jids)
    s.send("<iq type='result' id='%s'/>" % el.get("id"))
    return el


def no_stanza(s, pred, wait=0.8):
    s.pump(wait)
    bad = [e for e in s.pending if pred(e)]
    assert not bad, "unexpected: %r" % [(e.tag, e.attrib) for e in bad]


def is_msg(body):
    return lambda e: e.tag == q(NS_CLIENT, "message") and e.findtext(q(NS_CLIENT, "body")) == body


def expect_error(s, kind, id_, etype, cond):
    el = s.expect(lambda e: e.tag == q(NS_CLIENT, kind) and e.get("id") == id_
                  and e.get("type") == "error", what="%s error %s" % (kind, id_))
    assert stanza_error(el) == (etype, cond), stanza_error(el)
    return el


def exchange_ok(a, b, body):
    """a's message reaches b."""
    a.send_message(b.jid, body)
    m = b.expect_message(pred=lambda e: e.findtext(q(NS_CLIENT, "body")) == body)
    assert m.get("type") == "chat"


def test_disco_advertises_blocking(tern):
    srv = tern()
    s = login(srv, "alice@localhost/one", presence=False, blocklist=False)
    for to in ("localhost", "alice@localhost"):
        res = s.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to=to)
        assert res.get("type") == "result", stanza_error(res)
        feats = {f.get("var") for f in res.find(q(DISCO_INFO, "query"))
                 if f.tag == q(DISCO_INFO, "feature")}
        assert NS_BLOCKING in feats, (to, feats)
    s.close()


def test_block_and_unblock_contact(srv):
    a1 = login(srv, "alice@localhost/one")
    a2 = login(srv, "alice@localhost/two")
    a3 = login(srv, "alice@localhost/quiet", blocklist=False)  # never asked: no pushes
    b = login(srv, "bob@localhost/pc", blocklist=False)
    assert get_blocklist(a1) == []
    exchange_ok(b, a1, "before")

    block(a1, "bob@localhost")
    expect_push(a1, "block", ["bob@localhost"])
    expect_push(a2, "block", ["bob@localhost"])
    assert get_blocklist(a2) == ["bob@localhost"]

    # §3.3 inbound: a message is answered service-unavailable, not delivered
    mid = b.send_message(a1.jid, "blocked message")
    expect_error(b, "message", mid, "cancel", "service-unavailable")
    # ... to the bare JID as well
    mid = b.send_message("alice@localhost", "blocked bare")
    expect_error(b, "message", mid, "cancel", "service-unavailable")
    # presence vanishes without an error
    b.send_presence(to="alice@localhost")
    b.send_presence(to=a1.jid)
    # an iq get/set to a resource: service-unavailable
    res = b.iq("get", "<query xmlns='jabber:iq:version'/>", to=a1.jid)
    assert res.get("from") == a1.jid
    assert stanza_error(res) == ("cancel", "service-unavailable")
    for s in (a1, a2, a3):
        no_stanza(s, lambda e: e.tag != q(NS_CLIENT, "iq") and e.get("from", "").startswith("bob@"))
        no_stanza(s, lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("from", "").startswith("bob@"))
    no_stanza(b, lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") == "error")

    # §3.3 outbound: not-acceptable + <blocked/> to the sender, nothing routed
    mid = a2.send_message("bob@localhost", "can you hear me")
    err = expect_error(a2, "message", mid, "cancel", "not-acceptable")
    assert err.get("from") == "bob@localhost" and err.get("to") == a2.jid
    assert err.find(q(NS_CLIENT, "error")).find(q(NS_BLOCKING_ERRORS, "blocked")) is not None
    assert err.findtext(q(NS_CLIENT, "body")) == "can you hear me"
    res = a1.iq("get", "<query xmlns='jabber:iq:version'/>", to=b.jid)
    assert stanza_error(res) == ("cancel", "not-acceptable")
    assert res.find(q(NS_CLIENT, "error")).find(q(NS_BLOCKING_ERRORS, "blocked")) is not None
    a1.send_presence(to=b.jid, extra="<status>directed</status>")
    perr = a1.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") == "error",
                     what="presence error")
    assert stanza_error(perr) == ("cancel", "not-acceptable")
    no_stanza(b, lambda e: e.get("from", "").startswith("alice@localhost"))

    # the user's own resources are never blocked
    exchange_ok(a1, a2, "to myself")

    unblock(a2, "bob@localhost")
    expect_push(a1, "unblock", ["bob@localhost"])
    expect_push(a2, "unblock", ["bob@localhost"])
    assert get_blocklist(a1) == []
    no_stanza(a3, lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("type") == "set")
    exchange_ok(b, a1, "after unblock")
    exchange_ok(a2, b, "answer after unblock")
    for s in (a1, a2, a3, b):
        s.close()


def test_unblock_all(srv):
    a = login(srv, "alice@localhost/one")
    b = login(srv, "bob@localhost/pc", blocklist=False)
    c = login(srv, "carol@localhost/pc", blocklist=False)
    block(a, "bob@localhost", "carol@localhost")
    expect_push(a, "block", ["bob@localhost", "carol@localhost"])
    assert get_blocklist(a) == ["bob@localhost", "carol@localhost"]
    mid = c.send_message(a.jid, "from carol")
    expect_error(c, "message", mid, "cancel", "service-unavailable")
    # §3.5: an empty <unblock/> empties the list, and the push is empty too
    unblock(a)
    push = expect_push(a, "unblock", [])
    assert len(push.find(q(NS_BLOCKING, "unblock"))) == 0
    assert get_blocklist(a) == []
    exchange_ok(b, a, "bob again")
    exchange_ok(c, a, "carol again")
    for s in (a, b, c):
        s.close()


def test_domain_and_full_jid_items(srv):
    a = login(srv, "alice@localhost/one")
    b1 = login(srv, "bob@localhost/one", blocklist=False)
    b2 = login(srv, "bob@localhost/two", blocklist=False)
    d = login(srv, "dave@example.org/pc", blocklist=False)
    x = login(srv, "alice@example.org/pc", blocklist=False)
    c = login(srv, "carol@localhost/pc", blocklist=False)
    # items are normalised like any JID (case of local and domain)
    block(a, "EXAMPLE.org", "Bob@LocalHost/one")
    expect_push(a, "block", ["example.org", "bob@localhost/one"])
    assert get_blocklist(a) == ["bob@localhost/one", "example.org"]
    # a domain item covers every account of that domain
    for s in (d, x):
        mid = s.send_message(a.jid, "from example.org")
        expect_error(s, "message", mid, "cancel", "service-unavailable")
        mid = a.send_message(s.jid, "to example.org")
        expect_error(a, "message", mid, "cancel", "not-acceptable")
    # a full JID item covers that resource only
    mid = b1.send_message(a.jid, "from bob/one")
    expect_error(b1, "message", mid, "cancel", "service-unavailable")
    exchange_ok(b2, a, "from bob/two")
    mid = a.send_message(b1.jid, "to bob/one")
    expect_error(a, "message", mid, "cancel", "not-acceptable")
    exchange_ok(a, b2, "to bob/two")
    # the rest of localhost is not affected
    exchange_ok(c, a, "from carol")
    exchange_ok(a, c, "to carol")
    # the home server stays reachable even with its own domain blocked
    block(a, "localhost")
    expect_push(a, "block", ["localhost"])
    res = a.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to="localhost")
    assert res.get("type") == "result", stanza_error(res)
    mid = c.send_message(a.jid, "now blocked")
    expect_error(c, "message", mid, "cancel", "service-unavailable")
    for s in (a, b1, b2, d, x, c):
        s.close()


def test_invalid_requests(tern):
    srv = tern()
    a = login(srv, "alice@localhost/one")

    def err(payload, to=None, type_="set"):
        res = a.iq(type_, payload, to=to)
        assert res.get("type") == "error", "accepted: %s" % payload
        return stanza_error(res)

    # §3.3: a block without items is bad-request
    assert err("<block xmlns='%s'/>" % NS_BLOCKING) == ("modify", "bad-request")
    # an item without 'jid' breaks the schema
    assert err("<block xmlns='%s'><item/></block>" % NS_BLOCKING) == ("modify", "bad-request")
    assert err("<unblock xmlns='%s'><item/></unblock>" % NS_BLOCKING) == ("modify", "bad-request")
    # invalid JIDs
    for bad in ("@localhost", "bob@", "localhost/", "a@b@c", "bob@local host", ""):
        assert err("<block xmlns='%s'><item jid='%s'/></block>" % (NS_BLOCKING, bad)) == \
            ("modify", "jid-malformed"), bad
        assert err("<unblock xmlns='%s'><item jid='%s'/></unblock>" % (NS_BLOCKING, bad)) == \
            ("modify", "jid-malformed"), bad
    # nothing was stored by any of these, and no push went out
    assert get_blocklist(a) == []
    no_stanza(a, lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("type") == "set")
    # one bad item spoils the whole request
    assert err("<block xmlns='%s'><item jid='bob@localhost'/><item jid='@x'/></block>"
               % NS_BLOCKING) == ("modify", "jid-malformed")
    assert get_blocklist(a) == []
    # wrong iq types
    assert err("<blocklist xmlns='%s'/>" % NS_BLOCKING) == ("modify", "bad-request")
    assert err("<block xmlns='%s'><item jid='bob@localhost'/></block>" % NS_BLOCKING,
               type_="get") == ("modify", "bad-request")
    # another account's list is not ours to read or change
    assert err("<blocklist xmlns='%s'/>" % NS_BLOCKING, to="bob@localhost", type_="get") == \
        ("auth", "forbidden")
    assert err("<block xmlns='%s'><item jid='carol@localhost'/></block>" % NS_BLOCKING,
               to="bob@localhost") == ("auth", "forbidden")
    # an explicit 'to' of one's own bare JID is the same as none
    res = a.iq("get", "<blocklist xmlns='%s'/>" % NS_BLOCKING, to="alice@localhost")
    assert res.get("type") == "result", stanza_error(res)
    a.close()


def test_blocklist_size_limit(tern):
    srv = tern(hosts={"localhost": {"registration": "no", "blocklist_max_items": "2"},
                      "example.org": {}})
    a = login(srv, "alice@localhost/one")
    res = a.iq("set", "<block xmlns='%s'>%s</block>"
               % (NS_BLOCKING, items_xml(["x1@localhost", "x2@localhost", "x3@localhost"])))
    assert stanza_error(res) == ("modify", "policy-violation")
    block(a, "x1@localhost", "x2@localhost")
    expect_push(a, "block", ["x1@localhost", "x2@localhost"])
    # blocking again what is there does not grow the list
    block(a, "x2@localhost")
    expect_push(a, "block", ["x2@localhost"])
    res = a.iq("set", "<block xmlns='%s'><item jid='x3@localhost'/></block>" % NS_BLOCKING)
    assert stanza_error(res) == ("modify", "policy-violation")
    # refused as a whole: nothing written, nothing pushed
    assert get_blocklist(a) == ["x1@localhost", "x2@localhost"]
    no_stanza(a, lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("type") == "set")
    unblock(a, "x1@localhost")
    expect_push(a, "unblock", ["x1@localhost"])
    block(a, "x3@localhost")
    expect_push(a, "block", ["x3@localhost"])
    assert get_blocklist(a) == ["x2@localhost", "x3@localhost"]
    a.close()


def test_blocklist_survives_restart_and_applies_at_once(tern):
    srv = tern()
    a = login(srv, "alice@localhost/one")
    block(a, "bob@localhost", "example.org")
    expect_push(a, "block", ["bob@localhost", "example.org"])
    a.close()
    assert srv.shutdown() == 0
    srv.start()
    # alice is offline and nothing is cached: the first stanza waits for
    # the list and is refused, not stored offline
    b = login(srv, "bob@localhost/pc", blocklist=False)
    for i in range(3):
        mid = b.send_message("alice@localhost", "offline %d" % i)
        expect_error(b, "message", mid, "cancel", "service-unavailable")
    # a freshly bound session is checked from its first stanza on
    a = server_login(srv, "alice@localhost/two")
    mid = a.send_message("bob@localhost", "first stanza")
    expect_error(a, "message", mid, "cancel", "not-acceptable")
    assert get_blocklist(a) == ["bob@localhost", "example.org"]
    a.send_presence()
    c = login(srv, "carol@localhost/pc", blocklist=False)
    exchange_ok(c, a, "carol passes")
    for s in (a, b, c):
        s.close()


def test_queued_stanzas_keep_their_order(tern):
    """Messages to an account whose list is being loaded wait in a queue
    and come out in arrival order (here into offline storage)."""
    srv = tern()
    a = login(srv, "alice@localhost/one")
    block(a, "dave@example.org")
    expect_push(a, "block", ["dave@example.org"])
    a.close()
    assert srv.shutdown() == 0
    srv.start()
    b = login(srv, "bob@localhost/pc", blocklist=False)
    d = login(srv, "dave@example.org/pc", blocklist=False)
    ids = []
    # one write, so the server sees them back to back while loading
    payload = "".join("<message to='alice@localhost' type='chat' id='m%d'><body>n%d</body>"
                      "</message>" % (i, i) for i in range(20))
    b.send(payload)
    mid = d.send_message("alice@localhost", "from dave")
    expect_error(d, "message", mid, "cancel", "service-unavailable")
    no_stanza(b, lambda e: e.get("type") == "error")
    a = login(srv, "alice@localhost/one")
    got = []
    for _ in range(20):
        m = a.expect_message(pred=lambda e: e.get("from", "").startswith("bob@localhost"))
        got.append(m.findtext(q(NS_CLIENT, "body")))
        ids.append(m.get("id"))
    assert got == ["n%d" % i for i in range(20)]
    no_stanza(a, lambda e: e.tag == q(NS_CLIENT, "message") and
              e.get("from", "").startswith("dave@"))
    for s in (a, b, d):
        s.close()


def subscribe_both(a, b):
    """a and b subscribe to each other (RFC 6121 §3); only what this test
    needs is checked."""
    a_bare, b_bare = a.jid.split("/")[0], b.jid.split("/")[0]
    for x, y, y_bare, x_bare in ((a, b, b_bare, a_bare), (b, a, a_bare, b_bare)):
        x.send_presence(to=y_bare, type_="subscribe")
        y.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") == "subscribe"
                 and e.get("from") == x_bare, what="subscribe from %s" % x_bare)
        y.send_presence(to=x_bare, type_="subscribed")
        x.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") is None
                 and e.get("from") == y.jid, what="presence of %s" % y.jid)


def test_block_sends_unavailable_and_unblock_presence(srv):
    a = login(srv, "alice@localhost/one")
    b = login(srv, "bob@localhost/pc", blocklist=False)
    for s in (a, b):
        res = s.iq("get", "<query xmlns='%s'/>" % NS_ROSTER)
        assert res.get("type") == "result", stanza_error(res)
    subscribe_both(a, b)
    b.pump(0.5)
    b.pending.clear()
    block(a, "bob@localhost")
    # §3.3: bob, a subscriber, sees alice go offline
    b.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") == "unavailable"
             and e.get("from") == a.jid, what="unavailable from alice")
    # bob's presence no longer reaches alice
    a.pump(0.3)
    a.pending.clear()
    b.send_presence(extra="<show>away</show>")
    no_stanza(a, lambda e: e.tag == q(NS_CLIENT, "presence") and
              e.get("from", "").startswith("bob@"))
    # §3.4: unblocking tells bob alice's current presence
    unblock(a, "bob@localhost")
    b.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") is None
             and e.get("from") == a.jid, what="presence from alice after unblock")
    # ... and alice, subscribed to bob, learns bob's current presence again
    p = a.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") is None
                 and e.get("from") == b.jid, what="bob's presence after unblock")
    assert p.findtext(q(NS_CLIENT, "show")) == "away"
    for s in (a, b):
        s.close()


def test_blocked_contact_gets_no_broadcast_and_no_account_answers(srv):
    """While blocked, a subscribed contact receives none of the user's
    presence changes (the roster's fan-out honours the list), and its
    iqs to the user's bare JID (vCard, last activity) are refused as if
    the account did not serve it."""
    a = login(srv, "alice@localhost/one")
    b = login(srv, "bob@localhost/pc", blocklist=False)
    for s in (a, b):
        assert s.iq("get", "<query xmlns='%s'/>" % NS_ROSTER).get("type") == "result"
    subscribe_both(a, b)
    block(a, "bob@localhost")
    b.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") == "unavailable"
             and e.get("from") == a.jid, what="unavailable from alice")
    a.send_presence(extra="<status>busy</status>")
    no_stanza(b, lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") is None
              and e.get("from", "").startswith("alice@"))
    # a second resource of alice logs in: no presence, no probe answer for bob
    a2 = login(srv, "alice@localhost/two")
    no_stanza(b, lambda e: e.tag == q(NS_CLIENT, "presence") and
              e.get("from", "").startswith("alice@") and e.get("type") is None)
    for payload in ("<vCard xmlns='vcard-temp'/>", "<query xmlns='jabber:iq:last'/>"):
        res = b.iq("get", payload, to="alice@localhost")
        assert stanza_error(res)[:2] == ("cancel", "service-unavailable"), payload
    for s in (a, a2, b):
        s.close()


def test_slixmpp_blocking(tern):
    srv = tern()

    async def scenario():
        a1 = await slix.connect(srv, "alice@localhost/one", srv.password("alice@localhost"),
                                plugins=["xep_0191"])
        a2 = await slix.connect(srv, "alice@localhost/two", srv.password("alice@localhost"),
                                plugins=["xep_0191"])
        b = await slix.connect(srv, "bob@localhost/pc", srv.password("bob@localhost"))
        try:
            pushes = asyncio.Queue()
            a2.add_event_handler("blocked", lambda iq: pushes.put_nowait(
                ("blocked", set(str(j) for j in iq["block"]["items"]))))
            a2.add_event_handler("unblocked", lambda iq: pushes.put_nowait(
                ("unblocked", set(str(j) for j in iq["unblock"]["items"]))))
            for c in (a1, a2):
                res = await c.plugin["xep_0191"].get_blocked()
                assert res["blocklist"]["items"] == set()
                c.send_presence()
            await a1.plugin["xep_0191"].block("bob@localhost")
            assert await asyncio.wait_for(pushes.get(), 10) == ("blocked", {"bob@localhost"})
            res = await a2.plugin["xep_0191"].get_blocked()
            assert {str(j) for j in res["blocklist"]["items"]} == {"bob@localhost"}
            b.send_message(mto="alice@localhost/one", mbody="hidden", mtype="chat")
            err = await b.next_message(pred=lambda m: m["type"] == "error")
            assert err["error"]["condition"] == "service-unavailable"
            await a1.no_message(1.0, pred=lambda m: m["body"] == "hidden")
            await a1.plugin["xep_0191"].unblock("bob@localhost")
            assert await asyncio.wait_for(pushes.get(), 10) == ("unblocked", {"bob@localhost"})
            b.send_message(mto="alice@localhost/one", mbody="visible", mtype="chat")
            m = await a1.next_message(pred=lambda m: m["body"] == "visible")
            assert m["from"].bare == "bob@localhost"
        finally:
            for c in (a1, a2, b):
                await c.close()

    slix.run(scenario())
