"""XEP-0153 vCard-based avatars, server side (as XEP-0398 §4 and Prosody's
mod_vcard_legacy): every available presence a local client sends without
an <x xmlns='vcard-temp:x:update'/> of its own gets one, with the SHA-1 of
the decoded PHOTO/BINVAL of the sender's vCard, or an empty <photo/>.

Raw clients check the exact XML; one test uses slixmpp. Every scenario runs
with one and with two workers (alice@localhost and bob@localhost then live
on different workers)."""

import base64
import hashlib

import pytest

import slix
from xmpp_raw import NS_CLIENT, q, server_login, stanza_error, xml_escape

NS_VCARD = "vcard-temp"
NS_UPDATE = "vcard-temp:x:update"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = NS_MUC + "#user"
MUC_SERVICE = "conference.localhost"

# Some image-like bytes, every byte value included.
PHOTO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3 + b"tail"
PHOTO2 = b"GIF89a" + bytes(reversed(range(256))) * 2


@pytest.fixture(params=[1, 2], ids=["1worker", "2workers"])
def srv(tern, request):
    return tern(workers=request.param)


def sha1_hex(data):
    return hashlib.sha1(data).hexdigest()


def wrapped_b64(data, width=76, sep="\n"):
    """base64 broken into lines, as vCard producers write it."""
    b = base64.b64encode(data).decode()
    return sep.join(b[i:i + width] for i in range(0, len(b), width))


def vcard_with_photo(binval, fn="Alice", type_="image/png"):
    return ("<vCard xmlns='%s'><FN>%s</FN><PHOTO><TYPE>%s</TYPE><BINVAL>%s</BINVAL>"
            "</PHOTO></vCard>" % (NS_VCARD, xml_escape(fn), type_, xml_escape(binval)))


def set_vcard(s, payload):
    res = s.iq("set", payload)
    assert res.get("type") == "result", stanza_error(res)


def login(server, jid, presence=True):
    """A raw session that asks for its vCard first, as clients fetch the
    roster or vCard before their initial presence: the server's read of
    the stored vCard at bind has then completed (one worker's storage
    jobs run in order). Then initial presence unless presence=False."""
    s = server_login(server, jid)
    res = s.iq("get", "<vCard xmlns='%s'/>" % NS_VCARD)
    assert res.get("type") == "result", stanza_error(res)
    if presence:
        available(s)
    return s


def is_presence(frm, type_=None):
    return lambda e: (e.tag == q(NS_CLIENT, "presence") and e.get("from") == frm
                      and e.get("type") == type_)


def updates(el):
    return el.findall(q(NS_UPDATE, "x"))


def photo_of(el):
    """The hash in the presence's single x:update: '' for an empty
    <photo/>, None for no x:update at all."""
    xs = updates(el)
    if not xs:
        return None
    assert len(xs) == 1, "several x:update elements"
    photos = xs[0].findall(q(NS_UPDATE, "photo"))
    assert len(photos) == 1, "x:update with %d <photo/>" % len(photos)
    return photos[0].text or ""


def settle(*streams, wait=0.4):
    """Reads and forgets what is still arriving (presence exchanged by
    earlier steps), so that the next expect sees only new stanzas."""
    for s in streams:
        s.pump(wait)
        s.pending.clear()


def subscribe_both(a, b, a_bare, b_bare):
    """Available a and b subscribe to each other."""
    for x, y, x_bare, y_bare in ((a, b, a_bare, b_bare), (b, a, b_bare, a_bare)):
        x.send_presence(to=y_bare, type_="subscribe")
        y.expect(is_presence(x_bare, "subscribe"), what="subscribe")
        y.send_presence(to=x_bare, type_="subscribed")
        x.expect(is_presence(y_bare, "subscribed"), what="subscribed")
    settle(a, b)


def available(s, extra=""):
    """Broadcast available presence; waits for its echo to the sender."""
    s.send_presence(extra=extra)
    return s.expect(is_presence(s.jid), what="own presence echo")


def test_no_vcard_gives_empty_photo(srv):
    """(a) broadcast to a subscribed contact and directed presence both
    carry <x><photo/></x> for a user who never stored a vCard."""
    a = login(srv, "alice@localhost/pc")
    b = login(srv, "bob@localhost/pc")
    c = login(srv, "carol@localhost/pc")
    subscribe_both(a, b, "alice@localhost", "bob@localhost")
    echo = available(a, "<show>chat</show>")
    assert photo_of(echo) == ""  # the user's own resources see it too
    p = b.expect(is_presence(a.jid), what="alice's broadcast presence")
    assert photo_of(p) == ""
    x = updates(p)[0]
    assert len(list(x)) == 1 and not (x[0].text or "")
    assert p.findtext(q(NS_CLIENT, "show")) == "chat"

    # directed presence to someone without a subscription
    settle(c)
    a.send_presence(to=c.jid, extra="<status>just you</status>")
    p = c.expect(is_presence(a.jid), what="directed presence")
    assert photo_of(p) == ""
    assert p.findtext(q(NS_CLIENT, "status")) == "just you"
    for s in (a, b, c):
        s.close()


def test_photo_hash_after_set_and_at_next_login(srv):
    """(b) the SHA-1 of the decoded BINVAL (with line breaks, CRLF and
    spaces in it), at once after the set, and after a new login (read from
    storage); a new photo changes it, a vCard without one empties it."""
    a = login(srv, "alice@localhost/pc")
    b = login(srv, "bob@localhost/pc")
    subscribe_both(a, b, "alice@localhost", "bob@localhost")

    binval = "\n  " + wrapped_b64(PHOTO, 60, "\r\n ") + "\n"
    set_vcard(a, vcard_with_photo(binval))
    available(a, "<show>away</show>")
    p = b.expect(is_presence(a.jid), what="presence after the vCard set")
    assert photo_of(p) == sha1_hex(PHOTO)
    assert p.findtext(q(NS_CLIENT, "show")) == "away"

    # a second resource of the account shares the cached hash
    a2 = login(srv, "alice@localhost/phone")
    assert photo_of(b.expect(is_presence(a2.jid))) == sha1_hex(PHOTO)
    a2.close()
    b.expect(is_presence(a2.jid, "unavailable"), what="phone goes away")

    # a new login reads it from storage
    a.close()
    b.expect(is_presence(a.jid, "unavailable"), what="alice logs out")
    a = login(srv, "alice@localhost/pc")
    assert photo_of(b.expect(is_presence(a.jid), what="after re-login")) == sha1_hex(PHOTO)

    # another photo (76-column lines, as base64.encodebytes writes them)
    set_vcard(a, vcard_with_photo(base64.encodebytes(PHOTO2).decode(), type_="image/gif"))
    available(a)
    assert photo_of(b.expect(is_presence(a.jid))) == sha1_hex(PHOTO2)

    # unpadded base64 is still the same bytes
    set_vcard(a, vcard_with_photo(base64.b64encode(PHOTO).decode().rstrip("=")))
    available(a)
    assert photo_of(b.expect(is_presence(a.jid))) == sha1_hex(PHOTO)

    # a vCard without a photo: back to an empty <photo/>
    set_vcard(a, "<vCard xmlns='%s'><FN>No Photo</FN></vCard>" % NS_VCARD)
    available(a)
    assert photo_of(b.expect(is_presence(a.jid))) == ""
    a.close()
    b.close()


def test_failed_vcard_set_keeps_hash(tern):
    """A vCard set the server refuses (too large) does not change what
    presence advertises."""
    srv = tern(hosts={"localhost": {"registration": "no", "vcard_max_size": "4K"},
                      "example.org": {}})
    a = login(srv, "alice@localhost/pc", presence=False)
    c = login(srv, "carol@localhost/pc")
    set_vcard(a, vcard_with_photo(wrapped_b64(PHOTO)))
    res = a.iq("set", vcard_with_photo(wrapped_b64(PHOTO2 * 8)))
    assert stanza_error(res) == ("modify", "not-acceptable")
    a.send_presence(to=c.jid)
    assert photo_of(c.expect(is_presence(a.jid))) == sha1_hex(PHOTO)
    a.close()
    c.close()


def test_client_x_update_is_kept(srv):
    """(c) the client's own x:update, with a hash or empty ("not ready"),
    goes out as it was: not replaced, not doubled."""
    a = login(srv, "alice@localhost/pc")
    b = login(srv, "bob@localhost/pc")
    subscribe_both(a, b, "alice@localhost", "bob@localhost")
    set_vcard(a, vcard_with_photo(wrapped_b64(PHOTO)))
    own = "0123456789abcdef0123456789abcdef01234567"
    echo = available(a, "<x xmlns='%s'><photo>%s</photo></x>" % (NS_UPDATE, own))
    assert photo_of(echo) == own
    p = b.expect(is_presence(a.jid), what="presence with the client's hash")
    assert photo_of(p) == own

    available(a, "<x xmlns='%s'/>" % NS_UPDATE)
    p = b.expect(is_presence(a.jid), what="presence with an empty x:update")
    xs = updates(p)
    assert len(xs) == 1 and len(list(xs[0])) == 0

    # directed, with the client's empty <photo/>
    a.send_presence(to=b.jid, extra="<x xmlns='%s'><photo/></x>" % NS_UPDATE)
    p = b.expect(is_presence(a.jid), what="directed presence")
    assert photo_of(p) == ""

    # and without: the server's hash again
    available(a)
    assert photo_of(b.expect(is_presence(a.jid))) == sha1_hex(PHOTO)
    a.close()
    b.close()


def test_no_update_on_unavailable_or_subscription_presence(srv):
    """(d) unavailable presence (broadcast, directed, and the one the
    server sends at logout), subscription requests and answers carry no
    x:update."""
    a = login(srv, "alice@localhost/pc")
    b = login(srv, "bob@localhost/pc")
    c = login(srv, "carol@localhost/pc")
    set_vcard(a, vcard_with_photo(wrapped_b64(PHOTO)))
    # subscription stanzas
    a.send_presence(to="bob@localhost", type_="subscribe")
    req = b.expect(is_presence("alice@localhost", "subscribe"))
    assert updates(req) == []
    b.send_presence(to="alice@localhost", type_="subscribed")
    b.send_presence(to="alice@localhost", type_="subscribe")
    a.expect(is_presence("bob@localhost", "subscribe"))
    a.send_presence(to="bob@localhost", type_="subscribed")
    ans = b.expect(is_presence("alice@localhost", "subscribed"))
    assert updates(ans) == []
    settle(a, b, c)
    echo = available(a)
    assert photo_of(echo) == sha1_hex(PHOTO)
    assert photo_of(b.expect(is_presence(a.jid))) == sha1_hex(PHOTO)

    # directed unavailable
    a.send_presence(to=c.jid)
    assert photo_of(c.expect(is_presence(a.jid))) == sha1_hex(PHOTO)
    a.send_presence(to=c.jid, type_="unavailable")
    assert updates(c.expect(is_presence(a.jid, "unavailable"))) == []

    # broadcast unavailable
    a.send_presence(type_="unavailable", extra="<status>bye</status>")
    p = b.expect(is_presence(a.jid, "unavailable"))
    assert updates(p) == []
    assert p.findtext(q(NS_CLIENT, "status")) == "bye"
    available(a)
    assert photo_of(b.expect(is_presence(a.jid))) == sha1_hex(PHOTO)
    # the server's own at logout
    a.close()
    assert updates(b.expect(is_presence(a.jid, "unavailable"))) == []
    b.close()
    c.close()


def test_probe_answer_carries_hash(srv):
    """The presence the server answers a probe with (a contact logging in
    later) is the last broadcast one, with its x:update."""
    a = login(srv, "alice@localhost/pc")
    b = login(srv, "bob@localhost/pc")
    subscribe_both(a, b, "alice@localhost", "bob@localhost")
    set_vcard(a, vcard_with_photo(wrapped_b64(PHOTO)))
    available(a)
    b.close()
    b = server_login(srv, "bob@localhost/later")
    b.send_presence()
    p = b.expect(is_presence(a.jid), what="alice's presence after bob's login")
    assert photo_of(p) == sha1_hex(PHOTO)
    a.close()
    b.close()


def test_muc_join_presence_carries_hash(srv):
    """Presence to a room is directed presence too: the other occupants
    see the hash in the joiner's presence."""
    room = "avatars@" + MUC_SERVICE
    b = login(srv, "bob@localhost/pc")
    b.send("<presence to='%s/bob'><x xmlns='%s'/></presence>" % (room, NS_MUC))
    b.expect(lambda e: is_presence(room + "/bob")(e) and e.find(q(NS_MUC_USER, "x")) is not None,
             what="bob's self-presence")
    res = b.iq("set", "<query xmlns='%s#owner'><x xmlns='jabber:x:data' type='submit'/></query>"
               % NS_MUC, to=room)
    assert res.get("type") == "result", stanza_error(res)

    a = login(srv, "alice@localhost/pc")
    set_vcard(a, vcard_with_photo(wrapped_b64(PHOTO)))
    a.send("<presence to='%s/alice'><x xmlns='%s'/></presence>" % (room, NS_MUC))
    p = b.expect(is_presence(room + "/alice"), what="alice joins")
    assert photo_of(p) == sha1_hex(PHOTO)
    a.close()
    b.close()


def test_slixmpp_sees_hash(srv):
    """slixmpp clients: the receiver finds the hash in the sender's
    presence, and the sender's unavailable has none."""
    async def scenario():
        a = await slix.connect(srv, "alice@localhost/slix", srv.password("alice@localhost"),
                               plugins=["xep_0054"])
        b = await slix.connect(srv, "bob@localhost/slix", srv.password("bob@localhost"))
        try:
            card = a["xep_0054"].make_vcard()
            card["FN"] = "Alice"
            card["PHOTO"]["TYPE"] = "image/png"
            card["PHOTO"]["BINVAL"] = PHOTO
            await a["xep_0054"].publish_vcard(card)
            a.send_presence(pto="bob@localhost/slix", pstatus="with avatar")
            p = await b.next_presence(pred=lambda p: p["from"] == "alice@localhost/slix"
                                      and p["type"] == "available")
            xs = p.xml.findall(q(NS_UPDATE, "x"))
            assert len(xs) == 1
            assert xs[0].findtext(q(NS_UPDATE, "photo")) == sha1_hex(PHOTO)
            a.send_presence(pto="bob@localhost/slix", ptype="unavailable")
            p = await b.next_presence(pred=lambda p: p["from"] == "alice@localhost/slix"
                                      and p["type"] == "unavailable")
            assert p.xml.find(q(NS_UPDATE, "x")) is None
        finally:
            for c in (a, b):
                await c.close()

    slix.run(scenario())


def test_presence_right_after_bind_is_not_delayed(srv):
    """A presence sent before the server has read the vCard goes out at
    once, with the hash or (still unknown) without x:update, never with a
    wrong one; the next one has it."""
    a = login(srv, "alice@localhost/pc", presence=False)
    set_vcard(a, vcard_with_photo(wrapped_b64(PHOTO)))
    a.close()
    c = login(srv, "carol@localhost/pc")
    a = server_login(srv, "alice@localhost/pc")
    a.send_presence(to=c.jid)
    p = c.expect(is_presence(a.jid), what="presence right after bind")
    assert photo_of(p) in (None, sha1_hex(PHOTO))
    res = a.iq("get", "<vCard xmlns='%s'/>" % NS_VCARD)
    assert res.get("type") == "result"
    a.send_presence(to=c.jid)
    assert photo_of(c.expect(is_presence(a.jid))) == sha1_hex(PHOTO)
    a.close()
    c.close()


@pytest.mark.parametrize("photo", [
    "<PHOTO><EXTVAL>https://example.org/alice.png</EXTVAL></PHOTO>",
    "<PHOTO><TYPE>image/png</TYPE><BINVAL>  \n </BINVAL></PHOTO>",
    "<PHOTO><TYPE>image/png</TYPE><BINVAL>not*base64!</BINVAL></PHOTO>",
    "<PHOTO><TYPE>image/png</TYPE><BINVAL>QUJDR</BINVAL></PHOTO>",  # 5 symbols: no bytes
    "<PHOTO/>",
], ids=["extval", "blank", "invalid", "truncated", "empty"])
def test_vcard_without_usable_photo_gives_empty_photo(tern, photo):
    """A PHOTO without image data to hash (a URL, nothing, not base64)
    counts as no photo: an empty <photo/>, at once and after a new login."""
    srv = tern()
    c = login(srv, "carol@localhost/pc")
    a = login(srv, "alice@localhost/pc", presence=False)
    set_vcard(a, vcard_with_photo(wrapped_b64(PHOTO)))
    a.send_presence(to=c.jid)
    assert photo_of(c.expect(is_presence(a.jid))) == sha1_hex(PHOTO)
    set_vcard(a, "<vCard xmlns='%s'><FN>A</FN>%s</vCard>" % (NS_VCARD, photo))
    a.send_presence(to=c.jid)
    assert photo_of(c.expect(is_presence(a.jid))) == ""
    a.close()
    a = login(srv, "alice@localhost/pc", presence=False)
    a.send_presence(to=c.jid)
    assert photo_of(c.expect(is_presence(a.jid))) == ""
    a.close()
    c.close()
