"""Account data the server keeps and answers for: vcard-temp (XEP-0054),
private XML storage (XEP-0049) and last activity (XEP-0012).

Happy paths go through slixmpp's plugins; error cases use the raw client
to check the exact error type and condition, and every refused write is
followed by a read showing nothing changed. Last activity between two
users needs a presence subscription (rosters): those tests belong with the
roster tests; here only the self query and the refusal without one."""

import asyncio
import time
import xml.etree.ElementTree as ET

import pytest
from slixmpp.xmlstream import ElementBase

import slix
from xmpp_raw import NS_CLIENT, q, server_login, stanza_error

NS_VCARD = "vcard-temp"
NS_PRIVATE = "jabber:iq:private"
NS_LAST = "jabber:iq:last"
DISCO_INFO = "http://jabber.org/protocol/disco#info"

USERS = {
    "alice@localhost": "alice-secret",
    "bob@localhost": "bob-secret",
    "carol@localhost": "carol-secret",
    "dave@localhost": "dave-secret",
    "erin@localhost": "erin-secret",
    "frank@localhost": "frank-secret",
    "gina@example.org": "gina-secret",
    "hank@example.org": "hank-secret",
}

# Small limits so the size checks need only a few kilobytes.
HOSTS = {
    "localhost": {"registration": "no", "vcard_max_size": "2K", "private_max_size": "1K"},
    "example.org": {},
}


@pytest.fixture(scope="module")
def server(tern_module):
    return tern_module(users=USERS, hosts=HOSTS)


def login(server, jid, resource="r"):
    return server_login(server, jid + "/" + resource)


def vcard_xml(fn, desc=""):
    d = "<DESC>%s</DESC>" % desc if desc else ""
    return "<vCard xmlns='%s'><FN>%s</FN><NICKNAME>%s-nick</NICKNAME>%s</vCard>" % (
        NS_VCARD, fn, fn, d)


def assert_error(el, etype, cond):
    assert el.get("type") == "error", ET.tostring(el)
    assert stanza_error(el) == (etype, cond), ET.tostring(el)


def assert_result(el):
    assert el.get("type") == "result", ET.tostring(el)


def get_vcard(s, to=None):
    return s.iq("get", "<vCard xmlns='%s'/>" % NS_VCARD, to=to)


def fn_of(el):
    card = el.find(q(NS_VCARD, "vCard"))
    assert card is not None, ET.tostring(el)
    return card.findtext(q(NS_VCARD, "FN"))


# ------------------------------------------------------------ vcard-temp

def test_vcard_roundtrip_with_slixmpp(server):
    async def main():
        a = await slix.connect(server, "alice@localhost/desk", USERS["alice@localhost"],
                               plugins=["xep_0054"])
        b = await slix.connect(server, "bob@localhost/desk", USERS["bob@localhost"],
                               plugins=["xep_0054"])
        try:
            card = a["xep_0054"].make_vcard()
            card["FN"] = "Alice Liddell"
            card["NICKNAME"] = "alice"
            card["BDAY"] = "1852-05-04"
            await a["xep_0054"].publish_vcard(card)
            # local=False: ask the server, not slixmpp's own cache.
            own = await a["xep_0054"].get_vcard("alice@localhost", local=False)
            assert own["vcard_temp"]["FN"] == "Alice Liddell"
            assert own["vcard_temp"]["NICKNAME"] == ["alice"]
            assert str(own["vcard_temp"]["BDAY"]) == "1852-05-04"
            # vCards are public: bob reads alice's at her bare JID.
            other = await b["xep_0054"].get_vcard("alice@localhost", local=False)
            assert other["from"] == "alice@localhost"
            assert other["vcard_temp"]["FN"] == "Alice Liddell"
        finally:
            await asyncio.gather(a.close(), b.close())
    slix.run(main())


def test_vcard_exact_xml_roundtrip(server):
    s = login(server, "carol@localhost")
    try:
        card = ("<vCard xmlns='%s' version='3.0'><N><FAMILY>Doe</FAMILY><GIVEN>Carol</GIVEN>"
                "<MIDDLE/></N><FN>Carol &amp; &lt;Co&gt;</FN>"
                "<x xmlns='urn:example:ext' a='1'>ext</x>"
                "<DESC>line one\nl\u00efne two</DESC></vCard>") % NS_VCARD
        assert_result(s.iq("set", card))
        got = get_vcard(s).find(q(NS_VCARD, "vCard"))
        assert got.get("version") == "3.0"
        assert got.findtext(q(NS_VCARD, "FN")) == "Carol & <Co>"
        assert got.findtext("%s/%s" % (q(NS_VCARD, "N"), q(NS_VCARD, "GIVEN"))) == "Carol"
        assert got.find("%s/%s" % (q(NS_VCARD, "N"), q(NS_VCARD, "MIDDLE"))) is not None
        ext = got.find(q("urn:example:ext", "x"))
        assert ext is not None and ext.get("a") == "1" and ext.text == "ext"
        assert got.findtext(q(NS_VCARD, "DESC")) == "line one\nl\u00efne two"
        # Addressed to her own bare JID it is the same vCard.
        assert fn_of(get_vcard(s, to="carol@localhost")) == "Carol & <Co>"
    finally:
        s.close()


def test_vcard_empty_when_none_stored(server):
    s = login(server, "dave@localhost")
    try:
        r = get_vcard(s)
        assert_result(r)
        card = r.find(q(NS_VCARD, "vCard"))
        assert card is not None and len(card) == 0 and not (card.text or "").strip()
    finally:
        s.close()


def test_vcard_of_other_user_without_one(server):
    """§3.3: no vCard answers like a missing account (service-unavailable),
    so vCard lookups do not reveal which accounts exist."""
    s = login(server, "bob@localhost")
    try:
        assert_error(get_vcard(s, to="erin@localhost"), "cancel", "service-unavailable")
        assert_error(get_vcard(s, to="nobody@localhost"), "cancel", "service-unavailable")
    finally:
        s.close()


def test_vcard_set_on_other_user_is_forbidden(server):
    a = login(server, "alice@localhost", "w")
    b = login(server, "bob@localhost", "w")
    try:
        assert_result(a.iq("set", vcard_xml("Alice W")))
        r = b.iq("set", vcard_xml("Bob was here"), to="alice@localhost")
        assert_error(r, "auth", "forbidden")
        assert r.get("from") == "alice@localhost"
        # Also when alice is offline (the router checks the account first).
        a.close()
        a = None
        time.sleep(0.2)
        assert_error(b.iq("set", vcard_xml("Bob again"), to="alice@localhost"), "auth",
                     "forbidden")
        assert fn_of(get_vcard(b, to="alice@localhost")) == "Alice W"
        # Users of another host of the same server read it too.
        h = server_login(server, "hank@example.org/x")
        try:
            assert fn_of(get_vcard(h, to="alice@localhost")) == "Alice W"
        finally:
            h.close()
    finally:
        if a:
            a.close()
        b.close()


def test_vcard_too_large_changes_nothing(server):
    s = login(server, "frank@localhost")
    try:
        assert_result(s.iq("set", vcard_xml("Frank small")))
        big = vcard_xml("Frank big", desc="x" * 2100)
        r = s.iq("set", big)
        assert_error(r, "modify", "not-acceptable")
        assert fn_of(get_vcard(s)) == "Frank small"
        # Just under the limit (2048 bytes serialised) is accepted.
        base = len(vcard_xml("F", desc="y"))
        fits = vcard_xml("F", desc="y" * (2048 - base + 1 - 40))
        assert_result(s.iq("set", fits))
        assert fn_of(get_vcard(s)) == "F"
    finally:
        s.close()


def test_vcard_advertised_on_server(server):
    s = login(server, "bob@localhost", "disco")
    try:
        r = s.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to="localhost")
        feats = {f.get("var") for f in r.find(q(DISCO_INFO, "query")).findall(q(DISCO_INFO, "feature"))}
        assert NS_VCARD in feats
        assert NS_LAST in feats
    finally:
        s.close()


# ------------------------------------------------------ private storage

class Prefs(ElementBase):
    name = "prefs"
    namespace = "urn:example:prefs"
    plugin_attrib = "prefs"
    interfaces = {"nick", "theme"}
    sub_interfaces = interfaces


def test_private_roundtrip_with_slixmpp(server):
    async def main():
        c = await slix.connect(server, "alice@localhost/p", USERS["alice@localhost"],
                               plugins=["xep_0049"])
        try:
            c["xep_0049"].register(Prefs)
            p = Prefs()
            p["nick"] = "Al"
            p["theme"] = "dark"
            await c["xep_0049"].store(p)
            got = await c["xep_0049"].retrieve("prefs")
            assert got["private"]["prefs"]["nick"] == "Al"
            assert got["private"]["prefs"]["theme"] == "dark"
            p["theme"] = "light"
            await c["xep_0049"].store(p)
            got = await c["xep_0049"].retrieve("prefs")
            assert got["private"]["prefs"]["theme"] == "light"
        finally:
            await c.close()
    slix.run(main())


def pquery(inner):
    return "<query xmlns='%s'>%s</query>" % (NS_PRIVATE, inner)


def private_children(el):
    qe = el.find(q(NS_PRIVATE, "query"))
    assert qe is not None, ET.tostring(el)
    return list(qe)


def test_private_get_unknown_echoes_empty_element(server):
    s = login(server, "bob@localhost", "p")
    try:
        r = s.iq("get", pquery("<storage xmlns='storage:bookmarks' a='1'/>"))
        assert_result(r)
        kids = private_children(r)
        assert len(kids) == 1
        assert kids[0].tag == q("storage:bookmarks", "storage")
        assert len(kids[0]) == 0
    finally:
        s.close()


def test_private_keys_are_namespace_and_name(server):
    s = login(server, "carol@localhost", "p")
    try:
        # One set may carry several elements (XEP-0049 §2.3).
        assert_result(s.iq("set", pquery(
            "<a xmlns='urn:example:one'>1</a><b xmlns='urn:example:one'>2</b>"
            "<a xmlns='urn:example:two'>3</a>")))
        for ns, name, text in (("urn:example:one", "a", "1"), ("urn:example:one", "b", "2"),
                               ("urn:example:two", "a", "3")):
            kids = private_children(s.iq("get", pquery("<%s xmlns='%s'/>" % (name, ns))))
            assert len(kids) == 1 and kids[0].tag == q(ns, name) and kids[0].text == text
        # A get may ask for several elements of one namespace.
        kids = private_children(s.iq("get", pquery(
            "<b xmlns='urn:example:one'/><a xmlns='urn:example:one'/><c xmlns='urn:example:one'/>")))
        assert [(k.tag, k.text) for k in kids] == [
            (q("urn:example:one", "b"), "2"), (q("urn:example:one", "a"), "1"),
            (q("urn:example:one", "c"), None)]
        # Another user's storage is separate.
        o = login(server, "dave@localhost", "p")
        try:
            kids = private_children(o.iq("get", pquery("<a xmlns='urn:example:one'/>")))
            assert len(kids) == 1 and kids[0].text is None
        finally:
            o.close()
    finally:
        s.close()


def test_private_other_user_forbidden(server):
    a = login(server, "alice@localhost", "pf")
    b = login(server, "bob@localhost", "pf")
    try:
        assert_result(a.iq("set", pquery("<secret xmlns='urn:example:s'>mine</secret>")))
        r = b.iq("get", pquery("<secret xmlns='urn:example:s'/>"), to="alice@localhost")
        assert_error(r, "auth", "forbidden")
        assert b"mine" not in ET.tostring(r)
        r = b.iq("set", pquery("<secret xmlns='urn:example:s'>bob's</secret>"),
                 to="alice@localhost")
        assert_error(r, "auth", "forbidden")
        kids = private_children(a.iq("get", pquery("<secret xmlns='urn:example:s'/>")))
        assert kids[0].text == "mine"
        # Her own bare JID as 'to' is her own storage.
        kids = private_children(a.iq("get", pquery("<secret xmlns='urn:example:s'/>"),
                                     to="alice@localhost"))
        assert kids[0].text == "mine"
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("inner,etype,cond", [
    ("", "modify", "bad-request"),  # get without a child: "Bad Format"
    ("<a xmlns='urn:x'/><b xmlns='urn:y'/>", "modify", "bad-request"),  # two namespaces
    ("<message xmlns='jabber:client'/>", "modify", "not-acceptable"),
    ("<query xmlns='jabber:iq:private'/>", "modify", "not-acceptable"),
], ids=["empty", "two-namespaces", "jabber-client", "jabber-iq-private"])
def test_private_get_errors(server, inner, etype, cond):
    s = login(server, "erin@localhost", "pe")
    try:
        assert_error(s.iq("get", pquery(inner)), etype, cond)
    finally:
        s.close()


@pytest.mark.parametrize("inner", [
    "",
    "<message xmlns='jabber:client'><body>hi</body></message>",
    "<iq xmlns='jabber:server'/>",
    "<query xmlns='jabber:iq:private'/>",
    "<plain xmlns=''/>",
    "<ok xmlns='urn:example:ok'>no</ok><message xmlns='jabber:client'/>",
], ids=["empty", "jabber-client", "jabber-server", "jabber-iq-private", "no-namespace",
        "one-bad-of-two"])
def test_private_set_not_acceptable(server, inner):
    s = login(server, "erin@localhost", "ps")
    try:
        assert_error(s.iq("set", pquery(inner)), "modify", "not-acceptable")
        # Nothing of a refused set is stored.
        kids = private_children(s.iq("get", pquery("<ok xmlns='urn:example:ok'/>")))
        assert kids[0].text is None
    finally:
        s.close()


def test_private_too_large_changes_nothing(server):
    s = login(server, "frank@localhost", "pl")
    try:
        assert_result(s.iq("set", pquery("<big xmlns='urn:example:big'>small</big>")))
        r = s.iq("set", pquery("<big xmlns='urn:example:big'>%s</big>" % ("z" * 1100)))
        assert_error(r, "modify", "not-acceptable")
        kids = private_children(s.iq("get", pquery("<big xmlns='urn:example:big'/>")))
        assert kids[0].text == "small"
    finally:
        s.close()


# -------------------------------------------------------- last activity

def test_server_uptime(server):
    async def main():
        c = await slix.connect(server, "bob@localhost/last", USERS["bob@localhost"],
                               plugins=["xep_0012"])
        try:
            r1 = await c["xep_0012"].get_last_activity("localhost")
            s1 = r1["last_activity"]["seconds"]
            assert s1 >= 0
            assert not (r1["last_activity"]["status"] or "")
            await asyncio.sleep(1.2)
            r2 = await c["xep_0012"].get_last_activity("localhost")
            assert r2["last_activity"]["seconds"] > s1
        finally:
            await c.close()
    slix.run(main())


def last_query(s, to=None):
    return s.iq("get", "<query xmlns='%s'/>" % NS_LAST, to=to)


def poll_last(s, to=None, timeout=10.0):
    """The server records a logout when it has seen the connection go;
    asks until it has."""
    deadline = time.monotonic() + timeout
    while True:
        r = last_query(s, to)
        if r.get("type") == "result" or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def test_last_activity_of_self_after_logout(server):
    s = login(server, "dave@localhost", "one")
    s.send_presence()
    s.send_presence(type_="unavailable", extra="<status>Heading home</status>")
    s.ping_server()
    s.close_stream()
    s.close()
    t = login(server, "dave@localhost", "two")
    try:
        r = poll_last(t)
        assert_result(r)
        qe = r.find(q(NS_LAST, "query"))
        assert int(qe.get("seconds")) >= 0
        assert qe.text == "Heading home"
        # The same through the own bare JID.
        r = last_query(t, "dave@localhost")
        assert_result(r)
        assert r.find(q(NS_LAST, "query")).text == "Heading home"
        # Online with an available resource: seconds='0', no text (§3).
        t.send_presence()
        t.expect(lambda e: e.tag == q(NS_CLIENT, "presence"))
        r = last_query(t)
        assert_result(r)
        qe = r.find(q(NS_LAST, "query"))
        assert qe.get("seconds") == "0" and not qe.text
    finally:
        t.close()


def test_last_activity_after_disconnect_without_goodbye(server):
    """A connection that just drops counts as a logout too, with no status
    (the session manager's unavailable has none)."""
    s = login(server, "carol@localhost", "drop")
    s.send_presence(extra="<status>around</status>")
    s.expect(lambda e: e.tag == q(NS_CLIENT, "presence"))
    s.close()
    t = login(server, "carol@localhost", "back")
    try:
        r = poll_last(t)
        assert_result(r)
        qe = r.find(q(NS_LAST, "query"))
        assert int(qe.get("seconds")) >= 0 and not qe.text
    finally:
        t.close()


def test_last_activity_never_logged_out(server):
    s = login(server, "gina@example.org", "first")
    try:
        assert_error(last_query(s), "cancel", "item-not-found")
    finally:
        s.close()


def test_last_activity_forbidden_without_subscription(server):
    b = login(server, "bob@localhost", "lf")
    try:
        # erin has no roster item for bob: bob may not learn her activity,
        # whether she is online or not.
        assert_error(last_query(b, "erin@localhost"), "auth", "forbidden")
        e = login(server, "erin@localhost", "on")
        try:
            e.send_presence()
            assert_error(last_query(b, "erin@localhost"), "auth", "forbidden")
        finally:
            e.close()
        assert_error(last_query(b, "nobody@localhost"), "cancel", "service-unavailable")
    finally:
        b.close()


def test_last_activity_for_a_subscribed_contact(tern):
    """A contact the user lets see its presence (subscription from/both)
    may ask: zero while the user is online; after the user goes
    unavailable (stream still open) the time and the goodbye status."""
    from test_roster import login as roster_login, subscribe_both
    srv = tern()
    a = roster_login(srv, "alice@localhost/a")
    b = roster_login(srv, "bob@localhost/b")
    try:
        subscribe_both(a, b, "alice@localhost", "bob@localhost")
        r = last_query(b, "alice@localhost")
        assert_result(r)
        assert r.find(q(NS_LAST, "query")).get("seconds") == "0"
        a.send_presence(type_="unavailable", extra="<status>gone fishing</status>")
        r = poll_last(b, "alice@localhost")
        deadline = time.monotonic() + 10
        while r.find(q(NS_LAST, "query")).text != "gone fishing" and time.monotonic() < deadline:
            time.sleep(0.1)
            r = last_query(b, "alice@localhost")
        qe = r.find(q(NS_LAST, "query"))
        assert qe.text == "gone fishing" and int(qe.get("seconds")) >= 0
        # carol has no subscription at all
        c = login(srv, "carol@localhost", "c")
        try:
            assert_error(last_query(c, "alice@localhost"), "auth", "forbidden")
        finally:
            c.close()
    finally:
        a.close()
        b.close()


# ------------------------------------------------------- persistence

def test_storage_survives_restart_and_crash(tern):
    srv = tern(users=USERS, hosts=HOSTS)
    s = login(srv, "alice@localhost", "before")
    assert_result(s.iq("set", vcard_xml("Persistent Alice")))
    assert_result(s.iq("set", pquery("<keep xmlns='urn:example:keep'>kept</keep>")))
    s.send_presence()
    s.send_presence(type_="unavailable", extra="<status>restarting</status>")
    s.ping_server()
    s.close_stream()
    s.close()
    # bob is still connected when the server stops.
    b = login(srv, "bob@localhost", "before")
    b.send_presence()
    b.send_presence(type_="unavailable", extra="<status>still here</status>")
    b.ping_server()
    assert srv.shutdown() == 0
    b.close()
    srv.start()

    s = login(srv, "alice@localhost", "after")
    try:
        assert fn_of(get_vcard(s)) == "Persistent Alice"
        kids = private_children(s.iq("get", pquery("<keep xmlns='urn:example:keep'/>")))
        assert kids[0].text == "kept"
        r = last_query(s)
        assert_result(r)
        assert r.find(q(NS_LAST, "query")).text == "restarting"
    finally:
        s.close()
    # The shutdown logged bob out.
    b = login(srv, "bob@localhost", "after")
    try:
        r = last_query(b)
        assert_result(r)
        assert r.find(q(NS_LAST, "query")).text == "still here"
    finally:
        b.close()

    if not hasattr(srv, "crash"):
        return
    # A result means the data is on disk: a kill right after loses nothing.
    s = login(srv, "alice@localhost", "crash")
    assert_result(s.iq("set", vcard_xml("Crash-proof Alice")))
    assert_result(s.iq("set", pquery("<keep xmlns='urn:example:keep'>still</keep>")))
    srv.crash()
    s.close()
    srv.start()
    s = login(srv, "alice@localhost", "after-crash")
    try:
        assert fn_of(get_vcard(s)) == "Crash-proof Alice"
        kids = private_children(s.iq("get", pquery("<keep xmlns='urn:example:keep'/>")))
        assert kids[0].text == "still"
    finally:
        s.close()


def test_last_activity_not_kept_for_removed_account(tern):
    """An account removed in-band (XEP-0077) logs out as its stream closes;
    that logout must not leave a record a new account of the same name
    would inherit."""
    srv = tern(users={"ivan@localhost": "ivan-secret"}, hosts=HOSTS)
    s = login(srv, "ivan@localhost", "gone")
    s.send_presence()
    s.send_presence(type_="unavailable", extra="<status>leaving for good</status>")
    r = s.iq("set", "<query xmlns='jabber:iq:register'><remove/></query>")
    assert_result(r)
    s.close()
    time.sleep(1.0)  # the server sees the connection go and unbinds
    srv.add_user("ivan@localhost", "new-ivan")
    t = login(srv, "ivan@localhost", "new")
    try:
        assert_error(last_query(t), "cancel", "item-not-found")
        assert_result(get_vcard(t))
    finally:
        t.close()
