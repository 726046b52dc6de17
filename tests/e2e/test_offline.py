"""Offline message storage (XEP-0160): messages to an account with no
available resource are kept durably and delivered at its next available
presence, with a XEP-0203 delay stamp; quotas and non-storable messages."""

import sqlite3
import time

import pytest

import slix
from xmpp_raw import NS_CLIENT, q, server_login, stanza_error

NS_DELAY = "urn:xmpp:delay"


@pytest.fixture(params=[1, 2], ids=["1worker", "2workers"])
def srv(tern, request):
    return tern(workers=request.param)


def online(server, jid, priority=None):
    s = server_login(server, jid)
    extra = "<priority>%d</priority>" % priority if priority is not None else ""
    s.send_presence(extra=extra)
    return s


def stored_count(server, user, want, timeout=15.0):
    """Polls the database, from another process, until `want` offline
    messages of user are committed: what a SIGKILL cannot take back."""
    db = server.workdir / "data" / "tern.db"
    deadline = time.monotonic() + timeout
    n = -1
    while time.monotonic() < deadline:
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
        try:
            n = con.execute("SELECT count(*) FROM kv WHERE host='localhost' AND username=? "
                            "AND store='offline'", (user,)).fetchone()[0]
        finally:
            con.close()
        if n >= want:
            return n
        time.sleep(0.05)
    return n


def messages(s, n, timeout=15.0):
    return [s.expect_message(timeout=timeout) for _ in range(n)]


def test_stored_and_delivered_in_order_with_delay(srv):
    a = online(srv, "alice@localhost/a")
    a.send_message("bob@localhost", "one")
    a.send("<message to='bob@localhost' id='n1'><body>two</body></message>")  # normal
    a.send("<message to='bob@localhost' type='headline'><body>news</body></message>")
    a.send("<message to='bob@localhost/gone' type='chat'><body>three</body></message>")
    a.send("<message to='bob@localhost' type='chat'>"
           "<active xmlns='http://jabber.org/protocol/chatstates'/></message>")
    assert stored_count(srv, "bob", 3) == 3
    b = online(srv, "bob@localhost/b")
    got = messages(b, 3)
    assert [m.findtext(q(NS_CLIENT, "body")) for m in got] == ["one", "two", "three"]
    for m in got:
        assert m.get("from") == "alice@localhost/a"
        delay = m.find(q(NS_DELAY, "delay"))
        assert delay is not None and delay.get("from") == "localhost" and delay.get("stamp")
    # the headline and the bare chat state were not kept
    b.pump(0.7)
    assert not [e for e in b.pending if e.tag == q(NS_CLIENT, "message")]
    assert stored_count(srv, "bob", 0, timeout=5) == 0
    b.close()
    # delivered once only
    b = online(srv, "bob@localhost/b2")
    b.pump(0.7)
    assert not [e for e in b.pending if e.tag == q(NS_CLIENT, "message")]
    a.close()
    b.close()


def test_survives_sigkill(srv):
    a = online(srv, "alice@localhost/a")
    for i in range(20):
        a.send_message("carol@localhost", "msg %d" % i)
    assert stored_count(srv, "carol", 20) == 20
    a.close()
    srv.crash()
    srv.start()
    c = online(srv, "carol@localhost/c")
    got = messages(c, 20)
    assert [m.findtext(q(NS_CLIENT, "body")) for m in got] == ["msg %d" % i for i in range(20)]
    c.close()


def test_quota_bounces_service_unavailable(tern):
    srv = tern(hosts={"localhost": {"offline_max_messages": "2"}, "example.org": {}})
    a = online(srv, "alice@localhost/a")
    for i in range(3):
        a.send_message("bob@localhost", "m%d" % i, id_="q%d" % i)
    err = a.expect(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("type") == "error",
                   what="bounce")
    assert err.get("id") == "q2" and err.get("from") == "bob@localhost"
    assert stanza_error(err)[:2] == ("cancel", "service-unavailable")
    b = online(srv, "bob@localhost/b")
    assert [m.findtext(q(NS_CLIENT, "body")) for m in messages(b, 2)] == ["m0", "m1"]
    a.close()
    b.close()


def test_unknown_account_bounces(srv):
    a = online(srv, "alice@localhost/a")
    a.send_message("nobody@localhost", "hello?", id_="u1")
    err = a.expect(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("id") == "u1",
                   what="bounce")
    assert stanza_error(err)[:2] == ("cancel", "service-unavailable")
    a.close()


def test_offline_storage_off(tern):
    srv = tern(hosts={"localhost": {"offline_max_messages": "0"}, "example.org": {}})
    a = online(srv, "alice@localhost/a")
    a.send_message("bob@localhost", "x", id_="off1")
    err = a.expect(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("id") == "off1",
                   what="bounce")
    assert stanza_error(err)[:2] == ("cancel", "service-unavailable")
    a.close()


def test_negative_priority_login_does_not_take_them(srv):
    a = online(srv, "alice@localhost/a")
    a.send_message("bob@localhost", "for later")
    assert stored_count(srv, "bob", 1) == 1
    b = online(srv, "bob@localhost/neg", priority=-1)
    b.pump(0.7)
    assert not [e for e in b.pending if e.tag == q(NS_CLIENT, "message")]
    # a message now also waits: the only resource does not take bare-JID messages
    a.send_message("bob@localhost", "still later")
    assert stored_count(srv, "bob", 2) == 2
    b2 = online(srv, "bob@localhost/pos", priority=0)
    got = messages(b2, 2)
    assert [m.findtext(q(NS_CLIENT, "body")) for m in got] == ["for later", "still later"]
    for s in (a, b, b2):
        s.close()


def test_slixmpp_receives_offline_messages(srv):
    a = online(srv, "alice@localhost/a")
    a.send_message("zoe@localhost", "while you were out")
    assert stored_count(srv, "zoe", 1) == 1

    async def go():
        z = await slix.connect(srv, "zoe@localhost/z", srv.password("zoe@localhost"),
                               plugins=["xep_0203"])
        z.send_presence()
        msg = await z.next_message(timeout=15)
        assert msg["body"] == "while you were out"
        assert msg["delay"]["stamp"] is not None
        await z.close()
    slix.run(go())
    a.close()
