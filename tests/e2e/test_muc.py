"""Multi-user chat (XEP-0045) on conference.localhost, driven by raw
clients so every presence, status code and error can be checked exactly.
Run with TERN_TEST_WORKERS=2 as well: rooms and their occupants then live
on different workers."""

import itertools

import pytest

import slix
from xmpp_raw import NS_CLIENT, q, server_login, stanza_error

SERVICE = "conference.localhost"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = NS_MUC + "#user"
NS_MUC_OWNER = NS_MUC + "#owner"
NS_MUC_ADMIN = NS_MUC + "#admin"
NS_DATA = "jabber:x:data"
NS_DELAY = "urn:xmpp:delay"
NS_SID = "urn:xmpp:sid:0"
NS_OID = "urn:xmpp:occupant-id:0"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"

_names = itertools.count()


def room_name(tag):
    return "%s%d@%s" % (tag, next(_names), SERVICE)


def login(server, jid):
    s = server_login(server, jid)
    s.send_presence()
    s.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("from") == s.jid,
             what="own presence echo")
    return s


def statuses(el):
    x = el.find(q(NS_MUC_USER, "x"))
    return set() if x is None else {s.get("code") for s in x.findall(q(NS_MUC_USER, "status"))}


def item(el):
    x = el.find(q(NS_MUC_USER, "x"))
    return None if x is None else x.find(q(NS_MUC_USER, "item"))


def is_pres(frm, type_=None):
    return lambda e: (e.tag == q(NS_CLIENT, "presence") and e.get("from") == frm
                      and e.get("type") == type_)


def send_join(s, occ, extra=""):
    s.send("<presence to='%s'><x xmlns='%s'>%s</x></presence>" % (occ, NS_MUC, extra))


def expect_self(s, occ):
    return s.expect(lambda e: is_pres(occ)(e) and "110" in statuses(e), what="self-presence")


def expect_subject(s, room):
    return s.expect(lambda e: e.tag == q(NS_CLIENT, "message")
                    and e.get("from", "").split("/")[0] == room
                    and e.find(q(NS_CLIENT, "subject")) is not None, what="subject")


def create(s, room, nick="owner", form=""):
    """Creates an instant room (or one configured with form fields)."""
    occ = room + "/" + nick
    send_join(s, occ)
    self_p = expect_self(s, occ)
    assert {"110", "201"} <= statuses(self_p)
    expect_subject(s, room)
    res = s.iq("set", "<query xmlns='%s'><x xmlns='%s' type='submit'>%s</x></query>"
               % (NS_MUC_OWNER, NS_DATA, form), to=room)
    assert res.get("type") == "result", stanza_error(res)
    return self_p


def join(s, room, nick, extra=""):
    occ = room + "/" + nick
    send_join(s, occ, extra)
    p = expect_self(s, occ)
    expect_subject(s, room)
    return p


def join_error(s, room, nick, extra=""):
    occ = room + "/" + nick
    send_join(s, occ, extra)
    el = s.expect(is_pres(occ, "error"), what="join error")
    return stanza_error(el)


def field(k, v):
    return "<field var='%s'><value>%s</value></field>" % (k, v)


def expect_error(s, tag, frm, what="error"):
    el = s.expect(lambda e: e.tag == q(NS_CLIENT, tag) and e.get("type") == "error"
                  and e.get("from") == frm, what=what)
    return stanza_error(el)


@pytest.fixture
def alice(server):
    s = login(server, "alice@localhost/a")
    yield s
    s.close()


@pytest.fixture
def bob(server):
    s = login(server, "bob@localhost/b")
    yield s
    s.close()


@pytest.fixture
def carol(server):
    s = login(server, "carol@localhost/c")
    yield s
    s.close()


def test_service_disco(alice):
    res = alice.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to=SERVICE)
    assert res.get("type") == "result", stanza_error(res)
    qn = res.find(q(DISCO_INFO, "query"))
    ids = [(i.get("category"), i.get("type")) for i in qn.findall(q(DISCO_INFO, "identity"))]
    assert ("conference", "text") in ids
    feats = {f.get("var") for f in qn.findall(q(DISCO_INFO, "feature"))}
    assert NS_MUC in feats
    room = room_name("listed")
    create(alice, room, form=field("muc#roomconfig_roomname", "Listed room"))
    res = alice.iq("get", "<query xmlns='%s'/>" % DISCO_ITEMS, to=SERVICE)
    items = {i.get("jid"): i.get("name")
             for i in res.find(q(DISCO_ITEMS, "query")).findall(q(DISCO_ITEMS, "item"))}
    assert items.get(room) == "Listed room"
    hidden = room_name("hidden")
    create(alice, hidden, form=field("muc#roomconfig_publicroom", "0"))
    res = alice.iq("get", "<query xmlns='%s'/>" % DISCO_ITEMS, to=SERVICE)
    jids = [i.get("jid")
            for i in res.find(q(DISCO_ITEMS, "query")).findall(q(DISCO_ITEMS, "item"))]
    assert room in jids and hidden not in jids
    res = alice.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to=room)
    qn = res.find(q(DISCO_INFO, "query"))
    feats = {f.get("var") for f in qn.findall(q(DISCO_INFO, "feature"))}
    assert {NS_MUC, "muc_public", "muc_open", "muc_unmoderated", "muc_unsecured",
            "muc_semianonymous", "muc_temporary"} <= feats
    assert qn.find(q(DISCO_INFO, "identity")).get("name") == "Listed room"
    form = {f.get("var"): f.findtext(q(NS_DATA, "value"))
            for f in qn.find(q(NS_DATA, "x")).findall(q(NS_DATA, "field"))}
    assert form["muc#roominfo_occupants"] == "1"
    res = alice.iq("get", "<query xmlns='urn:xmpp:nothing'/>", to=SERVICE)
    assert stanza_error(res) == ("cancel", "service-unavailable")


def test_create_instant_room(alice, bob):
    room = room_name("instant")
    occ = room + "/owner"
    send_join(alice, occ)
    p = expect_self(alice, occ)
    assert {"110", "201"} <= statuses(p)
    assert item(p).get("affiliation") == "owner" and item(p).get("role") == "moderator"
    expect_subject(alice, room)
    # locked until the owner accepts the instant room
    assert join_error(bob, room, "bob") == ("cancel", "item-not-found")
    res = alice.iq("set", "<query xmlns='%s'><x xmlns='%s' type='submit'/></query>"
                   % (NS_MUC_OWNER, NS_DATA), to=room)
    assert res.get("type") == "result", stanza_error(res)
    p = join(bob, room, "bob")
    assert statuses(p) == {"110"}


def test_second_user_sees_occupants(alice, bob):
    room = room_name("pair")
    create(alice, room)
    send_join(bob, room + "/bob")
    first = bob.next()
    assert first.get("from") == room + "/owner", "existing occupants come first"
    assert item(first).get("affiliation") == "owner"
    assert item(first).get("role") == "moderator"
    assert item(first).get("jid") is None, "semi-anonymous: bob is no moderator"
    p = expect_self(bob, room + "/bob")
    assert item(p).get("affiliation") == "none" and item(p).get("role") == "participant"
    seen = alice.expect(is_pres(room + "/bob"), what="bob's join")
    assert item(seen).get("jid") == bob.jid, "moderators see real JIDs"
    assert "110" not in statuses(seen)


def test_groupchat_broadcast(alice, bob):
    room = room_name("chat")
    create(alice, room)
    join(bob, room, "bob")
    bob.send_message(room, "hello room", type_="groupchat", id_="m1")
    got = []
    for s in (alice, bob):
        m = s.expect_message(pred=lambda e: e.findtext(q(NS_CLIENT, "body")) == "hello room")
        assert m.get("from") == room + "/bob" and m.get("type") == "groupchat"
        assert m.get("id") == "m1"
        sid = m.find(q(NS_SID, "stanza-id"))
        assert sid is not None and sid.get("by") == room and sid.get("id")
        oid = m.find(q(NS_OID, "occupant-id"))
        assert oid is not None and oid.get("id")
        got.append((sid.get("id"), oid.get("id")))
    assert got[0] == got[1]
    bob.send_message(room, "again", type_="groupchat")
    m = alice.expect_message(pred=lambda e: e.findtext(q(NS_CLIENT, "body")) == "again")
    assert m.find(q(NS_OID, "occupant-id")).get("id") == got[0][1], "occupant-id is stable"
    assert m.find(q(NS_SID, "stanza-id")).get("id") != got[0][0]


def test_history_on_join(alice, bob):
    room = room_name("hist")
    create(alice, room)
    for i in range(3):
        alice.send_message(room, "msg %d" % i, type_="groupchat")
        alice.expect_message(pred=lambda e, i=i: e.findtext(q(NS_CLIENT, "body")) == "msg %d" % i)
    send_join(bob, room + "/bob", "<history maxstanzas='2'/>")
    expect_self(bob, room + "/bob")
    bodies = []
    while True:
        m = bob.expect_message()
        if m.find(q(NS_CLIENT, "subject")) is not None:
            break
        d = m.find(q(NS_DELAY, "delay"))
        assert d is not None and d.get("from") == room and d.get("stamp")
        bodies.append(m.findtext(q(NS_CLIENT, "body")))
    assert bodies == ["msg 1", "msg 2"]


def test_subject(alice, bob, carol):
    room = room_name("subj")
    create(alice, room)
    join(bob, room, "bob")
    alice.send("<message to='%s' type='groupchat'><subject>Topic A</subject></message>" % room)
    for s in (alice, bob):
        m = s.expect_message(pred=lambda e: e.findtext(q(NS_CLIENT, "subject")) == "Topic A")
        assert m.get("from") == room + "/owner"
    # participants may not change it by default
    bob.send("<message to='%s' type='groupchat'><subject>Mine</subject></message>" % room)
    assert expect_error(bob, "message", room) == ("auth", "forbidden")
    send_join(carol, room + "/carol")
    expect_self(carol, room + "/carol")
    m = expect_subject(carol, room)
    assert m.findtext(q(NS_CLIENT, "subject")) == "Topic A"


def test_nick_conflict(alice, bob):
    room = room_name("conflict")
    create(alice, room)
    assert join_error(bob, room, "owner") == ("cancel", "conflict")


def test_no_nick_is_malformed(alice):
    room = room_name("nonick")
    alice.send("<presence to='%s'><x xmlns='%s'/></presence>" % (room, NS_MUC))
    el = alice.expect(is_pres(room, "error"), what="error")
    assert stanza_error(el) == ("modify", "jid-malformed")


def test_nick_change(alice, bob):
    room = room_name("nick")
    create(alice, room)
    join(bob, room, "bob")
    alice.expect(is_pres(room + "/bob"), what="bob joined")
    bob.send_presence(to=room + "/robert")
    for s in (alice, bob):
        un = s.expect(is_pres(room + "/bob", "unavailable"), what="303")
        assert "303" in statuses(un) and item(un).get("nick") == "robert"
        s.expect(is_pres(room + "/robert"), what="new nick")
    # taking the owner's nick is a conflict
    bob.send_presence(to=room + "/owner")
    el = bob.expect(is_pres(room + "/owner", "error"), what="conflict")
    assert stanza_error(el) == ("cancel", "conflict")


def test_leave_broadcast(alice, bob):
    room = room_name("leave")
    create(alice, room)
    join(bob, room, "bob")
    alice.expect(is_pres(room + "/bob"), what="bob joined")
    bob.send_presence(to=room + "/bob", type_="unavailable")
    un = bob.expect(is_pres(room + "/bob", "unavailable"), what="own leave")
    assert "110" in statuses(un) and item(un).get("role") == "none"
    un = alice.expect(is_pres(room + "/bob", "unavailable"), what="bob left")
    assert "110" not in statuses(un)


def test_disconnect_leaves(server, alice):
    room = room_name("gone")
    create(alice, room)
    b = login(server, "bob@localhost/gone")
    join(b, room, "bob")
    alice.expect(is_pres(room + "/bob"), what="bob joined")
    b.close()
    alice.expect(is_pres(room + "/bob", "unavailable"), what="bob gone")


def test_private_message(alice, bob):
    room = room_name("pm")
    create(alice, room)
    join(bob, room, "bob")
    bob.send_message(room + "/owner", "psst")
    m = alice.expect_message(pred=lambda e: e.findtext(q(NS_CLIENT, "body")) == "psst")
    assert m.get("from") == room + "/bob" and m.get("to") == alice.jid
    assert m.find(q(NS_MUC_USER, "x")) is not None
    bob.send_message(room + "/nobody", "lost")
    assert expect_error(bob, "message", room + "/nobody") == ("cancel", "item-not-found")


def test_non_occupant_message(alice, bob):
    room = room_name("closed")
    create(alice, room)
    bob.send_message(room, "let me in", type_="groupchat")
    assert expect_error(bob, "message", room) == ("cancel", "not-acceptable")


def test_self_ping(alice, bob):
    room = room_name("ping")
    create(alice, room)
    res = alice.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=room + "/owner")
    assert res.get("type") == "result", stanza_error(res)
    res = bob.iq("get", "<ping xmlns='urn:xmpp:ping'/>", to=room + "/bob")
    assert stanza_error(res) == ("cancel", "not-acceptable")


def admin(s, room, items):
    return s.iq("set", "<query xmlns='%s'>%s</query>" % (NS_MUC_ADMIN, items), to=room)


def test_kick_and_ban(alice, bob, carol):
    room = room_name("kick")
    create(alice, room)
    join(bob, room, "bob")
    join(carol, room, "carol")
    # participants may not kick
    res = admin(carol, room, "<item nick='bob' role='none'/>")
    assert stanza_error(res) == ("auth", "forbidden")
    res = admin(alice, room, "<item nick='bob' role='none'><reason>out</reason></item>")
    assert res.get("type") == "result", stanza_error(res)
    un = bob.expect(is_pres(room + "/bob", "unavailable"), what="kicked")
    assert {"307", "110"} <= statuses(un)
    un = carol.expect(is_pres(room + "/bob", "unavailable"), what="bob kicked")
    assert "307" in statuses(un)
    join(bob, room, "bob")
    res = admin(alice, room, "<item jid='bob@localhost' affiliation='outcast'/>")
    assert res.get("type") == "result", stanza_error(res)
    un = bob.expect(lambda e: is_pres(room + "/bob", "unavailable")(e) and "301" in statuses(e),
                    what="banned")
    assert "301" in statuses(un)
    assert join_error(bob, room, "bob") == ("auth", "forbidden")
    res = alice.iq("get", "<query xmlns='%s'><item affiliation='outcast'/></query>"
                   % NS_MUC_ADMIN, to=room)
    jids = [i.get("jid") for i in res.find(q(NS_MUC_ADMIN, "query"))]
    assert jids == ["bob@localhost"]


def test_voice(alice, bob):
    room = room_name("voice")
    create(alice, room)
    join(bob, room, "bob")
    res = admin(alice, room, "<item nick='bob' role='visitor'/>")
    assert res.get("type") == "result", stanza_error(res)
    p = bob.expect(lambda e: is_pres(room + "/bob")(e) and item(e).get("role") == "visitor",
                   what="voice revoked")
    assert p is not None
    bob.send_message(room, "can I speak", type_="groupchat")
    assert expect_error(bob, "message", room) == ("auth", "forbidden")


def test_members_only(alice, bob, carol):
    room = room_name("members")
    create(alice, room, form=field("muc#roomconfig_membersonly", "1"))
    assert join_error(bob, room, "bob") == ("auth", "registration-required")
    res = admin(alice, room, "<item jid='bob@localhost' affiliation='member'/>")
    assert res.get("type") == "result", stanza_error(res)
    p = join(bob, room, "bob")
    assert item(p).get("affiliation") == "member"
    # an invitation makes carol a member
    alice.send("<message to='%s'><x xmlns='%s'><invite to='carol@localhost'>"
               "<reason>come</reason></invite></x></message>" % (room, NS_MUC_USER))
    m = carol.expect_message(pred=lambda e: e.find(q(NS_MUC_USER, "x")) is not None)
    inv = m.find(q(NS_MUC_USER, "x")).find(q(NS_MUC_USER, "invite"))
    # a semi-anonymous room names the inviter by room nick, not address
    assert m.get("from") == room and inv.get("from") == room + "/owner"
    assert inv.findtext(q(NS_MUC_USER, "reason")) == "come"
    # XEP-0249's element rides along for clients that only know that one
    direct = m.find(q("jabber:x:conference", "x"))
    assert direct is not None and direct.get("jid") == room
    join(carol, room, "carol")


def test_password(alice, bob):
    room = room_name("secret")
    create(alice, room, form=field("muc#roomconfig_passwordprotectedroom", "1")
           + field("muc#roomconfig_roomsecret", "sesame"))
    assert join_error(bob, room, "bob") == ("auth", "not-authorized")
    assert join_error(bob, room, "bob", "<password>wrong</password>") == ("auth", "not-authorized")
    join(bob, room, "bob", "<password>sesame</password>")


def test_config_round_trip(alice, bob):
    room = room_name("cfg")
    create(alice, room)
    join(bob, room, "bob")
    res = bob.iq("get", "<query xmlns='%s'/>" % NS_MUC_OWNER, to=room)
    assert stanza_error(res) == ("auth", "forbidden")
    res = alice.iq("get", "<query xmlns='%s'/>" % NS_MUC_OWNER, to=room)
    form = res.find(q(NS_MUC_OWNER, "query")).find(q(NS_DATA, "x"))
    fields = {f.get("var"): f.findtext(q(NS_DATA, "value")) for f in form}
    assert fields["muc#roomconfig_moderatedroom"] == "0"
    assert fields["muc#roomconfig_whois"] == "moderators"
    res = alice.iq("set", "<query xmlns='%s'><x xmlns='%s' type='submit'>%s%s%s</x></query>"
                   % (NS_MUC_OWNER, NS_DATA, field("muc#roomconfig_roomname", "Renamed"),
                      field("muc#roomconfig_moderatedroom", "1"),
                      field("muc#roomconfig_whois", "anyone")), to=room)
    assert res.get("type") == "result", stanza_error(res)
    res = alice.iq("set", "<query xmlns='%s'><x xmlns='%s' type='submit'>%s</x></query>"
                   % (NS_MUC_OWNER, NS_DATA, field("muc#roomconfig_maxusers", "many")), to=room)
    assert stanza_error(res) == ("modify", "bad-request")
    res = alice.iq("get", "<query xmlns='%s'/>" % NS_MUC_OWNER, to=room)
    form = res.find(q(NS_MUC_OWNER, "query")).find(q(NS_DATA, "x"))
    fields = {f.get("var"): f.findtext(q(NS_DATA, "value")) for f in form}
    assert fields["muc#roomconfig_roomname"] == "Renamed"
    assert fields["muc#roomconfig_moderatedroom"] == "1"
    assert fields["muc#roomconfig_whois"] == "anyone"
    assert fields["muc#roomconfig_maxusers"] == "0"


def test_destroy(alice, bob):
    room = room_name("doomed")
    create(alice, room)
    join(bob, room, "bob")
    res = alice.iq("set", "<query xmlns='%s'><destroy jid='elsewhere@%s'><reason>bye</reason>"
                   "</destroy></query>" % (NS_MUC_OWNER, SERVICE), to=room)
    assert res.get("type") == "result", stanza_error(res)
    un = bob.expect(is_pres(room + "/bob", "unavailable"), what="destroyed")
    d = un.find(q(NS_MUC_USER, "x")).find(q(NS_MUC_USER, "destroy"))
    assert d.get("jid") == "elsewhere@" + SERVICE
    assert d.findtext(q(NS_MUC_USER, "reason")) == "bye"
    res = bob.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to=room)
    assert stanza_error(res) == ("cancel", "item-not-found")


def test_slixmpp_join(server):
    """slixmpp's xep_0045 plugin: join a new room and take the instant room."""
    async def go():
        c = await slix.connect(server, "alice@localhost", server.password("alice@localhost"))
        c.register_plugin("xep_0045")
        room = room_name("slix")
        await c.plugin["xep_0045"].join_muc_wait(room, "al", maxstanzas=0, timeout=10)
        form = await c.plugin["xep_0045"].get_room_config(room)
        assert form is not None
        await c.plugin["xep_0045"].set_room_config(room, form)
        roster = c.plugin["xep_0045"].get_roster(room)
        assert "al" in roster
        await c.close()
    slix.run(go())


def test_persistent_room_survives_restart(tern):
    srv = tern()
    a = login(srv, "alice@localhost/a")
    room = room_name("kept")
    create(a, room, form=field("muc#roomconfig_persistentroom", "1")
           + field("muc#roomconfig_roomname", "Kept") + field("muc#roomconfig_membersonly", "1"))
    res = admin(a, room, "<item jid='bob@localhost' affiliation='member'/>")
    assert res.get("type") == "result", stanza_error(res)
    a.send("<message to='%s' type='groupchat'><subject>Still here</subject></message>" % room)
    a.expect_message(pred=lambda e: e.findtext(q(NS_CLIENT, "subject")) == "Still here")
    res = a.iq("set", "<vCard xmlns='vcard-temp'><FN>Kept room</FN></vCard>", to=room)
    assert res.get("type") == "result", stanza_error(res)
    for body in ("one", "two"):
        a.send("<message to='%s' type='groupchat'><body>%s</body></message>" % (room, body))
        a.expect_message(pred=lambda e, b=body: e.findtext(q(NS_CLIENT, "body")) == b)
    a.send_presence(to=room + "/owner", type_="unavailable")
    a.expect(is_pres(room + "/owner", "unavailable"), what="left")
    # a temporary room is gone once empty
    tmp = room_name("tmp")
    create(a, tmp)
    a.send_presence(to=tmp + "/owner", type_="unavailable")
    a.expect(is_pres(tmp + "/owner", "unavailable"), what="left")
    a.close()
    assert srv.shutdown() == 0
    srv.start()
    b = login(srv, "bob@localhost/b")
    res = b.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to=room)
    assert res.get("type") == "result", stanza_error(res)
    qn = res.find(q(DISCO_INFO, "query"))
    assert qn.find(q(DISCO_INFO, "identity")).get("name") == "Kept"
    feats = {f.get("var") for f in qn.findall(q(DISCO_INFO, "feature"))}
    assert {"muc_persistent", "muc_membersonly"} <= feats
    send_join(b, room + "/bob")
    p = expect_self(b, room + "/bob")
    assert item(p).get("affiliation") == "member" and "201" not in statuses(p)
    # the history came back from the room's archive, before the subject
    got = []
    while True:
        m = b.expect(lambda e: e.tag == q(NS_CLIENT, "message"), what="history or subject")
        if m.find(q(NS_CLIENT, "subject")) is not None:
            break
        assert m.get("from") == room + "/owner"
        assert m.find(q("urn:xmpp:delay", "delay")) is not None
        got.append(m.findtext(q(NS_CLIENT, "body")))
    assert got == ["one", "two"]
    assert m.findtext(q(NS_CLIENT, "subject")) == "Still here"
    # and the archive answers queries on the room's address
    b.send("<iq type='set' id='mam1' to='%s'><query xmlns='urn:xmpp:mam:2' queryid='q1'/></iq>"
           % room)
    res = b.expect(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == "mam1", what="fin")
    assert res.get("type") == "result", stanza_error(res)
    results = [e for e in b.pending if e.tag == q(NS_CLIENT, "message")
               and e.find(q("urn:xmpp:mam:2", "result")) is not None]
    bodies = [r.find(q("urn:xmpp:mam:2", "result")).find(q("urn:xmpp:forward:0", "forwarded"))
              .find(q(NS_CLIENT, "message")).findtext(q(NS_CLIENT, "body")) for r in results]
    assert bodies == ["one", "two"]
    assert all(r.get("from") == room for r in results)
    res = b.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to=tmp)
    assert stanza_error(res) == ("cancel", "item-not-found")
    res = b.iq("get", "<vCard xmlns='vcard-temp'/>", to=room)
    assert res.find(q("vcard-temp", "vCard")).findtext(q("vcard-temp", "FN")) == "Kept room"
    c = login(srv, "carol@localhost/c")
    assert join_error(c, room, "carol") == ("auth", "registration-required")
    # a members-only room's log is for its members
    res = c.iq("set", "<query xmlns='urn:xmpp:mam:2'/>", to=room)
    assert stanza_error(res) == ("auth", "forbidden")
    b.close()
    c.close()


def test_iq_to_occupant_is_forwarded(alice, bob):
    room = room_name("fwd")
    create(alice, room)
    join(bob, room, "bob")
    bob.send("<iq type='get' id='v1' to='%s/owner'><query xmlns='jabber:iq:version'/></iq>"
             % room)
    req = alice.expect(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("type") == "get",
                       what="forwarded iq")
    assert req.get("from") == room + "/bob" and req.get("id") != "v1"
    alice.send("<iq type='result' id='%s' to='%s'><query xmlns='jabber:iq:version'>"
               "<name>x</name></query></iq>" % (req.get("id"), req.get("from")))
    res = bob.expect(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == "v1",
                     what="answer")
    assert res.get("type") == "result" and res.get("from") == room + "/owner"


def test_presence_update_rebroadcast(alice, bob):
    room = room_name("away")
    create(alice, room)
    join(bob, room, "bob")
    alice.expect(is_pres(room + "/bob"), what="bob joined")
    bob.send("<presence to='%s/bob'><show>away</show><status>lunch</status></presence>" % room)
    p = alice.expect(lambda e: is_pres(room + "/bob")(e)
                     and e.findtext(q(NS_CLIENT, "show")) == "away", what="update")
    assert p.findtext(q(NS_CLIENT, "status")) == "lunch"
    assert item(p).get("role") == "participant"


def test_non_anonymous_room(alice, bob):
    room = room_name("open")
    create(alice, room, form=field("muc#roomconfig_whois", "anyone"))
    send_join(bob, room + "/bob")
    owner = bob.expect(is_pres(room + "/owner"), what="owner presence")
    assert item(owner).get("jid") == alice.jid, "everyone sees real JIDs"
    p = expect_self(bob, room + "/bob")
    assert {"100", "110"} <= statuses(p)


def test_muc_domain_setting(tern):
    def items(srv):
        s = server_login(srv, "alice@localhost/x")
        res = s.iq("get", "<query xmlns='%s'/>" % DISCO_ITEMS, to="localhost")
        s.close()
        return [i.get("jid") for i in res.find(q(DISCO_ITEMS, "query"))]

    users = {"alice@localhost": "alice-secret"}
    srv = tern(users=users, hosts={"localhost": {"muc_domain": "rooms.localhost"}})
    assert "rooms.localhost" in items(srv)
    srv = tern(users=users, hosts={"localhost": {"muc_domain": "none"}})
    assert not [j for j in items(srv) if j.startswith("conference.")]


def test_voice_request(alice, bob):
    room = room_name("voicereq")
    create(alice, room, form=field("muc#roomconfig_moderatedroom", "1"))
    p = join(bob, room, "bob")
    assert item(p).get("role") == "visitor"
    # §7.13: the visitor asks; the moderators get the form
    bob.send("<message to='%s'><x xmlns='%s' type='submit'>%s%s</x></message>"
             % (room, NS_DATA, field("FORM_TYPE", NS_MUC + "#request"),
                field("muc#role", "participant")))
    req = alice.expect_message(pred=lambda e: e.find(q(NS_DATA, "x")) is not None)
    assert req.get("from") == room
    vals = {f.get("var"): f.findtext(q(NS_DATA, "value")) for f in req.find(q(NS_DATA, "x"))
            if f.tag == q(NS_DATA, "field")}
    assert vals["muc#roomnick"] == "bob" and vals["muc#jid"] == "bob@localhost"
    assert vals["muc#request_allow"] == "false"
    # §8.6: the moderator approves and everyone sees the new role
    alice.send("<message to='%s'><x xmlns='%s' type='submit'>%s%s%s%s</x></message>"
               % (room, NS_DATA, field("FORM_TYPE", NS_MUC + "#request"),
                  field("muc#role", "participant"), field("muc#roomnick", "bob"),
                  field("muc#request_allow", "true")))
    p = bob.expect(lambda e: is_pres(room + "/bob")(e) and item(e).get("role") == "participant",
                   what="voice granted")
    assert "110" in statuses(p)
    # a participant has nothing to ask for
    bob.send("<message to='%s'><x xmlns='%s' type='submit'>%s</x></message>"
             % (room, NS_DATA, field("FORM_TYPE", NS_MUC + "#request")))
    assert expect_error(bob, "message", room) == ("modify", "not-acceptable")


def test_room_mam_live(alice, bob):
    room = room_name("log")
    create(alice, room)
    join(bob, room, "bob")
    for i in range(3):
        alice.send("<message to='%s' type='groupchat'><body>m%d</body></message>" % (room, i))
        bob.expect_message(pred=lambda e, i=i: e.findtext(q(NS_CLIENT, "body")) == "m%d" % i)
    res = bob.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to=room)
    feats = {f.get("var") for f in res.find(q(DISCO_INFO, "query")).findall(q(DISCO_INFO, "feature"))}
    assert "urn:xmpp:mam:2" in feats
    bob.send("<iq type='set' id='page' to='%s'><query xmlns='urn:xmpp:mam:2' queryid='p'>"
             "<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set>"
             "</query></iq>" % room)
    fin = bob.expect(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == "page", what="fin")
    assert fin.get("type") == "result", stanza_error(fin)
    res = [e for e in bob.pending if e.find(q("urn:xmpp:mam:2", "result")) is not None]
    bodies = [r.find(q("urn:xmpp:mam:2", "result")).find(q("urn:xmpp:forward:0", "forwarded"))
              .find(q(NS_CLIENT, "message")).findtext(q(NS_CLIENT, "body")) for r in res]
    assert bodies == ["m1", "m2"]


def test_service_admin_and_room_limits(tern):
    srv = tern(hosts={"localhost": {"registration": "no", "admins": "carol@localhost",
                                    "muc_room_creation": "admins", "muc_max_occupants": "2"},
                      "example.org": {}})
    a = login(srv, "alice@localhost/a")
    c = login(srv, "carol@localhost/c")
    b = login(srv, "bob@localhost/b")
    room = room_name("adm")
    # only admins may create rooms here
    send_join(a, room + "/alice")
    el = a.expect(is_pres(room + "/alice", "error"), what="refused creation")
    assert stanza_error(el) == ("cancel", "not-allowed")
    create(c, room)
    # the room holds two occupants at most
    join(a, room, "alice")
    assert join_error(b, room, "bob") == ("wait", "service-unavailable")
    # an admin is an owner of every room, even one it did not create
    a.send_presence(to=room + "/alice", type_="unavailable")
    a.expect(is_pres(room + "/alice", "unavailable"), what="left")
    res = admin(c, room, "<item jid='alice@localhost' affiliation='owner'/>")
    assert res.get("type") == "result", stanza_error(res)
    res = a.iq("get", "<query xmlns='%s'/>" % NS_MUC_OWNER, to=room)
    assert res.get("type") == "result", stanza_error(res)
    # the room's owners cannot demote or ban a service admin
    res = admin(a, room, "<item jid='carol@localhost' affiliation='outcast'/>")
    assert stanza_error(res) == ("cancel", "not-allowed")
    res = c.iq("get", "<query xmlns='%s'/>" % NS_MUC_OWNER, to=room)
    assert res.get("type") == "result", stanza_error(res)
    for s in (a, b, c):
        s.close()


def test_nick_changed_by_service(alice):
    room = room_name("nfc")
    # e + combining acute accent: RFC 7622 normalises the nick to NFC
    occ = room + "/owne\u0301"
    send_join(alice, occ)
    p = alice.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and "110" in statuses(e),
                     what="self-presence")
    assert p.get("from") == room + "/own\u00e9"
    assert "210" in statuses(p)


def test_room_vcard_and_subject_limit(alice, bob):
    room = room_name("card")
    create(alice, room)
    join(bob, room, "bob")
    card = ("<vCard xmlns='vcard-temp'><FN>Room</FN><PHOTO><TYPE>image/png</TYPE>"
            "<BINVAL>iVBORw0KGgo=</BINVAL></PHOTO></vCard>")
    res = bob.iq("set", card, to=room)
    assert stanza_error(res) == ("auth", "forbidden")
    res = alice.iq("set", card, to=room)
    assert res.get("type") == "result", stanza_error(res)
    res = bob.iq("get", "<vCard xmlns='vcard-temp'/>", to=room)
    vc = res.find(q("vcard-temp", "vCard"))
    assert vc.findtext(q("vcard-temp", "FN")) == "Room"
    assert vc.find(q("vcard-temp", "PHOTO")).findtext(q("vcard-temp", "BINVAL")) == "iVBORw0KGgo="
    # a subject past the limit is refused and the old one stays
    alice.send("<message to='%s' type='groupchat'><subject>%s</subject></message>"
               % (room, "x" * 2000))
    assert expect_error(alice, "message", room) == ("modify", "not-acceptable")
    send_join(bob, room + "/bob")  # resync: the subject is sent again
    m = expect_subject(bob, room)
    assert m.findtext(q(NS_CLIENT, "subject")) in (None, "")


def test_allowpm_list_single(alice, bob):
    room = room_name("pm")
    create(alice, room)
    res = alice.iq("get", "<query xmlns='%s'/>" % NS_MUC_OWNER, to=room)
    form = res.find(q(NS_MUC_OWNER, "query")).find(q(NS_DATA, "x"))
    pm = [f for f in form if f.get("var") == "muc#roomconfig_allowpm"][0]
    assert pm.get("type") == "list-single" and pm.findtext(q(NS_DATA, "value")) == "anyone"
    res = alice.iq("set", "<query xmlns='%s'><x xmlns='%s' type='submit'>%s</x></query>"
                   % (NS_MUC_OWNER, NS_DATA, field("muc#roomconfig_allowpm", "moderators")),
                   to=room)
    assert res.get("type") == "result", stanza_error(res)
    join(bob, room, "bob")
    bob.send("<message to='%s/owner' type='chat'><body>psst</body></message>" % room)
    assert expect_error(bob, "message", room + "/owner") == ("cancel", "not-allowed")
    res = alice.iq("set", "<query xmlns='%s'><x xmlns='%s' type='submit'>%s</x></query>"
                   % (NS_MUC_OWNER, NS_DATA, field("muc#roomconfig_allowpm", "sometimes")),
                   to=room)
    assert stanza_error(res) == ("modify", "bad-request")
