"""Message archive management (XEP-0313 urn:xmpp:mam:2 and #extended),
archiving preferences (XEP-0441) and stanza ids (XEP-0359).

Most tests use the raw client so that the exact XML is checked; one uses
slixmpp's xep_0313 plugin as a real client would. Every test uses its own
accounts, so the archives of one test never show in another. Run with
TERN_TEST_WORKERS=1 and 2: with two workers the two sides of a
conversation usually live on different event loops.
"""

import time
import xml.etree.ElementTree as ET

import pytest

import slix
import xmpp_raw as X
from xmpp_raw import NS_CLIENT, q, server_login, xml_escape

NS_MAM = "urn:xmpp:mam:2"
NS_MAM_EXT = "urn:xmpp:mam:2#extended"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_FWD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"
NS_SID = "urn:xmpp:sid:0"
NS_DATA = "jabber:x:data"
NS_HINTS = "urn:xmpp:hints"
DISCO_INFO = "http://jabber.org/protocol/disco#info"

MAX_PAGE = 100
USERS = {"u%d@localhost" % i: "pw-u%d" % i for i in range(1, 31)}
HOSTS = {"localhost": {"registration": "no", "mam_max_page": str(MAX_PAGE)}}


@pytest.fixture(scope="module")
def server(tern_module):
    return tern_module(users=USERS, hosts=HOSTS)


def login(server, jid):
    return server_login(server, jid)


# ------------------------------------------------------------ helpers

def form(**fields):
    """A submitted MAM form; list values become several <value/>s."""
    out = ["<x xmlns='%s' type='submit'><field var='FORM_TYPE' type='hidden'>"
           "<value>%s</value></field>" % (NS_DATA, NS_MAM)]
    for var, val in fields.items():
        var = var.replace("_", "-")
        vals = val if isinstance(val, list) else [val]
        out.append("<field var='%s'>%s</field>"
                   % (var, "".join("<value>%s</value>" % xml_escape(v) for v in vals)))
    out.append("</x>")
    return "".join(out)


def rsm(max_=None, after=None, before=None):
    parts = []
    if max_ is not None:
        parts.append("<max>%d</max>" % max_)
    if after is not None:
        parts.append("<after>%s</after>" % xml_escape(after))
    if before is not None:
        parts.append("<before>%s</before>" % xml_escape(before) if before else "<before/>")
    return "<set xmlns='%s'>%s</set>" % (NS_RSM, "".join(parts)) if parts else ""


def query(s, body="", to=None, timeout=30):
    """Runs one MAM query; returns (iq response, [result messages]).
    Result messages must all come before the iq result (§4.2)."""
    qid = s.next_id()
    iid = s.next_id()
    to_attr = " to='%s'" % to if to else ""
    s.send("<iq type='set' id='%s'%s><query xmlns='%s' queryid='%s'>%s</query></iq>"
           % (iid, to_attr, NS_MAM, qid, body))
    results, others = [], []
    while True:
        el = s.next(timeout)
        res = el.find(q(NS_MAM, "result"))
        if el.tag == q(NS_CLIENT, "message") and res is not None:
            assert res.get("queryid") == qid
            assert el.get("to") == s.jid
            results.append(res)
        elif el.tag == q(NS_CLIENT, "iq") and el.get("id") == iid:
            break
        else:
            others.append(el)
    s.pending.extendleft(reversed(others))
    return el, results


def body_of(res):
    m = res.find("%s/%s" % (q(NS_FWD, "forwarded"), q(NS_CLIENT, "message")))
    assert m is not None, ET.tostring(res)
    return m.findtext(q(NS_CLIENT, "body"))


def stamp_of(res):
    return res.find("%s/%s" % (q(NS_FWD, "forwarded"), q(NS_DELAY, "delay"))).get("stamp")


def fin_of(iq):
    assert iq.get("type") == "result", ET.tostring(iq)
    fin = iq.find(q(NS_MAM, "fin"))
    assert fin is not None
    return fin


def error_of(iq):
    assert iq.get("type") == "error", ET.tostring(iq)
    return X.stanza_error(iq)


def all_results(s, body=""):
    iq, res = query(s, body + rsm(max_=MAX_PAGE))
    assert fin_of(iq).get("complete") == "true"
    return res


def sync(s):
    """A round trip on s: everything s sent before is routed (and its
    archive write queued before any later query of the same account)."""
    assert s.ping_server()


def send_many(s, to, bodies, extra=""):
    s.send("".join("<message to='%s' type='chat' id='m%d'><body>%s</body>%s</message>"
                   % (to, i, xml_escape(b), extra) for i, b in enumerate(bodies)))
    sync(s)


def wait_archived(s, n, body="", timeout=15):
    """Messages sent by someone else reach this account's archive through
    its own worker; wait until n are there."""
    deadline = time.monotonic() + timeout
    while True:
        res = all_results(s, body)
        if len(res) >= n or time.monotonic() > deadline:
            return res
        time.sleep(0.1)


# -------------------------------------------------------------- tests

def test_disco_and_form(server):
    with login(server, "u1@localhost/a") as s:
        iq = s.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to="u1@localhost")
        feats = {f.get("var") for f in iq.iter(q(DISCO_INFO, "feature"))}
        assert {NS_MAM, NS_MAM_EXT, NS_SID} <= feats
        iq = s.iq("get", "<query xmlns='%s'/>" % NS_MAM)
        assert iq.get("type") == "result"
        x = iq.find("%s/%s" % (q(NS_MAM, "query"), q(NS_DATA, "x")))
        vars_ = {f.get("var") for f in x.iter(q(NS_DATA, "field"))}
        assert {"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"} <= vars_


def test_conversation_in_both_archives_with_stanza_id(server):
    with login(server, "u2@localhost/a") as a, login(server, "u3@localhost/b") as b:
        b.send_presence()
        b.expect(lambda e: e.tag == q(NS_CLIENT, "presence"))
        a.send_message("u3@localhost", "hello u3")
        got = b.expect_message(pred=lambda e: e.findtext(q(NS_CLIENT, "body")) == "hello u3")
        sids = got.findall(q(NS_SID, "stanza-id"))
        assert len(sids) == 1 and sids[0].get("by") == "u3@localhost"
        b.send_message("u2@localhost/a", "hello u2")
        got2 = a.expect_message(pred=lambda e: e.findtext(q(NS_CLIENT, "body")) == "hello u2")
        assert got2.find(q(NS_SID, "stanza-id")).get("by") == "u2@localhost"
        sync(a)
        sync(b)

        ra = wait_archived(a, 2)
        rb = wait_archived(b, 2)
        assert [body_of(r) for r in ra] == ["hello u3", "hello u2"]
        assert [body_of(r) for r in rb] == ["hello u3", "hello u2"]
        # the delivered stanza-id is the recipient's archive id
        assert rb[0].get("id") == sids[0].get("id")
        assert ra[1].get("id") == got2.find(q(NS_SID, "stanza-id")).get("id")
        # two archives, two ids for one message
        assert ra[0].get("id") != rb[0].get("id")
        # the archived stanza keeps its addresses
        m = ra[0].find("%s/%s" % (q(NS_FWD, "forwarded"), q(NS_CLIENT, "message")))
        assert m.get("to") == "u3@localhost" and m.get("from") == "u2@localhost/a"
        assert stamp_of(ra[0]).endswith("Z")


def test_spoofed_stanza_id_removed(server):
    with login(server, "u4@localhost/a") as a, login(server, "u5@localhost/b") as b:
        b.send_presence()
        b.expect(lambda e: e.tag == q(NS_CLIENT, "presence"))
        a.send("<message to='u5@localhost' type='chat'><body>spoof</body>"
               "<stanza-id xmlns='%s' by='u5@localhost' id='forged'/>"
               "<stanza-id xmlns='%s' by='elsewhere.example' id='kept'/></message>"
               % (NS_SID, NS_SID))
        got = b.expect_message()
        sids = [(s.get("by"), s.get("id")) for s in got.findall(q(NS_SID, "stanza-id"))]
        assert ("elsewhere.example", "kept") in sids
        mine = [i for by, i in sids if by == "u5@localhost"]
        assert len(mine) == 1 and mine[0] != "forged"
        res = wait_archived(b, 1)
        assert [r.get("id") for r in res] == mine


def test_paging_500(server):
    bodies = ["msg %03d" % i for i in range(500)]
    with login(server, "u6@localhost/a") as a:
        # u7 is offline: archived on arrival all the same (and kept offline)
        send_many(a, "u7@localhost", bodies)

        # forward through the sender's archive
        seen, after, pages = [], None, 0
        while True:
            iq, res = query(a, rsm(max_=50, after=after))
            fin = fin_of(iq)
            pages += 1
            seen += res
            assert len(res) == 50
            if res:
                assert fin.findtext("%s/%s" % (q(NS_RSM, "set"), q(NS_RSM, "first"))) \
                    == res[0].get("id")
                after = fin.findtext("%s/%s" % (q(NS_RSM, "set"), q(NS_RSM, "last")))
                assert after == res[-1].get("id")
            if fin.get("complete") == "true":
                break
            assert pages < 20
        assert [body_of(r) for r in seen] == bodies
        ids = [r.get("id") for r in seen]
        assert len(set(ids)) == 500
        # the complete flag is on the last page only
        assert pages == 10

        # backward from the end: an empty <before/> is the last page
        back, before = [], ""
        for page in range(10):
            iq, res = query(a, rsm(max_=50, before=before))
            fin = fin_of(iq)
            assert len(res) == 50
            back = res + back
            before = res[0].get("id")
            assert (fin.get("complete") == "true") == (page == 9)
        assert [r.get("id") for r in back] == ids

        # the host's page limit caps a larger max
        iq, res = query(a, rsm(max_=1000))
        assert len(res) == MAX_PAGE and fin_of(iq).get("complete") != "true"
        # max 0 asks for the count alone
        iq, res = query(a, rsm(max_=0))
        assert res == []
        assert fin_of(iq).findtext("%s/%s" % (q(NS_RSM, "set"), q(NS_RSM, "count"))) == "500"

    with login(server, "u7@localhost/b") as b:
        deadline = time.monotonic() + 15
        while True:
            iq, _ = query(b, rsm(max_=0))
            count = fin_of(iq).findtext("%s/%s" % (q(NS_RSM, "set"), q(NS_RSM, "count")))
            if count == "500" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert count == "500"
        iq, res = query(b, rsm(max_=MAX_PAGE))
        assert [body_of(r) for r in res] == bodies[:MAX_PAGE]
        iq, res = query(b, rsm(max_=10, before=""))
        assert [body_of(r) for r in res] == bodies[-10:]


def test_filters(server):
    with login(server, "u8@localhost/a") as a, login(server, "u9@localhost/r1") as b:
        b.send_presence()
        b.expect(lambda e: e.tag == q(NS_CLIENT, "presence"))
        for i in range(3):
            a.send_message("u9@localhost/r1", "full %d" % i)
            time.sleep(0.01)
        for i in range(2):
            a.send_message("u9@localhost", "bare %d" % i)
            time.sleep(0.01)
        for i in range(2):
            a.send_message("u10@localhost", "other %d" % i)
            time.sleep(0.01)
        sync(a)
        everything = all_results(a)
        assert len(everything) == 7
        ids = [r.get("id") for r in everything]

        res = all_results(a, form(**{"with": "u9@localhost"}))
        assert [body_of(r) for r in res] == ["full 0", "full 1", "full 2", "bare 0", "bare 1"]
        res = all_results(a, form(**{"with": "u9@localhost/r1"}))
        assert [body_of(r) for r in res] == ["full 0", "full 1", "full 2"]
        res = all_results(a, form(**{"with": "u10@localhost"}))
        assert [body_of(r) for r in res] == ["other 0", "other 1"]
        res = all_results(a, form(**{"with": "nobody@localhost"}))
        assert res == []

        # start and end are inclusive
        res = all_results(a, form(start=stamp_of(everything[2]), end=stamp_of(everything[4])))
        assert [r.get("id") for r in res] == ids[2:5]
        res = all_results(a, form(start=stamp_of(everything[5])))
        assert [r.get("id") for r in res] == ids[5:]
        res = all_results(a, form(end="2000-01-01T00:00:00Z"))
        assert res == []
        # #extended
        res = all_results(a, form(after_id=ids[1], before_id=ids[5]))
        assert [r.get("id") for r in res] == ids[2:5]
        res = all_results(a, form(ids=[ids[6], ids[0], ids[3]]))
        assert [r.get("id") for r in res] == [ids[0], ids[3], ids[6]]
        res = all_results(a, form(**{"with": "u9@localhost", "after-id": ids[3]}))
        assert [r.get("id") for r in res] == [ids[4]]


def test_metadata(server):
    with login(server, "u11@localhost/a") as a:
        iq = a.iq("get", "<metadata xmlns='%s'/>" % NS_MAM)
        meta = iq.find(q(NS_MAM, "metadata"))
        assert meta is not None and len(list(meta)) == 0
        send_many(a, "u12@localhost", ["one", "two", "three"])
        res = all_results(a)
        iq = a.iq("get", "<metadata xmlns='%s'/>" % NS_MAM)
        meta = iq.find(q(NS_MAM, "metadata"))
        assert meta.find(q(NS_MAM, "start")).get("id") == res[0].get("id")
        assert meta.find(q(NS_MAM, "end")).get("id") == res[-1].get("id")
        assert meta.find(q(NS_MAM, "end")).get("timestamp") == stamp_of(res[-1])


@pytest.mark.parametrize("body,cond", [
    (rsm(max_=10, after="no-such-id"), "item-not-found"),
    (rsm(max_=10, before="no-such-id"), "item-not-found"),
    (form(after_id="no-such-id"), "item-not-found"),
    (form(before_id="no-such-id"), "item-not-found"),
    (form(colour="blue"), "bad-request"),
    (form(start="yesterday"), "bad-request"),
    (form(end="2024-13-01T00:00:00Z"), "bad-request"),
    (form(**{"with": "@@bad"}), "bad-request"),
    ("<x xmlns='%s' type='submit'><field var='FORM_TYPE'><value>urn:other</value></field></x>"
     % NS_DATA, "bad-request"),
    (rsm(max_=10).replace("<max>10</max>", "<max>many</max>"), "bad-request"),
    (rsm(max_=10).replace("<max>10</max>", "<index>3</index>"), "feature-not-implemented"),
    ("<flip-page/>", "feature-not-implemented"),
])
def test_query_errors(server, body, cond):
    with login(server, "u13@localhost/a") as a:
        send_many(a, "u14@localhost", ["x"])
        iq, res = query(a, body)
        assert res == []
        assert error_of(iq)[1] == cond


def test_other_users_archive_forbidden(server):
    with login(server, "u15@localhost/a") as a, login(server, "u16@localhost/b") as b:
        send_many(b, "u15@localhost", ["secret"])
        iq, res = query(a, rsm(max_=10), to="u16@localhost")
        assert res == []
        assert error_of(iq) == ("cancel", "forbidden")
        iq = a.iq("get", "<prefs xmlns='%s'/>" % NS_MAM, to="u16@localhost")
        assert error_of(iq)[1] == "forbidden"
        # the own bare JID as 'to' is the same as no 'to'
        assert len(all_results(b)) == 1
        iq, res = query(b, rsm(max_=10), to="u16@localhost")
        assert len(res) == 1 and fin_of(iq).get("complete") == "true"


def test_prefs(server):
    with login(server, "u17@localhost/a") as a, login(server, "u18@localhost/b") as b:
        for s in (a, b):
            s.send_presence()
            s.expect(lambda e: e.tag == q(NS_CLIENT, "presence"))
        iq = a.iq("get", "<prefs xmlns='%s'/>" % NS_MAM)
        assert iq.find(q(NS_MAM, "prefs")).get("default") == "always"

        iq = a.iq("set", "<prefs xmlns='%s' default='never'><always><jid>u19@localhost</jid>"
                  "</always><never/></prefs>" % NS_MAM)
        p = iq.find(q(NS_MAM, "prefs"))
        assert p.get("default") == "never"
        assert [j.text for j in p.iter(q(NS_MAM, "jid"))] == ["u19@localhost"]
        iq = a.iq("get", "<prefs xmlns='%s'/>" % NS_MAM)
        assert iq.find(q(NS_MAM, "prefs")).get("default") == "never"

        send_many(a, "u18@localhost", ["not kept by u17"])
        send_many(a, "u19@localhost", ["kept by u17"])
        send_many(b, "u17@localhost", ["incoming, not kept"])
        got = a.expect_message(pred=lambda e: e.findtext(q(NS_CLIENT, "body"))
                               == "incoming, not kept")
        # not archived, so no archive id either
        assert got.find(q(NS_SID, "stanza-id")) is None
        got = b.expect_message(pred=lambda e: e.findtext(q(NS_CLIENT, "body"))
                               == "not kept by u17")
        assert got.find(q(NS_SID, "stanza-id")).get("by") == "u18@localhost"
        time.sleep(0.3)
        assert [body_of(r) for r in all_results(a)] == ["kept by u17"]
        # the other side's archive follows its own (default) preferences
        assert [body_of(r) for r in all_results(b)] == ["not kept by u17", "incoming, not kept"]

        # 'never' list beats a default of always
        a.iq("set", "<prefs xmlns='%s' default='always'><never><jid>u18@localhost</jid>"
             "</never></prefs>" % NS_MAM)
        send_many(a, "u18@localhost", ["still not kept"])
        send_many(a, "u20@localhost", ["kept again"])
        assert [body_of(r) for r in all_results(a)] == ["kept by u17", "kept again"]

        iq = a.iq("set", "<prefs xmlns='%s' default='sometimes'/>" % NS_MAM)
        assert error_of(iq)[1] == "bad-request"


def test_hints_and_types(server):
    with login(server, "u21@localhost/a") as a:
        a.send("<message to='u22@localhost' type='chat'><body>no-store</body>"
               "<no-store xmlns='%s'/></message>" % NS_HINTS)
        a.send("<message to='u22@localhost' type='chat'><body>no-permanent-store</body>"
               "<no-permanent-store xmlns='%s'/></message>" % NS_HINTS)
        a.send("<message to='u22@localhost' type='chat'>"
               "<active xmlns='http://jabber.org/protocol/chatstates'/></message>")
        a.send("<message to='u22@localhost' type='headline'><body>headline</body></message>")
        a.send("<message to='u22@localhost' type='chat'><store xmlns='%s'/>"
               "<encrypted xmlns='eu.siacs.conversations.axolotl'/></message>" % NS_HINTS)
        a.send("<message to='u22@localhost'><body>normal</body>"
               "<origin-id xmlns='%s' id='origin-1'/></message>" % NS_SID)
        sync(a)
        res = all_results(a)
        assert len(res) == 2
        assert res[0].find(".//{eu.siacs.conversations.axolotl}encrypted") is not None
        assert body_of(res[1]) == "normal"
        assert res[1].find(".//%s" % q(NS_SID, "origin-id")).get("id") == "origin-1"


def test_slixmpp_client(server):
    async def main():
        a = await slix.connect(server, "u23@localhost/s", USERS["u23@localhost"],
                               plugins=["xep_0030", "xep_0059", "xep_0297", "xep_0313"])
        b = await slix.connect(server, "u24@localhost/s", USERS["u24@localhost"])
        try:
            for i in range(25):
                a.send_message(mto="u24@localhost", mbody="slix %d" % i, mtype="chat")
            info = await a["xep_0030"].get_info(jid="u23@localhost")
            assert NS_MAM in info["disco_info"]["features"]
            got = []
            async for msg in a["xep_0313"].iterate(rsm={"max": 10}):
                got.append(msg["mam_result"]["forwarded"]["stanza"]["body"])
            assert got == ["slix %d" % i for i in range(25)]
            got = []
            async for msg in a["xep_0313"].iterate(with_jid="u24@localhost", reverse=True,
                                                   rsm={"max": 10}):
                got.append(msg["mam_result"]["forwarded"]["stanza"]["body"])
            assert got == ["slix %d" % i for i in reversed(range(25))]
        finally:
            await a.close()
            await b.close()
    slix.run(main())


def test_archive_survives_restart(tern):
    srv = tern(users=USERS, hosts=HOSTS)
    with login(srv, "u1@localhost/a") as a:
        send_many(a, "u2@localhost", ["before restart %d" % i for i in range(3)])
        before = all_results(a)
        assert len(before) == 3
    srv.shutdown()
    srv.start()
    with login(srv, "u1@localhost/a") as a:
        after = all_results(a)
        assert [r.get("id") for r in after] == [r.get("id") for r in before]
        assert [body_of(r) for r in after] == ["before restart %d" % i for i in range(3)]
    with login(srv, "u2@localhost/b") as b:
        assert len(all_results(b)) == 3


def test_retention(tern):
    hosts = {"localhost": {"registration": "no", "mam_retention": "1"}}
    srv = tern(users=USERS, hosts=hosts)
    with login(srv, "u1@localhost/a") as a:
        send_many(a, "u2@localhost", ["old"])
        assert len(all_results(a)) == 1
        time.sleep(2.2)
        send_many(a, "u2@localhost", ["new"])
        assert [body_of(r) for r in all_results(a)] == ["new"]


def test_prefs_roster_default(server):
    with login(server, "u25@localhost/a") as a, login(server, "u26@localhost/b") as b:
        for s in (a, b):
            s.send_presence()
            s.expect(lambda e: e.tag == q(NS_CLIENT, "presence"))
        a.send_presence(to="u26@localhost", type_="subscribe")
        b.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") == "subscribe")
        b.send_presence(to="u25@localhost", type_="subscribed")
        a.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") == "subscribed")
        iq = a.iq("set", "<prefs xmlns='%s' default='roster'/>" % NS_MAM)
        assert iq.find(q(NS_MAM, "prefs")).get("default") == "roster"
        send_many(a, "u26@localhost", ["to a contact"])
        send_many(a, "u27@localhost", ["to a stranger"])
        assert [body_of(r) for r in all_results(a)] == ["to a contact"]
