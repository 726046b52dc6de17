"""Personal eventing (XEP-0163) on account bare JIDs, with raw clients so
that every stanza can be checked exactly: auto-create on publish, +notify
filtering through entity capabilities (XEP-0115), the last item on
presence, roster-governed access, publish-options for OMEMO-style nodes
(XEP-0384), and persistence across a restart. Every scenario runs with one
and with two workers (alice and bob then live on different workers)."""

import base64
import hashlib

import pytest

from xmpp_raw import NS_CLIENT, q, server_login, stanza_error

NS_PS = "http://jabber.org/protocol/pubsub"
NS_PS_OWNER = NS_PS + "#owner"
NS_PS_EVENT = NS_PS + "#event"
NS_PS_ERRORS = NS_PS + "#errors"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_DATA = "jabber:x:data"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_NICK = "http://jabber.org/protocol/nick"
NS_AVATAR_META = "urn:xmpp:avatar:metadata"
NS_OMEMO_DEVICES = "eu.siacs.conversations.axolotl.devicelist"
CAPS_NODE = "https://tern.example/test"


@pytest.fixture(params=[1, 2], ids=["1worker", "2workers"])
def srv(tern, request):
    return tern(workers=request.param)


def ver_of(identity, features):
    s = identity + "<" + "".join(f + "<" for f in sorted(features))
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


def is_presence(frm, type_=None):
    return lambda e: (e.tag == q(NS_CLIENT, "presence") and e.get("from") == frm
                      and e.get("type") == type_)


def is_caps_query(e):
    return (e.tag == q(NS_CLIENT, "iq") and e.get("type") == "get"
            and e.find(q(DISCO_INFO, "query")) is not None)


def event_of(e, node=None):
    """The <items/> of a PEP event message, or None."""
    if e.tag != q(NS_CLIENT, "message"):
        return None
    ev = e.find(q(NS_PS_EVENT, "event"))
    items = ev.find(q(NS_PS_EVENT, "items")) if ev is not None else None
    if items is None or (node and items.get("node") != node):
        return None
    return items


def settle(*streams, wait=0.4):
    for s in streams:
        s.pump(wait)
        s.pending.clear()


def online(server, jid, notify=(), answer_caps=True):
    """A raw session announcing caps with <ns>+notify for each ns in
    notify; answers the server's disco#info of node#ver."""
    feats = [DISCO_INFO, NS_CAPS] + [n + "+notify" for n in notify]
    ver = ver_of("client/pc//T", feats)
    s = server_login(server, jid)
    s.send("<presence><c xmlns='%s' hash='sha-1' node='%s' ver='%s'/></presence>"
           % (NS_CAPS, CAPS_NODE, ver))
    s.caps_feats = feats
    if answer_caps:
        answer_caps_query(s, optional=True)
    return s


def answer_caps_query(s, optional=False, timeout=3.0):
    try:
        iq = s.expect(is_caps_query, timeout=timeout, what="caps query")
    except (TimeoutError, AssertionError):
        if optional:
            return False
        raise
    feats = "".join("<feature var='%s'/>" % f for f in s.caps_feats)
    s.send("<iq type='result' id='%s' to='%s'><query xmlns='%s' node='%s'>"
           "<identity category='client' type='pc' name='T'/>%s</query></iq>"
           % (iq.get("id"), iq.get("from"), DISCO_INFO,
              iq.find(q(DISCO_INFO, "query")).get("node"), feats))
    return True


def subscribe_both(a, b, a_bare, b_bare):
    for x, y, x_bare, y_bare in ((a, b, a_bare, b_bare), (b, a, b_bare, a_bare)):
        x.send("<presence to='%s' type='subscribe'/>" % y_bare)
        y.expect(is_presence(x_bare, "subscribe"), what="subscribe")
        y.send("<presence to='%s' type='subscribed'/>" % x_bare)
        x.expect(is_presence(y_bare, "subscribed"), what="subscribed")
    settle(a, b, wait=0.6)


def publish(s, node, item_id, payload, options=None):
    po = ""
    if options:
        po = ("<publish-options><x xmlns='%s' type='submit'>"
              "<field var='FORM_TYPE' type='hidden'><value>%s#publish-options</value></field>%s"
              "</x></publish-options>"
              % (NS_DATA, NS_PS, "".join("<field var='%s'><value>%s</value></field>" % kv
                                          for kv in options.items())))
    return s.iq("set", "<pubsub xmlns='%s'><publish node='%s'><item id='%s'>%s</item></publish>%s"
                "</pubsub>" % (NS_PS, node, item_id, payload, po))


def ok(res):
    assert res.get("type") == "result", stanza_error(res)
    return res


def nick(n):
    return "<nick xmlns='%s'>%s</nick>" % (NS_NICK, n)


def expect_event(s, node, frm, what="PEP event"):
    return s.expect(lambda e: event_of(e, node) is not None and e.get("from") == frm,
                    what=what)


def no_event(s, node, wait=1.0):
    s.pump(wait)
    got = [e for e in s.pending if event_of(e, node) is not None]
    s.pending.clear()
    assert not got, "unexpected event: %r" % got


def test_disco_identity_and_features(srv):
    """§6.1: the account's bare JID is a pubsub/pep entity with the
    publish-options feature clients check before publishing OMEMO keys."""
    a = server_login(srv, "alice@localhost/pc")
    res = ok(a.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to="alice@localhost"))
    qe = res.find(q(DISCO_INFO, "query"))
    ids = [(i.get("category"), i.get("type")) for i in qe.findall(q(DISCO_INFO, "identity"))]
    assert ("pubsub", "pep") in ids
    feats = {f.get("var") for f in qe.findall(q(DISCO_INFO, "feature"))}
    for f in ("#publish", "#publish-options", "#auto-create", "#last-published",
              "#filtered-notifications", "#access-presence"):
        assert NS_PS + f in feats, f
    a.close()


def test_publish_notifies_contacts_by_notify_caps(srv):
    """§4.3: auto-create on first publish; the owner's own resource and a
    subscribed contact whose caps have nick+notify get the event from the
    bare JID; a contact without +notify and a stranger get nothing."""
    a = online(srv, "alice@localhost/pc", [NS_NICK])
    b = online(srv, "bob@localhost/pc", [NS_NICK])
    c = online(srv, "carol@localhost/pc", [])
    subscribe_both(a, b, "alice@localhost", "bob@localhost")
    subscribe_both(a, c, "alice@localhost", "carol@localhost")
    d = online(srv, "zoe@localhost/pc", [NS_NICK])
    settle(a, b, c, d)
    res = ok(publish(a, NS_NICK, "current", nick("Ally")))
    pub = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "publish"))
    assert pub.get("node") == NS_NICK
    for s in (a, b):
        m = expect_event(s, NS_NICK, "alice@localhost")
        item = event_of(m).find(q(NS_PS_EVENT, "item"))
        assert item.get("id") == "current"
        assert item.find(q(NS_NICK, "nick")).text == "Ally"
        assert m.get("to") == s.jid
    no_event(c, NS_NICK)
    no_event(d, NS_NICK)
    for s in (a, b, c, d):
        s.close()


def test_last_item_on_presence(srv):
    """§4.3.2 / §6.1.7: a contact coming online with +notify gets the
    newest item; a stranger who asks for the items of a presence-access
    node is refused (§4.5, presence-subscription-required)."""
    a = online(srv, "alice@localhost/pc", [NS_NICK])
    b = online(srv, "bob@localhost/pc", [NS_NICK])
    subscribe_both(a, b, "alice@localhost", "bob@localhost")
    ok(publish(a, NS_NICK, "current", nick("Ally")))
    expect_event(b, NS_NICK, "alice@localhost")
    b.close()
    b2 = online(srv, "bob@localhost/phone", [NS_NICK])
    m = expect_event(b2, NS_NICK, "alice@localhost", what="last item on presence")
    assert event_of(m).find(q(NS_PS_EVENT, "item")).find(q(NS_NICK, "nick")).text == "Ally"
    # items by a contact (bare JID 'to') and refusal for a stranger
    res = ok(b2.iq("get", "<pubsub xmlns='%s'><items node='%s'/></pubsub>" % (NS_PS, NS_NICK),
                   to="alice@localhost"))
    items = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "items"))
    assert [i.get("id") for i in items.findall(q(NS_PS, "item"))] == ["current"]
    d = server_login(srv, "zoe@localhost/pc")
    res = d.iq("get", "<pubsub xmlns='%s'><items node='%s'/></pubsub>" % (NS_PS, NS_NICK),
               to="alice@localhost")
    assert stanza_error(res) == ("auth", "not-authorized")
    assert res.find(q(NS_CLIENT, "error")).find(
        q(NS_PS_ERRORS, "presence-subscription-required")) is not None
    for s in (a, b2, d):
        s.close()


def test_omemo_devicelist_publish_options(srv):
    """XEP-0384 with XEP-0060 §7.1.5: publish-options access_model=open
    creates an open node anyone may read; a later publish whose
    preconditions do not match is refused with precondition-not-met and
    nothing is stored."""
    a = online(srv, "alice@localhost/pc", [NS_OMEMO_DEVICES])
    dl = "<list xmlns='%s'><device id='1234'/></list>" % NS_OMEMO_DEVICES
    ok(publish(a, NS_OMEMO_DEVICES, "current", dl, {"pubsub#access_model": "open"}))
    d = server_login(srv, "zoe@localhost/pc")
    res = ok(d.iq("get", "<pubsub xmlns='%s'><items node='%s'/></pubsub>"
                  % (NS_PS, NS_OMEMO_DEVICES), to="alice@localhost"))
    got = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "items")).find(q(NS_PS, "item"))
    assert got.find(q(NS_OMEMO_DEVICES, "list")).find(q(NS_OMEMO_DEVICES, "device")).get("id") \
        == "1234"
    dl2 = "<list xmlns='%s'><device id='999'/></list>" % NS_OMEMO_DEVICES
    res = publish(a, NS_OMEMO_DEVICES, "current", dl2, {"pubsub#access_model": "presence"})
    assert stanza_error(res) == ("cancel", "conflict")
    assert res.find(q(NS_CLIENT, "error")).find(q(NS_PS_ERRORS, "precondition-not-met")) \
        is not None
    res = ok(d.iq("get", "<pubsub xmlns='%s'><items node='%s'/></pubsub>"
                  % (NS_PS, NS_OMEMO_DEVICES), to="alice@localhost"))
    got = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "items")).find(q(NS_PS, "item"))
    assert got.find(q(NS_OMEMO_DEVICES, "list")).find(q(NS_OMEMO_DEVICES, "device")).get("id") \
        == "1234"
    # max_items=max keeps many bundles-like items
    for i in range(3):
        ok(publish(a, "urn:test:many", "i%d" % i, "<x xmlns='urn:test'/>",
                   {"pubsub#max_items": "max", "pubsub#access_model": "open"}))
    res = ok(d.iq("get", "<pubsub xmlns='%s'><items node='urn:test:many'/></pubsub>" % NS_PS,
                  to="alice@localhost"))
    assert len(res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "items")).findall(q(NS_PS, "item"))) \
        == 3
    a.close()
    d.close()


def test_only_owner_publishes(srv):
    """§4.2 / XEP-0060 §7.1.3.1: a contact publishing to someone else's
    PEP node is forbidden; creating a node there too."""
    a = online(srv, "alice@localhost/pc", [NS_NICK])
    ok(publish(a, NS_NICK, "current", nick("Ally")))
    b = server_login(srv, "bob@localhost/pc")
    res = b.iq("set", "<pubsub xmlns='%s'><publish node='%s'><item>%s</item></publish></pubsub>"
               % (NS_PS, NS_NICK, nick("Mallory")), to="alice@localhost")
    assert stanza_error(res) == ("auth", "forbidden")
    res = b.iq("set", "<pubsub xmlns='%s'><create node='x'/></pubsub>" % NS_PS,
               to="alice@localhost")
    assert stanza_error(res) == ("auth", "forbidden")
    res = ok(a.iq("get", "<pubsub xmlns='%s'><items node='%s'/></pubsub>" % (NS_PS, NS_NICK)))
    item = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "items")).find(q(NS_PS, "item"))
    assert item.find(q(NS_NICK, "nick")).text == "Ally"
    a.close()
    b.close()


def test_persists_across_restart(tern):
    srv = tern(workers=2)
    a = online(srv, "alice@localhost/pc", [NS_NICK])
    ok(publish(a, NS_NICK, "current", nick("Before")))
    ok(a.iq("get", "<pubsub xmlns='%s'><items node='%s'/></pubsub>" % (NS_PS, NS_NICK)))
    a.close()
    assert srv.shutdown() == 0
    srv.start()
    a = server_login(srv, "alice@localhost/pc")
    res = ok(a.iq("get", "<pubsub xmlns='%s'><items node='%s'/></pubsub>" % (NS_PS, NS_NICK)))
    item = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "items")).find(q(NS_PS, "item"))
    assert item.find(q(NS_NICK, "nick")).text == "Before"
    a.close()


def test_bad_input_refused_and_nothing_stored(tern):
    """XEP-0060 §7.1.3: a payload over pubsub_max_payload gets
    not-acceptable + payload-too-big, an item id over 1024 bytes
    not-acceptable, an invalid node configuration not-acceptable (§8.2.5);
    none of them changes what is stored."""
    srv = tern(hosts={"localhost": {"pubsub_max_payload": "2K"}},
               users={"alice@localhost": "alice-secret"})
    a = online(srv, "alice@localhost/pc", [NS_NICK])
    ok(publish(a, NS_NICK, "current", nick("Small")))
    res = publish(a, NS_NICK, "current", nick("x" * 3000))
    assert stanza_error(res) == ("modify", "not-acceptable")
    assert res.find(q(NS_CLIENT, "error")).find(q(NS_PS_ERRORS, "payload-too-big")) is not None
    res = publish(a, NS_NICK, "i" * 1025, nick("Long id"))
    assert stanza_error(res) == ("modify", "not-acceptable")
    res = publish(a, "urn:test:big", "x", nick("y" * 3000))
    assert stanza_error(res) == ("modify", "not-acceptable")
    res = a.iq("set", "<pubsub xmlns='%s'><configure node='%s'><x xmlns='%s' type='submit'>"
               "<field var='FORM_TYPE' type='hidden'><value>%s#node_config</value></field>"
               "<field var='pubsub#max_items'><value>lots</value></field></x></configure>"
               "</pubsub>" % (NS_PS_OWNER, NS_NICK, NS_DATA, NS_PS))
    assert stanza_error(res) == ("modify", "not-acceptable")
    res = ok(a.iq("get", "<pubsub xmlns='%s'><items node='%s'/></pubsub>" % (NS_PS, NS_NICK)))
    items = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "items")).findall(q(NS_PS, "item"))
    assert [(i.get("id"), i.find(q(NS_NICK, "nick")).text) for i in items] == [("current", "Small")]
    res = a.iq("get", "<pubsub xmlns='%s'><items node='urn:test:big'/></pubsub>" % NS_PS)
    assert stanza_error(res) == ("cancel", "item-not-found")
    a.close()


def test_roster_access_model_by_group(srv):
    """XEP-0060 §4.5 roster model: only contacts in an allowed roster
    group of the owner may read the node."""
    a = online(srv, "alice@localhost/pc", [])
    for contact, group in (("bob@localhost", "Friends"), ("carol@localhost", "Work")):
        ok(a.iq("set", "<query xmlns='jabber:iq:roster'><item jid='%s'><group>%s</group></item>"
                "</query>" % (contact, group)))
    ok(publish(a, "urn:test:friends", "1", "<x xmlns='urn:test'/>",
               {"pubsub#access_model": "roster", "pubsub#roster_groups_allowed": "Friends"}))
    b = server_login(srv, "bob@localhost/pc")
    c = server_login(srv, "carol@localhost/pc")
    ok(b.iq("get", "<pubsub xmlns='%s'><items node='urn:test:friends'/></pubsub>" % NS_PS,
            to="alice@localhost"))
    res = c.iq("get", "<pubsub xmlns='%s'><items node='urn:test:friends'/></pubsub>" % NS_PS,
               to="alice@localhost")
    assert stanza_error(res) == ("auth", "not-authorized")
    assert res.find(q(NS_CLIENT, "error")).find(q(NS_PS_ERRORS, "not-in-roster-group")) \
        is not None
    for s in (a, b, c):
        s.close()


NS_AVATAR_DATA = "urn:xmpp:avatar:data"
NS_VCARD = "vcard-temp"
NS_VCARD_UPDATE = "vcard-temp:x:update"


def test_xep0398_pep_avatar_becomes_vcard_photo(srv):
    """XEP-0398 §3.1 and §4: an XEP-0084 avatar (data, then metadata)
    becomes the vCard's PHOTO, the rest of the vCard kept, and the next
    presence carries its SHA-1; empty metadata removes the photo."""
    img = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2
    sha = hashlib.sha1(img).hexdigest()
    b64 = base64.b64encode(img).decode()
    a = online(srv, "alice@localhost/pc", [])
    ok(a.iq("set", "<vCard xmlns='%s'><FN>Alice A.</FN></vCard>" % NS_VCARD))
    res = ok(a.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to="alice@localhost"))
    feats = {f.get("var") for f in res.find(q(DISCO_INFO, "query")).findall(q(DISCO_INFO,
                                                                             "feature"))}
    assert "urn:xmpp:pep-vcard-conversion:0" in feats
    ok(publish(a, NS_AVATAR_DATA, sha, "<data xmlns='%s'>%s</data>" % (NS_AVATAR_DATA, b64)))
    ok(publish(a, NS_AVATAR_META, sha, "<metadata xmlns='%s'><info bytes='%d' id='%s' "
               "type='image/png' height='1' width='1'/></metadata>"
               % (NS_AVATAR_META, len(img), sha)))
    card = ok(a.iq("get", "<vCard xmlns='%s'/>" % NS_VCARD)).find(q(NS_VCARD, "vCard"))
    assert card.findtext(q(NS_VCARD, "FN")) == "Alice A."
    photo = card.find(q(NS_VCARD, "PHOTO"))
    assert photo.findtext(q(NS_VCARD, "TYPE")) == "image/png"
    assert base64.b64decode(photo.findtext(q(NS_VCARD, "BINVAL"))) == img
    settle(a)
    a.send("<presence/>")
    p = a.expect(is_presence(a.jid), what="own presence")
    assert p.find(q(NS_VCARD_UPDATE, "x")).findtext(q(NS_VCARD_UPDATE, "photo")) == sha
    # a metadata whose image does not hash to its id is not copied
    ok(publish(a, NS_AVATAR_DATA, "0" * 40, "<data xmlns='%s'>%s</data>"
               % (NS_AVATAR_DATA, base64.b64encode(b"other").decode())))
    ok(publish(a, NS_AVATAR_META, "0" * 40, "<metadata xmlns='%s'><info bytes='5' id='%s' "
               "type='image/png'/></metadata>" % (NS_AVATAR_META, "0" * 40)))
    ok(publish(a, NS_AVATAR_META, "off", "<metadata xmlns='%s'/>" % NS_AVATAR_META))
    card = ok(a.iq("get", "<vCard xmlns='%s'/>" % NS_VCARD)).find(q(NS_VCARD, "vCard"))
    assert card.find(q(NS_VCARD, "PHOTO")) is None
    assert card.findtext(q(NS_VCARD, "FN")) == "Alice A."
    a.close()


def test_xep0398_vcard_photo_becomes_pep_avatar(srv):
    """XEP-0398 §3.2: a vCard set with a photo is published as XEP-0084
    data (id = SHA-1) and metadata, and a contact whose client asked for
    metadata+notify is told."""
    img = b"GIF89a" + bytes(reversed(range(256)))
    sha = hashlib.sha1(img).hexdigest()
    a = online(srv, "alice@localhost/pc", [])
    b = online(srv, "bob@localhost/pc", [NS_AVATAR_META])
    subscribe_both(a, b, "alice@localhost", "bob@localhost")
    b64 = base64.b64encode(img).decode()
    wrapped = "\n".join(b64[i:i + 76] for i in range(0, len(b64), 76))
    ok(a.iq("set", "<vCard xmlns='%s'><FN>A</FN><PHOTO><TYPE>image/gif</TYPE><BINVAL>%s"
            "</BINVAL></PHOTO></vCard>" % (NS_VCARD, wrapped)))
    m = expect_event(b, NS_AVATAR_META, "alice@localhost", what="metadata notification")
    info = event_of(m).find(q(NS_PS_EVENT, "item")).find(q(NS_AVATAR_META, "metadata")).find(
        q(NS_AVATAR_META, "info"))
    assert info.get("id") == sha and info.get("type") == "image/gif"
    assert info.get("bytes") == str(len(img))
    res = ok(b.iq("get", "<pubsub xmlns='%s'><items node='%s'><item id='%s'/></items></pubsub>"
                  % (NS_PS, NS_AVATAR_DATA, sha), to="alice@localhost"))
    data = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "items")).find(q(NS_PS, "item")).find(
        q(NS_AVATAR_DATA, "data"))
    assert base64.b64decode(data.text) == img
    # and it is not turned back into a second vCard write loop: the vCard
    # is still the one the client set
    card = ok(a.iq("get", "<vCard xmlns='%s'/>" % NS_VCARD)).find(q(NS_VCARD, "vCard"))
    assert card.findtext(q(NS_VCARD, "FN")) == "A"
    a.close()
    b.close()


NS_BM = "storage:bookmarks"
NS_BM2 = "urn:xmpp:bookmarks:1"


def private_bookmarks(s):
    res = ok(s.iq("get", "<query xmlns='jabber:iq:private'><storage xmlns='%s'/></query>" % NS_BM))
    st = res.find(q("jabber:iq:private", "query")).find(q(NS_BM, "storage"))
    return {c.get("jid"): (c.get("autojoin"), c.get("name"), c.findtext(q(NS_BM, "nick")))
            for c in st.findall(q(NS_BM, "conference"))}


def test_xep0411_private_bookmarks_are_pep_bookmarks(srv):
    """XEP-0411: bookmarks set through private XML storage (XEP-0048 over
    XEP-0049) are XEP-0402 items, and XEP-0402 items are what private
    storage returns; a bookmark left out of a private set is retracted,
    with a notification to the owner's interested resource."""
    a = online(srv, "alice@localhost/pc", [])
    a2 = online(srv, "alice@localhost/phone", [NS_BM2])
    res = ok(a.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to="alice@localhost"))
    assert NS_BM2 + "#compat" in {f.get("var") for f in res.find(q(DISCO_INFO, "query"))
                                  .findall(q(DISCO_INFO, "feature"))}
    settle(a2)
    ok(a.iq("set", "<query xmlns='jabber:iq:private'><storage xmlns='%s'>"
            "<conference jid='one@conference.localhost' autojoin='true' name='One'>"
            "<nick>ally</nick></conference>"
            "<conference jid='two@conference.localhost' name='Two'/>"
            "</storage></query>" % NS_BM))
    m = expect_event(a2, NS_BM2, "alice@localhost", what="bookmark notification")
    res = ok(a.iq("get", "<pubsub xmlns='%s'><items node='%s'/></pubsub>" % (NS_PS, NS_BM2)))
    items = {i.get("id"): i.find(q(NS_BM2, "conference"))
             for i in res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "items")).findall(q(NS_PS,
                                                                                   "item"))}
    assert set(items) == {"one@conference.localhost", "two@conference.localhost"}
    one = items["one@conference.localhost"]
    assert one.get("autojoin") == "true" and one.get("name") == "One"
    assert one.findtext(q(NS_BM2, "nick")) == "ally"
    assert items["two@conference.localhost"].get("autojoin") == "false"
    # the node was made with XEP-0402's configuration: a contact cannot read it
    b = server_login(srv, "bob@localhost/pc")
    res = b.iq("get", "<pubsub xmlns='%s'><items node='%s'/></pubsub>" % (NS_PS, NS_BM2),
               to="alice@localhost")
    assert stanza_error(res) == ("cancel", "not-allowed")
    # a XEP-0402 publish shows through private storage
    ok(publish(a, NS_BM2, "three@conference.localhost",
               "<conference xmlns='%s' autojoin='true' name='Three'/>" % NS_BM2))
    assert private_bookmarks(a) == {
        "one@conference.localhost": ("true", "One", "ally"),
        "two@conference.localhost": ("false", "Two", None),
        "three@conference.localhost": ("true", "Three", None)}
    settle(a2)
    ok(a.iq("set", "<query xmlns='jabber:iq:private'><storage xmlns='%s'>"
            "<conference jid='three@conference.localhost' autojoin='true' name='Three'/>"
            "</storage></query>" % NS_BM))
    retracted = set()
    for _ in range(2):
        m = a2.expect(lambda e: e.tag == q(NS_CLIENT, "message") and e.find(
            q(NS_PS_EVENT, "event")) is not None and e.find(q(NS_PS_EVENT, "event")).find(
            q(NS_PS_EVENT, "items")).find(q(NS_PS_EVENT, "retract")) is not None,
            what="retract event")
        retracted.add(m.find(q(NS_PS_EVENT, "event")).find(q(NS_PS_EVENT, "items")).find(
            q(NS_PS_EVENT, "retract")).get("id"))
    assert retracted == {"one@conference.localhost", "two@conference.localhost"}
    assert private_bookmarks(a) == {"three@conference.localhost": ("true", "Three", None)}
    for s in (a, a2, b):
        s.close()


def test_vcard4_is_a_pep_node(srv):
    """XEP-0292 §3: the vCard4 lives in the urn:xmpp:vcard4 PEP node, item
    id 'current'; published with access_model open anyone reads it, and a
    contact interested in it is notified."""
    ns = "urn:xmpp:vcard4"
    a = online(srv, "alice@localhost/pc", [])
    b = online(srv, "bob@localhost/pc", [ns])
    subscribe_both(a, b, "alice@localhost", "bob@localhost")
    card = ("<vcard xmlns='%s'><fn><text>Alice Tern</text></fn>"
            "<nickname><text>ally</text></nickname></vcard>" % ns)
    ok(publish(a, ns, "current", card, {"pubsub#access_model": "open"}))
    m = expect_event(b, ns, "alice@localhost", what="vcard4 event")
    got = event_of(m).find(q(NS_PS_EVENT, "item")).find(q(ns, "vcard"))
    assert got.find(q(ns, "fn")).findtext(q(ns, "text")) == "Alice Tern"
    z = server_login(srv, "zoe@localhost/pc")
    res = ok(z.iq("get", "<pubsub xmlns='%s'><items node='%s'/></pubsub>" % (NS_PS, ns),
                  to="alice@localhost"))
    item = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "items")).find(q(NS_PS, "item"))
    assert item.get("id") == "current"
    assert item.find(q(ns, "vcard")).find(q(ns, "nickname")).findtext(q(ns, "text")) == "ally"
    for s in (a, b, z):
        s.close()


def test_room_occupants_are_not_recipients(srv):
    """An occupant's presence from a room carries caps too (XEP-0045
    relays them), but room/nick is not a person: PEP sends nothing there,
    which the room would otherwise relay as a private message."""
    node = "urn:test:open-notify"
    a = online(srv, "alice@localhost/pc", [])
    c = online(srv, "carol@localhost/pc", [node])
    room = "peptest@conference.localhost"
    a.send("<presence to='%s/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>" % room)
    a.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("from") == room + "/alice",
             what="joined")
    ok(a.iq("set", "<query xmlns='http://jabber.org/protocol/muc#owner'>"
            "<x xmlns='jabber:x:data' type='submit'/></query>", to=room))  # instant room
    feats = "".join("<feature var='%s'/>" % f for f in c.caps_feats)
    c.send("<presence to='%s/carol'><x xmlns='http://jabber.org/protocol/muc'/>"
           "<c xmlns='%s' hash='sha-1' node='%s' ver='%s'/></presence>"
           % (room, NS_CAPS, CAPS_NODE, ver_of("client/pc//T", c.caps_feats)))
    a.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("from") == room + "/carol",
             what="carol's occupant presence")
    assert feats
    settle(a, c)
    ok(publish(a, node, "1", "<x xmlns='urn:test'/>", {"pubsub#access_model": "open"}))
    for s in (a, c):
        s.pump(1.0)
        stray = [e for e in s.pending if e.tag == q(NS_CLIENT, "message")]
        s.pending.clear()
        assert not stray, stray
    a.close()
    c.close()


def test_last_item_while_owner_offline(srv):
    """XEP-0163 §4.3.2: the last item goes to a contact that comes online
    with +notify even when the owner has no session."""
    a = online(srv, "alice@localhost/pc", [NS_NICK])
    b = online(srv, "bob@localhost/pc", [NS_NICK])
    subscribe_both(a, b, "alice@localhost", "bob@localhost")
    ok(publish(a, NS_NICK, "current", nick("Away")))
    expect_event(b, NS_NICK, "alice@localhost")
    a.close()
    b.close()
    b2 = online(srv, "bob@localhost/later", [NS_NICK])
    m = expect_event(b2, NS_NICK, "alice@localhost", what="last item from an offline owner")
    assert event_of(m).find(q(NS_PS_EVENT, "item")).find(q(NS_NICK, "nick")).text == "Away"
    b2.close()


def test_xep0411_set_refused_when_node_is_configured_otherwise(srv):
    """A private-storage set cannot go into a bookmarks node the client
    made with another access model: the set is refused (conflict) rather
    than answered as stored."""
    a = online(srv, "alice@localhost/pc", [])
    ok(publish(a, NS_BM2, "x@conference.localhost",
               "<conference xmlns='%s' autojoin='false'/>" % NS_BM2,
               {"pubsub#access_model": "presence"}))
    res = a.iq("set", "<query xmlns='jabber:iq:private'><storage xmlns='%s'>"
               "<conference jid='y@conference.localhost' autojoin='true'/></storage></query>"
               % NS_BM)
    assert stanza_error(res) == ("cancel", "conflict")
    assert set(private_bookmarks(a)) == {"x@conference.localhost"}
    a.close()
