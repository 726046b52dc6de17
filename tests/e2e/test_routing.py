"""Stanza routing between local users (RFC 6120 §8/§10, RFC 6121 §4.6/§8),
server-answered iqs (XEP-0030, XEP-0199, XEP-0092, XEP-0202) and virtual
hosts. Rosters are not implemented yet: presence tests cover only the
self-echo of initial presence and directed presence."""

import asyncio
import datetime
import re
import xml.etree.ElementTree as ET

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import slix
import xmpp_raw as X
from xmpp_raw import NS_CLIENT, q, server_login

DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


@pytest.fixture(scope="module", params=[1, 2], ids=["1worker", "2workers"])
def server(tern_module, request):
    """Every routing rule runs with one event loop and with two, where an
    account's sessions live on the worker its bare JID hashes to and
    stanzas between accounts on different workers cross an inbox."""
    return tern_module(workers=request.param)


def pw(server, jid):
    return server.password(jid)


async def login(server, jid, **kw):
    bare = jid.split("/")[0]
    return await slix.connect(server, jid, server.password(bare), **kw)


async def close_all(*clients):
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def send_iq(client, to, type_, payload, timeout=10):
    """Sends an iq; returns the response (result or error) stanza."""
    iq = client.Iq()
    iq["type"] = type_
    iq["to"] = to
    if payload:
        iq.append(ET.fromstring(payload))
    try:
        return await iq.send(timeout=timeout)
    except slix.IqError as e:
        return e.iq


async def available(client, priority=None):
    """Sends initial presence and waits for its echo (RFC 6121 §4.2.2)."""
    client.send_presence(ppriority=priority)
    p = await client.next_presence(pred=lambda p: p["from"] == client.boundjid)
    return p


# ------------------------------------------------------------- messages

def test_message_to_full_jid(server):
    async def main():
        a = await login(server, "alice@localhost/desk")
        b = await login(server, "bob@localhost/phone")
        try:
            m = a.make_message(mto="bob@localhost/phone", mbody="hello bob", mtype="chat")
            m["id"] = "msg-full-1"
            m.send()
            got = await b.next_message()
            assert got["from"] == a.boundjid
            assert got["to"] == b.boundjid
            assert got["body"] == "hello bob"
            assert got["type"] == "chat"
            assert got["id"] == "msg-full-1"
        finally:
            await close_all(a, b)
    slix.run(main())


def test_message_to_bare_jid(server):
    async def main():
        a = await login(server, "alice@localhost/desk")
        b = await login(server, "bob@localhost/phone")
        try:
            await available(b)
            a.send_message(mto="bob@localhost", mbody="to your bare jid", mtype="chat")
            got = await b.next_message()
            assert got["from"] == a.boundjid
            assert got["body"] == "to your bare jid"
            assert got["to"].bare == "bob@localhost"
        finally:
            await close_all(a, b)
    slix.run(main())


def test_bare_jid_message_skips_negative_priority(server):
    """RFC 6121 §8.5.2.1.1: never delivered to a negative-priority resource;
    the highest-priority resource always gets it."""
    async def main():
        a = await login(server, "alice@localhost/desk")
        neg = await login(server, "bob@localhost/neg")
        low = await login(server, "bob@localhost/low")
        high = await login(server, "bob@localhost/high")
        try:
            await available(neg, -1)
            await available(low, 1)
            await available(high, 5)
            a.send_message(mto="bob@localhost", mbody="priority test", mtype="chat")
            got = await high.next_message(pred=lambda m: m["body"] == "priority test")
            assert got["from"] == a.boundjid
            await neg.no_message(1.5, pred=lambda m: m["body"] == "priority test")
        finally:
            await close_all(a, neg, low, high)
    slix.run(main())


def test_message_to_offline_resource_goes_to_bare_jid(server):
    """RFC 6121 §8.5.3.2.1: chat message to a full JID with no such resource
    is handled like a message to the bare JID."""
    async def main():
        a = await login(server, "alice@localhost/desk")
        b = await login(server, "bob@localhost/online")
        try:
            await available(b)
            a.send_message(mto="bob@localhost/gone", mbody="redirected", mtype="chat")
            got = await b.next_message()
            assert got["body"] == "redirected"
            assert got["from"] == a.boundjid
        finally:
            await close_all(a, b)
    slix.run(main())


def test_headline_to_offline_resource_is_dropped(server):
    """RFC 6121 §8.5.3.2.1: a headline for a resource that is gone is
    silently ignored, not redirected; the chat sent after it shows the
    headline did not come first."""
    async def main():
        a = await login(server, "alice@localhost/desk")
        b = await login(server, "bob@localhost/online")
        try:
            await available(b)
            a.send_message(mto="bob@localhost/gone", mbody="news", mtype="headline")
            a.send_message(mto="bob@localhost/gone", mbody="after", mtype="chat")
            got = await b.next_message()
            assert got["body"] == "after"
        finally:
            await close_all(a, b)
    slix.run(main())


def test_message_body_escaping_round_trip(server):
    body = "h\u00e9llo <b>&amp; \"quotes\" 'apos' \U0001F600 ]]> \u2603"
    async def main():
        a = await login(server, "alice@localhost/desk")
        b = await login(server, "bob@localhost/phone")
        try:
            a.send_message(mto=b.boundjid, mbody=body, mtype="chat")
            got = await b.next_message()
            assert got["body"] == body
        finally:
            await close_all(a, b)
    slix.run(main())


def test_raw_predefined_entities_and_char_refs(server):
    a = server_login(server, "alice@localhost/raw")
    b = server_login(server, "bob@localhost/raw")
    try:
        a.send("<message to='%s' type='chat'><body>&lt;&amp;&gt;&quot;&apos;&#65;&#x42;</body></message>"
               % b.jid)
        m = b.expect_message()
        assert m.findtext(q(NS_CLIENT, "body")) == "<&>\"'AB"
    finally:
        a.close()
        b.close()


def test_sender_address_is_stamped(server):
    """RFC 6120 §8.1.2.1: the server stamps 'from' with the sender's full JID
    (or rejects a spoofed one with <invalid-from/>); a client can never pose
    as another user."""
    a = server_login(server, "alice@localhost/spoof")
    b = server_login(server, "bob@localhost/victim")
    try:
        a.send("<message to='%s' from='carol@localhost/x' type='chat'><body>spoof</body></message>"
               % b.jid)
        try:
            m = b.expect_message(timeout=5)
        except TimeoutError:
            with pytest.raises(X.StreamErrorReceived) as ei:
                a.next(timeout=5)
            assert ei.value.condition == "invalid-from"
            return
        assert m.get("from") == a.jid, "spoofed from delivered: %s" % m.get("from")
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------- presence

def test_initial_presence_echoed_to_sender(server):
    async def main():
        a = await login(server, "alice@localhost/echo")
        try:
            a.send_presence(pstatus="here")
            p = await a.next_presence(pred=lambda p: p["from"] == a.boundjid)
            assert p["type"] in ("", "available")
            assert p["status"] == "here"
        finally:
            await close_all(a)
    slix.run(main())


def test_directed_presence(server):
    async def main():
        a = await login(server, "alice@localhost/dp")
        b = await login(server, "bob@localhost/dp")
        try:
            a.send_presence(pto=b.boundjid, pstatus="just for you", pshow="away")
            p = await b.next_presence(pred=lambda p: p["from"] == a.boundjid)
            assert p["status"] == "just for you"
            assert p["show"] == "away"
            a.send_presence(pto=b.boundjid, ptype="unavailable")
            p = await b.next_presence(pred=lambda p: p["from"] == a.boundjid)
            assert p["type"] == "unavailable"
        finally:
            await close_all(a, b)
    slix.run(main())


def test_presence_to_unknown_user_is_not_bounced(server):
    """RFC 6121 §8.5.1: presence to a non-existent account is silently ignored."""
    a = server_login(server, "alice@localhost/pres")
    try:
        a.send_presence(to="nobody@localhost")
        assert a.ping_server()
        assert not [e for e in a.pending if e.tag == q(NS_CLIENT, "presence")
                    and e.get("type") == "error"]
    finally:
        a.close()


# ------------------------------------------------------------ iq routing

def test_iq_between_users(server):
    async def main():
        a = await login(server, "alice@localhost/iq")
        b = await login(server, "bob@localhost/iq")
        seen = []

        def handler(iq):
            seen.append(iq)
            reply = iq.reply(clear=True)
            reply.append(ET.fromstring("<query xmlns='urn:tern:test'><answer>42</answer></query>"))
            reply.send()
        b.register_handler(Callback("tern test", MatchXPath("{jabber:client}iq/{urn:tern:test}query"),
                                    handler))
        try:
            resp = await send_iq(a, b.boundjid, "get", "<query xmlns='urn:tern:test'/>")
            assert resp["type"] == "result"
            assert resp["from"] == b.boundjid
            assert resp.xml.findtext("{urn:tern:test}query/{urn:tern:test}answer") == "42"
            assert len(seen) == 1 and seen[0]["from"] == a.boundjid
        finally:
            await close_all(a, b)
    slix.run(main())


def test_iq_error_from_client_is_routed_back(server):
    async def main():
        a = await login(server, "alice@localhost/iq2")
        b = await login(server, "bob@localhost/iq2")
        try:
            resp = await send_iq(a, b.boundjid, "get", "<query xmlns='urn:tern:nobody-handles-this'/>")
            assert resp["type"] == "error"
            assert resp["from"] == b.boundjid
            # slixmpp answers unhandled get/set with feature-not-implemented
            assert resp["error"]["condition"] == "feature-not-implemented"
        finally:
            await close_all(a, b)
    slix.run(main())


def test_iq_to_offline_full_jid(server):
    async def main():
        a = await login(server, "alice@localhost/iq3")
        try:
            resp = await send_iq(a, "bob@localhost/not-connected", "get", "<query xmlns='urn:tern:test'/>")
            assert resp["type"] == "error"
            assert resp["error"]["condition"] == "service-unavailable"
        finally:
            await close_all(a)
    slix.run(main())


def test_iq_to_bare_jid_answered_by_server(server):
    """RFC 6120 §10.5.3.1: an iq to a user's bare JID is handled by the
    server on the user's behalf, never delivered to a resource."""
    async def main():
        a = await login(server, "alice@localhost/iq4")
        b = await login(server, "bob@localhost/iq4")
        seen = []
        b.register_handler(Callback("bare", MatchXPath("{jabber:client}iq/{urn:tern:bare}query"),
                                    lambda iq: seen.append(iq)))
        try:
            await available(b)
            resp = await send_iq(a, "bob@localhost", "get", "<query xmlns='urn:tern:bare'/>")
            assert resp["type"] == "error"
            assert resp["error"]["condition"] == "service-unavailable"
            assert resp["from"] == "bob@localhost"
            await asyncio.sleep(0.3)
            assert not seen, "iq to the bare JID was delivered to a resource"
        finally:
            await close_all(a, b)
    slix.run(main())


# --------------------------------------------------------- unknown targets

@pytest.mark.parametrize("kind", ["message", "iq"])
def test_unknown_local_user(server, kind):
    async def main():
        a = await login(server, "alice@localhost/unk")
        try:
            if kind == "message":
                a.send_message(mto="nobody@localhost", mbody="anyone?", mtype="chat")
                err = await a.next_message(pred=lambda m: m["type"] == "error")
            else:
                err = await send_iq(a, "nobody@localhost", "get", "<query xmlns='urn:tern:test'/>")
                assert err["type"] == "error"
            # RFC 6120 §8.3.1: 'from' SHOULD be the original 'to'
            assert err["from"].bare in ("nobody@localhost", "localhost"), err["from"]
            assert err["error"]["condition"] == "service-unavailable"
        finally:
            await close_all(a)
    slix.run(main())


@pytest.mark.parametrize("kind", ["message", "iq"])
def test_unknown_remote_domain(server, kind):
    async def main():
        a = await login(server, "alice@localhost/remote")
        try:
            if kind == "message":
                a.send_message(mto="someone@remote.example", mbody="far away", mtype="chat")
                err = await a.next_message(pred=lambda m: m["type"] == "error")
            else:
                err = await send_iq(a, "someone@remote.example", "get", "<query xmlns='urn:tern:test'/>")
                assert err["type"] == "error"
            assert err["from"].domain == "remote.example", err["from"]
            assert err["error"]["condition"] == "remote-server-not-found"
        finally:
            await close_all(a)
    slix.run(main())


def test_error_stanzas_are_never_bounced(server):
    a = server_login(server, "alice@localhost/noloop")
    try:
        a.send("<message to='nobody@localhost' type='error' id='e1'><error type='cancel'>"
               "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
        a.send("<iq to='localhost' type='error' id='e2'><error type='cancel'>"
               "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
        a.send("<iq to='localhost' type='result' id='e3'/>")
        a.send("<iq to='nobody@localhost' type='error' id='e4'><error type='cancel'>"
               "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
        assert a.ping_server()
        a.pump(1.0)
        stray = [ET.tostring(e) for e in a.pending if e.get("id") in ("e1", "e2", "e3", "e4")]
        assert not stray, "answered an error/result stanza: %s" % stray
    finally:
        a.close()


# ------------------------------------------------------- server-side iqs

@pytest.fixture(scope="module")
def raw_alice(server):
    s = server_login(server, "alice@localhost/server-iqs")
    yield s
    s.close()


def test_disco_info(raw_alice):
    r = raw_alice.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to="localhost")
    assert r.get("type") == "result", X.stanza_error(r)
    assert r.get("from") == "localhost"
    query = r.find(q(DISCO_INFO, "query"))
    idents = [(i.get("category"), i.get("type")) for i in query.findall(q(DISCO_INFO, "identity"))]
    assert ("server", "im") in idents, idents
    feats = {f.get("var") for f in query.findall(q(DISCO_INFO, "feature"))}
    for f in (DISCO_INFO, DISCO_ITEMS, "urn:xmpp:ping", "jabber:iq:version", "urn:xmpp:time"):
        assert f in feats, "%s missing from %s" % (f, sorted(feats))


def test_account_disco_depends_on_account_existing(raw_alice):
    """RFC 6121 §8.5.1: an iq to the bare JID of an account that does not
    exist gets service-unavailable; for an existing account (online or not)
    the server answers on its behalf (XEP-0030 account identity)."""
    r = raw_alice.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to="nobody@localhost")
    assert r.get("type") == "error"
    assert X.stanza_error(r)[1] == "service-unavailable", X.stanza_error(r)
    r = raw_alice.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to="bob@localhost")
    assert r.get("type") == "result", X.stanza_error(r)
    query = r.find(q(DISCO_INFO, "query"))
    idents = [(i.get("category"), i.get("type")) for i in query.findall(q(DISCO_INFO, "identity"))]
    assert ("account", "registered") in idents, idents


def test_disco_items(raw_alice):
    r = raw_alice.iq("get", "<query xmlns='%s'/>" % DISCO_ITEMS, to="localhost")
    assert r.get("type") == "result", X.stanza_error(r)
    assert r.find(q(DISCO_ITEMS, "query")) is not None


def test_ping(raw_alice):
    r = raw_alice.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to="localhost")
    assert r.get("type") == "result"
    assert len(r) == 0, "ping result must be empty"


def test_version(raw_alice):
    r = raw_alice.iq("get", "<query xmlns='jabber:iq:version'/>", to="localhost")
    assert r.get("type") == "result", X.stanza_error(r)
    qel = r.find(q("jabber:iq:version", "query"))
    assert qel.findtext(q("jabber:iq:version", "name")) == "Tern"
    assert (qel.findtext(q("jabber:iq:version", "version")) or "").strip()


def test_time(raw_alice):
    r = raw_alice.iq("get", "<time xmlns='urn:xmpp:time'/>", to="localhost")
    assert r.get("type") == "result", X.stanza_error(r)
    t = r.find(q("urn:xmpp:time", "time"))
    tzo = t.findtext(q("urn:xmpp:time", "tzo"))
    utc = t.findtext(q("urn:xmpp:time", "utc"))
    assert re.fullmatch(r"[+-]\d\d:\d\d|Z", tzo), tzo
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", utc)
    assert m, utc
    then = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()) < 30


@pytest.mark.parametrize("type_", ["get", "set"])
def test_server_unknown_namespace(raw_alice, type_):
    r = raw_alice.iq(type_, "<query xmlns='urn:tern:unknown'/>", to="localhost")
    assert r.get("type") == "error"
    assert X.stanza_error(r)[1] == "service-unavailable"


def test_version_hidden(tern):
    srv = tern(users={"alice@localhost": "pw"}, hide_version="yes")
    with server_login(srv, "alice@localhost") as s:
        r = s.iq("get", "<query xmlns='jabber:iq:version'/>", to="localhost")
        assert r.get("type") == "error"
        assert X.stanza_error(r)[1] == "service-unavailable"


# --------------------------------------------------------- raw stream basics

def test_whitespace_keepalive(server):
    with server_login(server, "alice@localhost/ws") as s:
        s.send(" \n \t ")
        assert s.ping_server()
        s.send("\n")
        assert s.ping_server()


def test_client_closes_stream(server):
    s = server_login(server, "alice@localhost/bye")
    try:
        s.close_stream()
        assert s.wait_closed(5), "server did not close the connection after </stream:stream>"
        assert s.reader.stream_closed, "server did not close its stream (</stream:stream>)"
    finally:
        s.close()


# ---------------------------------------------------------- virtual hosts

def test_cross_vhost_messages(server):
    async def main():
        d = await login(server, "dave@example.org/laptop")
        a = await login(server, "alice@localhost/desk")
        try:
            assert str(d.boundjid) == "dave@example.org/laptop"
            d.send_message(mto=a.boundjid, mbody="from example.org", mtype="chat")
            got = await a.next_message()
            assert got["from"] == d.boundjid and got["body"] == "from example.org"
            a.send_message(mto=d.boundjid, mbody="from localhost", mtype="chat")
            got = await d.next_message()
            assert got["from"] == a.boundjid and got["body"] == "from localhost"
        finally:
            await close_all(a, d)
    slix.run(main())


def test_vhost_accounts_are_distinct(server):
    async def main():
        # alice@localhost's password does not open alice@example.org and v.v.
        with pytest.raises(slix.LoginFailed):
            await slix.connect(server, "alice@example.org", pw(server, "alice@localhost"))
        with pytest.raises(slix.LoginFailed):
            await slix.connect(server, "alice@localhost", pw(server, "alice@example.org"))
        # dave exists only on example.org
        with pytest.raises(slix.LoginFailed):
            await slix.connect(server, "dave@localhost", pw(server, "dave@example.org"))
        ax = await login(server, "alice@example.org/x")
        al = await login(server, "alice@localhost/l")
        try:
            await available(al)
            await available(ax)
            al.send_message(mto="alice@example.org", mbody="to the other alice", mtype="chat")
            got = await ax.next_message()
            assert got["from"] == al.boundjid
            await al.no_message(1.0, pred=lambda m: m["body"] == "to the other alice")
        finally:
            await close_all(ax, al)
    slix.run(main())


def test_raw_login_example_org_sni(server):
    with server_login(server, "dave@example.org/sni") as s:
        assert s.header_attrs().get("from") == "example.org"
        assert X.parse_jid(s.jid)[:2] == ("dave", "example.org")


def test_stream_survives_idle_parser_release(server):
    """After 2 s without input the server releases the stream's XML parser
    and rebuilds it on the next byte. Prefixes declared on the stream header
    must still be in force afterwards."""
    from xmpp_raw import server_connect
    import time
    with server_connect(server) as s:
        s.open_stream("localhost")
        s.starttls()
        ok, cond = s.sasl_plain("alice", server.password("alice@localhost"))
        assert ok, cond
        s.open_stream("localhost", extra="xmlns:t='urn:tern:idle'")
        s.bind("idle")
        b = server_login(server, "bob@localhost/idle")
        try:
            time.sleep(3.5)  # the sweep runs every second
            assert "idle: parser memory released" in server.log_text()
            s.send("<message to='%s' id='i1'><body>after idle</body><t:x t:a='1'/></message>"
                   % b.jid)
            m = b.expect_message(timeout=10)
            assert m.findtext("{jabber:client}body") == "after idle"
            x = m.find("{urn:tern:idle}x")
            assert x is not None and x.get("{urn:tern:idle}a") == "1"
            time.sleep(3.5)
            assert s.ping_server()
        finally:
            b.close()
