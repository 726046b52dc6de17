"""Rosters, presence subscriptions and presence (RFC 6121 §2-§4) against a
real server: exact roster pushes and presence stanzas with a raw client,
and the whole handshake with slixmpp's roster support."""

import asyncio

import pytest

import slix
from xmpp_raw import NS_CLIENT, q, server_login, stanza_error

NS_ROSTER = "jabber:iq:roster"


@pytest.fixture(params=[1, 2], ids=["1worker", "2workers"])
def srv(tern, request):
    return tern(workers=request.param)


def login(server, jid, presence=True, roster=True, priority=None):
    s = server_login(server, jid)
    if roster:
        res = s.iq("get", "<query xmlns='%s'/>" % NS_ROSTER)
        assert res.get("type") == "result", stanza_error(res)
    if presence:
        extra = "<priority>%d</priority>" % priority if priority is not None else ""
        s.send_presence(extra=extra)
        s.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("from") == s.jid
                 and e.get("type") is None, what="own presence echo")
    return s


def roster_items(s, ver=None):
    payload = "<query xmlns='%s'%s/>" % (NS_ROSTER, " ver='%s'" % ver if ver is not None else "")
    res = s.iq("get", payload)
    assert res.get("type") == "result", stanza_error(res)
    query = res.find(q(NS_ROSTER, "query"))
    if query is None:
        return None, None
    items = {i.get("jid"): i for i in query.findall(q(NS_ROSTER, "item"))}
    return items, query.get("ver")


def is_push(el):
    return el.tag == q(NS_CLIENT, "iq") and el.get("type") == "set" and \
        el.find(q(NS_ROSTER, "query")) is not None


def expect_push(s, jid, **attrs):
    """The next roster push for jid; checks its item's attributes (None =
    absent) and answers it as RFC 6121 §2.1.6 asks."""
    el = s.expect(lambda e: is_push(e) and
                  e.find(q(NS_ROSTER, "query")).find(q(NS_ROSTER, "item")).get("jid") == jid,
                  what="roster push for %s" % jid)
    query = el.find(q(NS_ROSTER, "query"))
    assert query.get("ver"), "roster push without a version"
    item = query.find(q(NS_ROSTER, "item"))
    for k, v in attrs.items():
        assert item.get(k) == v, "push for %s: %s=%r, want %r" % (jid, k, item.get(k), v)
    s.send("<iq type='result' id='%s'/>" % el.get("id"))
    return item, query.get("ver")


def expect_presence(s, from_=None, type_=None, what=None):
    def match(e):
        if e.tag != q(NS_CLIENT, "presence") or e.get("type") != type_:
            return False
        return from_ is None or e.get("from") == from_ or e.get("from", "").startswith(from_ + "/")
    return s.expect(match, what=what or "presence type=%s from %s" % (type_, from_))


def no_stanza(s, pred, wait=0.7):
    s.pump(wait)
    bad = [e for e in s.pending if pred(e)]
    assert not bad, "unexpected: %r" % [(e.tag, e.attrib) for e in bad]


def subscribe_both(a, b, a_bare, b_bare):
    """a and b subscribe to each other; every push and presence checked."""
    a.send_presence(to=b_bare, type_="subscribe")
    expect_push(a, b_bare, subscription="none", ask="subscribe")
    req = expect_presence(b, a_bare, "subscribe")
    assert req.get("from") == a_bare and req.get("to") == b_bare
    b.send_presence(to=a_bare, type_="subscribed")
    expect_push(b, a_bare, subscription="from", ask=None)
    expect_push(a, b_bare, subscription="to", ask=None)
    expect_presence(a, b_bare, "subscribed")
    expect_presence(a, b_bare, None, "b's presence after approval")
    b.send_presence(to=a_bare, type_="subscribe")
    expect_push(b, a_bare, subscription="from", ask="subscribe")
    expect_presence(a, b_bare, "subscribe")
    a.send_presence(to=b_bare, type_="subscribed")
    expect_push(a, b_bare, subscription="both")
    expect_push(b, a_bare, subscription="both", ask=None)
    expect_presence(b, a_bare, "subscribed")
    expect_presence(b, a_bare, None, "a's presence after approval")


def test_roster_set_get_remove_with_pushes_and_versions(srv):
    a1 = login(srv, "alice@localhost/one", presence=False)
    a2 = login(srv, "alice@localhost/two", presence=False)
    items, ver0 = roster_items(a1)
    assert items == {}
    res = a1.iq("set", "<query xmlns='%s'><item jid='bob@localhost' name='Bob'>"
                "<group>Friends</group><group>Work</group></item></query>" % NS_ROSTER)
    assert res.get("type") == "result", stanza_error(res)
    for s in (a1, a2):
        item, ver1 = expect_push(s, "bob@localhost", name="Bob", subscription="none")
        assert sorted(g.text for g in item.findall(q(NS_ROSTER, "group"))) == ["Friends", "Work"]
    assert ver1 != ver0
    items, ver = roster_items(a1)
    assert set(items) == {"bob@localhost"} and ver == ver1
    # §2.6.3: the same version means nothing changed: an empty result
    assert roster_items(a1, ver=ver1) == (None, None)
    items, _ = roster_items(a1, ver="stale")
    assert set(items) == {"bob@localhost"}
    # an update replaces name and groups, keeps the subscription
    a1.iq("set", "<query xmlns='%s'><item jid='bob@localhost'/></query>" % NS_ROSTER)
    item, _ = expect_push(a2, "bob@localhost", name=None, subscription="none")
    assert item.findall(q(NS_ROSTER, "group")) == []
    res = a1.iq("set", "<query xmlns='%s'><item jid='bob@localhost' subscription='remove'/>"
                "</query>" % NS_ROSTER)
    assert res.get("type") == "result"
    expect_push(a2, "bob@localhost", subscription="remove")
    assert roster_items(a1)[0] == {}
    res = a1.iq("set", "<query xmlns='%s'><item jid='bob@localhost' subscription='remove'/>"
                "</query>" % NS_ROSTER)
    assert stanza_error(res)[:2] == ("cancel", "item-not-found")
    for s in (a1, a2):
        s.close()


@pytest.mark.parametrize("payload,etype,cond", [
    ("<item jid='a@localhost'/><item jid='b@localhost'/>", "modify", "bad-request"),
    ("<item name='x'/>", "modify", "bad-request"),
    ("<item jid='@@bad'/>", "modify", "jid-malformed"),
    ("<item jid='b@localhost'><group>g</group><group>g</group></item>", "modify", "bad-request"),
    ("<item jid='b@localhost'><group></group></item>", "modify", "not-acceptable"),
    ("<item jid='b@localhost' name='%s'/>" % ("n" * 2000), "modify", "not-acceptable"),
    ("<item jid='alice@localhost'/>", "cancel", "not-allowed"),
])
def test_roster_set_errors_change_nothing(tern, payload, etype, cond):
    srv = tern()
    s = login(srv, "alice@localhost/x", presence=False)
    res = s.iq("set", "<query xmlns='%s'>%s</query>" % (NS_ROSTER, payload))
    assert stanza_error(res)[:2] == (etype, cond)
    assert roster_items(s)[0] == {}
    s.close()


def test_roster_of_another_user_is_forbidden(tern):
    srv = tern()
    s = login(srv, "alice@localhost/x", presence=False)
    res = s.iq("get", "<query xmlns='%s'/>" % NS_ROSTER, to="bob@localhost")
    assert stanza_error(res)[:2] == ("auth", "forbidden")
    s.close()


def test_roster_size_limit(tern):
    srv = tern(hosts={"localhost": {"max_roster_items": "2"}, "example.org": {}})
    s = login(srv, "alice@localhost/x", presence=False)
    for c in ("c1@localhost", "c2@localhost"):
        res = s.iq("set", "<query xmlns='%s'><item jid='%s'/></query>" % (NS_ROSTER, c))
        assert res.get("type") == "result"
    res = s.iq("set", "<query xmlns='%s'><item jid='c3@localhost'/></query>" % NS_ROSTER)
    assert stanza_error(res)[:2] == ("cancel", "not-allowed")
    # updating an existing item is still allowed
    res = s.iq("set", "<query xmlns='%s'><item jid='c1@localhost' name='x'/></query>" % NS_ROSTER)
    assert res.get("type") == "result"
    assert set(roster_items(s)[0]) == {"c1@localhost", "c2@localhost"}
    s.close()


def test_subscription_handshake_and_presence(srv):
    a = login(srv, "alice@localhost/a")
    b = login(srv, "bob@localhost/b")
    subscribe_both(a, b, "alice@localhost", "bob@localhost")
    items, _ = roster_items(a)
    assert items["bob@localhost"].get("subscription") == "both"
    # a presence change reaches the contact
    b.send_presence(extra="<show>away</show><status>lunch</status>")
    p = a.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("from") == "bob@localhost/b"
                 and e.findtext(q(NS_CLIENT, "status")) == "lunch", what="bob's update")
    assert p.get("type") is None and p.find("{urn:xmpp:delay}delay") is None
    # a new resource of alice learns bob's presence through the probe
    a2 = login(srv, "alice@localhost/a2")
    p = expect_presence(a2, "bob@localhost/b", None, "probe answer")
    assert p.findtext(q(NS_CLIENT, "show")) == "away"
    # stored presence says when it was set (XEP-0203)
    delay = p.find("{urn:xmpp:delay}delay")
    assert delay is not None and delay.get("from") == "localhost" and delay.get("stamp")
    # disconnecting without goodbye: contacts hear unavailable
    b.close()
    expect_presence(a, "bob@localhost/b", "unavailable")
    expect_presence(a2, "bob@localhost/b", "unavailable")
    a.close()
    a2.close()


def test_unsubscribe_and_cancel(srv):
    a = login(srv, "alice@localhost/a")
    b = login(srv, "bob@localhost/b")
    subscribe_both(a, b, "alice@localhost", "bob@localhost")
    # alice stops receiving bob's presence (§3.3)
    a.send_presence(to="bob@localhost", type_="unsubscribe")
    expect_push(a, "bob@localhost", subscription="from")
    expect_presence(b, "alice@localhost", "unsubscribe")
    expect_push(b, "alice@localhost", subscription="to")
    expect_presence(a, "bob@localhost/b", "unavailable")
    # bob cancels alice's... nothing left from bob's side: bob cancels what
    # alice still has (her presence to bob): §3.2 from the subscriber side
    a.send_presence(to="bob@localhost", type_="unsubscribed")
    expect_push(a, "bob@localhost", subscription="none")
    expect_presence(b, "alice@localhost", "unsubscribed")
    expect_push(b, "alice@localhost", subscription="none")
    expect_presence(b, "alice@localhost/a", "unavailable")
    # no presence flows any more
    a.send_presence(extra="<status>again</status>")
    no_stanza(b, lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") is None and
              e.get("from", "").startswith("alice@"))
    a.close()
    b.close()


def test_denied_request_leaves_no_subscription(srv):
    a = login(srv, "alice@localhost/a")
    b = login(srv, "bob@localhost/b")
    a.send_presence(to="bob@localhost", type_="subscribe")
    expect_push(a, "bob@localhost", ask="subscribe")
    expect_presence(b, "alice@localhost", "subscribe")
    b.send_presence(to="alice@localhost", type_="unsubscribed")
    expect_presence(a, "bob@localhost", "unsubscribed")
    expect_push(a, "bob@localhost", subscription="none", ask=None)
    # bob's roster never got an item for the request (§3.1.3)
    assert roster_items(b)[0] == {}
    a.close()
    b.close()


def test_pending_request_delivered_at_next_login(srv):
    a = login(srv, "alice@localhost/a")
    a.send_presence(to="carol@localhost", type_="subscribe", extra="<status>hi carol</status>")
    expect_push(a, "carol@localhost", ask="subscribe")
    c = login(srv, "carol@localhost/c")
    req = expect_presence(c, "alice@localhost", "subscribe", "stored request at login")
    assert req.findtext(q(NS_CLIENT, "status")) == "hi carol"
    c.send_presence(to="alice@localhost", type_="subscribed")
    expect_push(a, "carol@localhost", subscription="to")
    expect_presence(a, "carol@localhost/c", None, "carol's presence")
    c.close()
    # answered requests are not redelivered
    c = login(srv, "carol@localhost/c2")
    no_stanza(c, lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") == "subscribe")
    a.close()
    c.close()


def test_pre_approval(srv):
    b = login(srv, "bob@localhost/b")
    b.send_presence(to="alice@localhost", type_="subscribed")
    expect_push(b, "alice@localhost", subscription="none", approved="true")
    a = login(srv, "alice@localhost/a")
    a.send_presence(to="bob@localhost", type_="subscribe")
    expect_push(a, "bob@localhost", ask="subscribe")
    # no request reaches bob: it is answered from the pre-approval (§3.4)
    expect_push(a, "bob@localhost", subscription="to")
    expect_push(b, "alice@localhost", subscription="from", approved=None)
    expect_presence(a, "bob@localhost/b", None)
    no_stanza(b, lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") == "subscribe")
    a.close()
    b.close()


def test_subscription_to_unknown_account_is_refused(srv):
    a = login(srv, "alice@localhost/a")
    a.send_presence(to="nobody@localhost", type_="subscribe")
    expect_push(a, "nobody@localhost", ask="subscribe")
    expect_presence(a, "nobody@localhost", "unsubscribed")
    expect_push(a, "nobody@localhost", subscription="none", ask=None)
    a.close()


def test_probe_from_non_subscriber_reveals_nothing(srv):
    b = login(srv, "bob@localhost/b")
    a = login(srv, "alice@localhost/a")
    a.send_presence(to="bob@localhost", type_="probe")
    # the answer is an unsubscribed that alice's server consumes (she has
    # no subscription to cancel): nothing at all reaches her client
    no_stanza(a, lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") is None
              and e.get("from", "").startswith("bob@"))
    a.close()
    b.close()


def test_roster_survives_kill(srv):
    a = login(srv, "alice@localhost/a")
    b = login(srv, "bob@localhost/b")
    subscribe_both(a, b, "alice@localhost", "bob@localhost")
    res = a.iq("set", "<query xmlns='%s'><item jid='bob@localhost' name='B'>"
               "<group>G</group></item></query>" % NS_ROSTER)
    assert res.get("type") == "result"
    a.close()
    b.close()
    srv.crash()
    srv.start()
    a = login(srv, "alice@localhost/a", presence=False)
    items, _ = roster_items(a)
    item = items["bob@localhost"]
    assert (item.get("subscription"), item.get("name")) == ("both", "B")
    assert [g.text for g in item.findall(q(NS_ROSTER, "group"))] == ["G"]
    a.close()


def test_slixmpp_subscription_and_presence(srv):
    """slixmpp's own roster handling: request, auto-approval by the
    contact's client, and the resulting presence."""
    async def go():
        a = await slix.connect(srv, "alice@localhost/sa", srv.password("alice@localhost"))
        b = await slix.connect(srv, "bob@localhost/sb", srv.password("bob@localhost"))
        b.auto_authorize = True
        b.auto_subscribe = True
        await a.get_roster()
        await b.get_roster()
        a.send_presence()
        b.send_presence()
        a.send_presence(pto="bob@localhost", ptype="subscribe")
        # bob's client approves and subscribes back (auto_subscribe)
        for _ in range(100):
            if a.client_roster["bob@localhost"]["subscription"] == "both" and \
                    b.client_roster["alice@localhost"]["subscription"] == "both":
                break
            await asyncio.sleep(0.1)
        assert a.client_roster["bob@localhost"]["subscription"] == "both"
        assert b.client_roster["alice@localhost"]["subscription"] == "both"
        for _ in range(100):
            if a.client_roster["bob@localhost"].resources:
                break
            await asyncio.sleep(0.1)
        assert "sb" in a.client_roster["bob@localhost"].resources
        await a.close()
        await b.close()
    slix.run(go())
