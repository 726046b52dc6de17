"""Publish-subscribe (XEP-0060) on pubsub.localhost, driven by raw clients
so every payload and error condition can be checked exactly. Run with
TERN_TEST_WORKERS=2 as well: the service's requests then arrive on either
worker."""

import itertools

from xmpp_raw import NS_CLIENT, q, server_login, stanza_error

SERVICE = "pubsub.localhost"
NS_PS = "http://jabber.org/protocol/pubsub"
NS_PS_OWNER = NS_PS + "#owner"
NS_PS_EVENT = NS_PS + "#event"
NS_PS_ERRORS = NS_PS + "#errors"
NS_DATA = "jabber:x:data"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"

_names = itertools.count()


def node_name(tag):
    return "%s%d" % (tag, next(_names))


def login(server, jid):
    s = server_login(server, jid)
    s.send_presence()
    s.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("from") == s.jid,
             what="own presence echo")
    return s


def ps(s, type_, body, owner=False):
    return s.iq(type_, "<pubsub xmlns='%s'>%s</pubsub>" % (NS_PS_OWNER if owner else NS_PS, body),
                to=SERVICE)


def ok(res):
    assert res.get("type") == "result", stanza_error(res)
    return res


def err(res, type_, cond, app=None):
    assert stanza_error(res) == (type_, cond), stanza_error(res)
    if app:
        e = res.find(q(NS_CLIENT, "error"))
        assert e.find(q(NS_PS_ERRORS, app)) is not None, app


def field(var, value):
    return "<field var='%s'><value>%s</value></field>" % (var, value)


def form(ns, *fields):
    return ("<x xmlns='%s' type='submit'>%s%s</x>"
            % (NS_DATA, field("FORM_TYPE", ns), "".join(fields)))


def node_config(*fields):
    return form(NS_PS + "#node_config", *fields)


def create(s, node, config=""):
    body = "<create node='%s'/>" % node
    if config:
        body += "<configure>%s</configure>" % config
    return ok(ps(s, "set", body))


def publish(s, node, item_id=None, payload="<entry xmlns='urn:test'>hi</entry>", options=""):
    idattr = " id='%s'" % item_id if item_id else ""
    extra = "<publish-options>%s</publish-options>" % options if options else ""
    return ps(s, "set", "<publish node='%s'><item%s>%s</item></publish>%s"
              % (node, idattr, payload, extra))


def subscribe(s, node, jid=None):
    return ps(s, "set", "<subscribe node='%s' jid='%s'/>" % (node, jid or s.jid))


def is_event(node):
    def pred(e):
        if e.tag != q(NS_CLIENT, "message") or e.get("from") != SERVICE:
            return False
        ev = e.find(q(NS_PS_EVENT, "event"))
        if ev is None:
            return False
        for child in ev:
            if child.get("node") == node:
                return True
        return False
    return pred


def item_ids(res, node):
    items = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "items"))
    assert items.get("node") == node
    return [i.get("id") for i in items.findall(q(NS_PS, "item"))]


def test_disco_service_and_nodes(server):
    a = login(server, "alice@localhost/a")
    res = ok(a.iq("get", "<query xmlns='%s'/>" % DISCO_INFO, to=SERVICE))
    qn = res.find(q(DISCO_INFO, "query"))
    ident = qn.find(q(DISCO_INFO, "identity"))
    assert (ident.get("category"), ident.get("type")) == ("pubsub", "service")
    feats = {f.get("var") for f in qn.findall(q(DISCO_INFO, "feature"))}
    for f in ("create-nodes", "publish", "retrieve-items", "subscribe", "delete-nodes",
              "purge-nodes", "retract-items", "config-node", "publish-options", "item-ids",
              "persistent-items"):
        assert NS_PS + "#" + f in feats, f
    node = node_name("disco")
    create(a, node, node_config(field("pubsub#title", "Disco node")))
    res = ok(a.iq("get", "<query xmlns='%s'/>" % DISCO_ITEMS, to=SERVICE))
    items = res.find(q(DISCO_ITEMS, "query")).findall(q(DISCO_ITEMS, "item"))
    assert any(i.get("node") == node and i.get("jid") == SERVICE
               and i.get("name") == "Disco node" for i in items)
    res = ok(a.iq("get", "<query xmlns='%s' node='%s'/>" % (DISCO_INFO, node), to=SERVICE))
    ident = res.find(q(DISCO_INFO, "query")).find(q(DISCO_INFO, "identity"))
    assert (ident.get("category"), ident.get("type")) == ("pubsub", "leaf")
    res = a.iq("get", "<query xmlns='%s' node='nope-%s'/>" % (DISCO_INFO, node), to=SERVICE)
    err(res, "cancel", "item-not-found")
    a.close()


def test_create_delete_purge(server):
    a = login(server, "alice@localhost/a")
    b = login(server, "bob@localhost/b")
    node = node_name("cd")
    create(a, node, node_config(field("pubsub#send_last_published_item", "on_sub")))
    err(ps(a, "set", "<create node='%s'/>" % node), "cancel", "conflict")
    # instant node
    res = ok(ps(a, "set", "<create/>"))
    inst = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "create")).get("node")
    assert inst
    ok(ps(a, "set", "<delete node='%s'/>" % inst, owner=True))
    # purge
    ok(publish(a, node, "one"))
    ok(subscribe(b, node))
    b.expect(is_event(node), what="last item on subscribe")
    err(ps(b, "set", "<purge node='%s'/>" % node, owner=True), "auth", "forbidden")
    ok(ps(a, "set", "<purge node='%s'/>" % node, owner=True))
    ev = b.expect(is_event(node), what="purge event")
    assert ev.find(q(NS_PS_EVENT, "event")).find(q(NS_PS_EVENT, "purge")) is not None
    assert item_ids(ok(ps(a, "get", "<items node='%s'/>" % node)), node) == []
    # delete with notification
    err(ps(b, "set", "<delete node='%s'/>" % node, owner=True), "auth", "forbidden")
    ok(ps(a, "set", "<delete node='%s'/>" % node, owner=True))
    ev = b.expect(is_event(node), what="delete event")
    assert ev.find(q(NS_PS_EVENT, "event")).find(q(NS_PS_EVENT, "delete")) is not None
    err(ps(a, "set", "<delete node='%s'/>" % node, owner=True), "cancel", "item-not-found")
    err(ps(a, "set", "<purge node='%s'/>" % node, owner=True), "cancel", "item-not-found")
    a.close()
    b.close()


def test_publish_notify_retrieve_retract(server):
    a = login(server, "alice@localhost/a")
    b = login(server, "bob@localhost/b")
    node = node_name("pub")
    create(a, node)
    ok(subscribe(b, node))
    res = ok(publish(a, node, "i1", "<entry xmlns='urn:test'>first</entry>"))
    pe = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "publish"))
    assert pe.find(q(NS_PS, "item")).get("id") == "i1"
    ev = b.expect(is_event(node), what="item event")
    item = ev.find(q(NS_PS_EVENT, "event")).find(q(NS_PS_EVENT, "items")).find(q(NS_PS_EVENT, "item"))
    assert item.get("id") == "i1"
    assert item.find(q("urn:test", "entry")).text == "first"
    # generated id
    res = ok(publish(a, node, None, "<entry xmlns='urn:test'>second</entry>"))
    gen = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "publish")).find(q(NS_PS, "item")).get("id")
    assert gen
    b.expect(is_event(node), what="second event")
    ok(publish(a, node, "i3", "<entry xmlns='urn:test'>third</entry>"))
    b.expect(is_event(node), what="third event")
    assert item_ids(ok(ps(b, "get", "<items node='%s'/>" % node)), node) == ["i1", gen, "i3"]
    assert item_ids(ok(ps(b, "get", "<items node='%s' max_items='2'/>" % node)), node) == [gen, "i3"]
    res = ok(ps(b, "get", "<items node='%s'><item id='i1'/></items>" % node))
    assert item_ids(res, node) == ["i1"]
    # publishing without rights
    err(publish(b, node, "x"), "auth", "forbidden")
    err(ps(b, "get", "<items node='nope-%s'/>" % node), "cancel", "item-not-found")
    # retract with notify
    err(ps(b, "set", "<retract node='%s'><item id='i1'/></retract>" % node), "auth", "forbidden")
    err(ps(a, "set", "<retract node='%s'><item id='zz'/></retract>" % node),
        "cancel", "item-not-found")
    ok(ps(a, "set", "<retract node='%s' notify='true'><item id='i1'/></retract>" % node))
    ev = b.expect(is_event(node), what="retract event")
    r = ev.find(q(NS_PS_EVENT, "event")).find(q(NS_PS_EVENT, "items")).find(q(NS_PS_EVENT, "retract"))
    assert r.get("id") == "i1"
    assert item_ids(ok(ps(b, "get", "<items node='%s'/>" % node)), node) == [gen, "i3"]
    a.close()
    b.close()


def test_max_items(server):
    a = login(server, "alice@localhost/a")
    node = node_name("max")
    create(a, node, node_config(field("pubsub#max_items", "2")))
    for i in range(4):
        ok(publish(a, node, "m%d" % i))
    assert item_ids(ok(ps(a, "get", "<items node='%s'/>" % node)), node) == ["m2", "m3"]
    node2 = node_name("maxmax")
    create(a, node2, node_config(field("pubsub#max_items", "max")))
    for i in range(3):
        ok(publish(a, node2, "m%d" % i))
    assert len(item_ids(ok(ps(a, "get", "<items node='%s'/>" % node2)), node2)) == 3
    a.close()


def test_subscriptions_and_affiliations(server):
    a = login(server, "alice@localhost/a")
    b = login(server, "bob@localhost/b")
    node = node_name("sub")
    create(a, node)
    err(subscribe(b, node, "alice@localhost"), "modify", "bad-request", "invalid-jid")
    err(subscribe(b, "nope-" + node), "cancel", "item-not-found")
    res = ok(subscribe(b, node))
    s = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "subscription"))
    assert (s.get("node"), s.get("jid"), s.get("subscription")) == (node, b.jid, "subscribed")
    res = ok(ps(b, "get", "<subscriptions/>"))
    subs = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "subscriptions"))
    assert any(x.get("node") == node for x in subs.findall(q(NS_PS, "subscription")))
    res = ok(ps(a, "get", "<affiliations/>"))
    affs = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "affiliations"))
    assert any(x.get("node") == node and x.get("affiliation") == "owner"
               for x in affs.findall(q(NS_PS, "affiliation")))
    # owner views
    err(ps(b, "get", "<subscriptions node='%s'/>" % node, owner=True), "auth", "forbidden")
    res = ok(ps(a, "get", "<subscriptions node='%s'/>" % node, owner=True))
    subs = res.find(q(NS_PS_OWNER, "pubsub")).find(q(NS_PS_OWNER, "subscriptions"))
    assert [x.get("jid") for x in subs.findall(q(NS_PS_OWNER, "subscription"))] == [b.jid]
    ok(ps(a, "set", "<affiliations node='%s'><affiliation jid='bob@localhost' "
          "affiliation='publisher'/></affiliations>" % node, owner=True))
    res = ok(ps(a, "get", "<affiliations node='%s'/>" % node, owner=True))
    affs = res.find(q(NS_PS_OWNER, "pubsub")).find(q(NS_PS_OWNER, "affiliations"))
    got = {x.get("jid"): x.get("affiliation") for x in affs.findall(q(NS_PS_OWNER, "affiliation"))}
    assert got == {"alice@localhost": "owner", "bob@localhost": "publisher"}
    ok(publish(b, node, "bobs"))
    # unsubscribe
    ok(ps(b, "set", "<unsubscribe node='%s' jid='%s'/>" % (node, b.jid)))
    err(ps(b, "set", "<unsubscribe node='%s' jid='%s'/>" % (node, b.jid)),
        "cancel", "unexpected-request", "not-subscribed")
    # owner subscribes bob again and then removes him
    ok(ps(a, "set", "<subscriptions node='%s'><subscription jid='%s' subscription='subscribed'/>"
          "</subscriptions>" % (node, b.jid), owner=True))
    ok(ps(a, "set", "<subscriptions node='%s'><subscription jid='%s' subscription='none'/>"
          "</subscriptions>" % (node, b.jid), owner=True))
    res = ok(ps(a, "get", "<subscriptions node='%s'/>" % node, owner=True))
    assert res.find(q(NS_PS_OWNER, "pubsub")).find(q(NS_PS_OWNER, "subscriptions")) \
        .find(q(NS_PS_OWNER, "subscription")) is None
    a.close()
    b.close()


def test_configure_and_access_model(server):
    a = login(server, "alice@localhost/a")
    b = login(server, "bob@localhost/b")
    node = node_name("conf")
    create(a, node)
    err(ps(b, "get", "<configure node='%s'/>" % node, owner=True), "auth", "forbidden")
    res = ok(ps(a, "get", "<configure node='%s'/>" % node, owner=True))
    x = res.find(q(NS_PS_OWNER, "pubsub")).find(q(NS_PS_OWNER, "configure")).find(q(NS_DATA, "x"))
    vals = {f.get("var"): f.findtext(q(NS_DATA, "value")) for f in x.findall(q(NS_DATA, "field"))}
    assert vals["FORM_TYPE"] == NS_PS + "#node_config"
    assert vals["pubsub#access_model"] == "open"
    ok(ps(a, "set", "<configure node='%s'>%s</configure>"
          % (node, node_config(field("pubsub#access_model", "whitelist"),
                               field("pubsub#title", "Closed"))), owner=True))
    err(ps(a, "set", "<configure node='%s'>%s</configure>"
           % (node, node_config(field("pubsub#access_model", "bogus"))), owner=True),
        "modify", "not-acceptable")
    err(subscribe(b, node), "cancel", "not-allowed", "closed-node")
    err(ps(b, "get", "<items node='%s'/>" % node), "cancel", "not-allowed", "closed-node")
    ok(ps(a, "set", "<affiliations node='%s'><affiliation jid='bob@localhost' "
          "affiliation='member'/></affiliations>" % node, owner=True))
    ok(subscribe(b, node))
    # publish_model open
    node2 = node_name("open")
    create(a, node2, node_config(field("pubsub#publish_model", "open")))
    ok(publish(b, node2, "anyone"))
    # deliver_payloads off: events carry no payload
    node3 = node_name("nopayload")
    create(a, node3, node_config(field("pubsub#deliver_payloads", "0")))
    ok(subscribe(b, node3))
    ok(publish(a, node3, "p"))
    ev = b.expect(is_event(node3), what="event")
    item = ev.find(q(NS_PS_EVENT, "event")).find(q(NS_PS_EVENT, "items")).find(q(NS_PS_EVENT, "item"))
    assert item.get("id") == "p" and len(list(item)) == 0
    a.close()
    b.close()


def test_publish_options(server):
    a = login(server, "alice@localhost/a")
    node = node_name("popts")
    create(a, node, node_config(field("pubsub#access_model", "whitelist")))
    ok(publish(a, node, "x", options=form(NS_PS + "#publish-options",
                                          field("pubsub#access_model", "whitelist"))))
    res = publish(a, node, "y", options=form(NS_PS + "#publish-options",
                                             field("pubsub#access_model", "open")))
    err(res, "cancel", "conflict", "precondition-not-met")
    # auto-create with publish-options
    node2 = node_name("auto")
    ok(publish(a, node2, "z", options=form(NS_PS + "#publish-options",
                                           field("pubsub#max_items", "max"))))
    assert item_ids(ok(ps(a, "get", "<items node='%s'/>" % node2)), node2) == ["z"]
    a.close()


def test_nodes_survive_restart(tern):
    srv = tern()
    a = login(srv, "alice@localhost/a")
    node = node_name("kept")
    create(a, node, node_config(field("pubsub#title", "Kept"), field("pubsub#max_items", "5")))
    ok(subscribe(a, node))
    ok(publish(a, node, "k1", "<entry xmlns='urn:test'>one</entry>"))
    ok(publish(a, node, "k2", "<entry xmlns='urn:test'>two</entry>"))
    ok(ps(a, "set", "<affiliations node='%s'><affiliation jid='bob@localhost' "
          "affiliation='publisher'/></affiliations>" % node, owner=True))
    a.close()
    assert srv.shutdown() == 0
    srv.start()
    b = login(srv, "bob@localhost/b")
    res = ok(ps(b, "get", "<items node='%s'/>" % node))
    assert item_ids(res, node) == ["k1", "k2"]
    items = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "items")).findall(q(NS_PS, "item"))
    assert items[1].find(q("urn:test", "entry")).text == "two"
    ok(publish(b, node, "k3"))  # still a publisher
    a = login(srv, "alice@localhost/a")
    res = ok(ps(a, "get", "<configure node='%s'/>" % node, owner=True))
    x = res.find(q(NS_PS_OWNER, "pubsub")).find(q(NS_PS_OWNER, "configure")).find(q(NS_DATA, "x"))
    vals = {f.get("var"): f.findtext(q(NS_DATA, "value")) for f in x.findall(q(NS_DATA, "field"))}
    assert vals["pubsub#title"] == "Kept" and vals["pubsub#max_items"] == "5"
    res = ok(ps(a, "get", "<subscriptions/>"))
    subs = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "subscriptions"))
    assert any(x.get("node") == node for x in subs.findall(q(NS_PS, "subscription")))
    a.close()
    b.close()


def test_node_creation_policy(tern):
    srv = tern(hosts={"localhost": {"registration": "no", "admins": "carol@localhost",
                                    "pubsub_node_creation": "admins"},
                      "example.org": {}})
    a = login(srv, "alice@localhost/a")
    c = login(srv, "carol@localhost/c")
    node = node_name("policy")
    err(ps(a, "set", "<create node='%s'/>" % node), "auth", "forbidden")
    # nor by publishing to a missing node
    err(publish(a, node, "x"), "cancel", "item-not-found")
    create(c, node)
    ok(publish(c, node, "x"))
    a.close()
    c.close()


def test_slixmpp_xep_0060(server):
    """slixmpp's xep_0060 plugin: create, publish, get items, delete."""
    import slix
    from slixmpp.xmlstream import ET

    async def go():
        c = await slix.connect(server, "alice@localhost", server.password("alice@localhost"))
        c.register_plugin("xep_0060")
        p = c.plugin["xep_0060"]
        node = node_name("slix")
        await p.create_node(SERVICE, node)
        payload = ET.fromstring("<entry xmlns='urn:test'>slix</entry>")
        await p.publish(SERVICE, node, id="s1", payload=payload)
        res = await p.get_items(SERVICE, node)
        ids = [i["id"] for i in res["pubsub"]["items"]]
        assert ids == ["s1"]
        res = await p.get_nodes(SERVICE)
        assert any(i[1] == node for i in res["disco_items"]["items"])
        await p.delete_node(SERVICE, node)
        await c.close()
    slix.run(go())


def test_publish_errors(server):
    a = login(server, "alice@localhost/a")
    node = node_name("perr")
    create(a, node)
    err(ps(a, "set", "<publish node='%s'/>" % node), "modify", "bad-request", "item-required")
    err(ps(a, "set", "<publish node='%s'><item id='e'/></publish>" % node),
        "modify", "bad-request", "payload-required")
    err(ps(a, "set", "<publish node='%s'><item id='e'><a xmlns='urn:test'/><b xmlns='urn:test'/>"
           "</item></publish>" % node), "modify", "bad-request", "invalid-payload")
    err(ps(a, "set", "<publish><item id='e'><a xmlns='urn:test'/></item></publish>"),
        "modify", "bad-request", "nodeid-required")
    err(ps(a, "set", "<retract node='%s'/>" % node), "modify", "bad-request", "item-required")
    a.close()


def answer_authorization(owner, node, allow):
    """The owner gets XEP-0060 §8.6.1's form and answers it (§8.6.2)."""
    m = owner.expect(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("from") == SERVICE
                     and e.find(q(NS_DATA, "x")) is not None, what="authorization form")
    x = m.find(q(NS_DATA, "x"))
    assert x.get("type") == "form"
    vals = {f.get("var"): f.findtext(q(NS_DATA, "value")) for f in x.findall(q(NS_DATA, "field"))}
    assert vals["FORM_TYPE"] == NS_PS + "#subscribe_authorization"
    assert vals["pubsub#node"] == node and vals["pubsub#allow"] == "false"
    owner.send("<message to='%s'><x xmlns='%s' type='submit'>%s%s%s%s</x></message>"
               % (SERVICE, NS_DATA, field("FORM_TYPE", NS_PS + "#subscribe_authorization"),
                  field("pubsub#subid", vals["pubsub#subid"]), field("pubsub#node", node),
                  field("pubsub#subscriber_jid", vals["pubsub#subscriber_jid"])
                  + field("pubsub#allow", "true" if allow else "false")))
    return vals["pubsub#subscriber_jid"]


def subscription_event(s, node):
    m = s.expect(lambda e: is_event(node)(e) and e.find(q(NS_PS_EVENT, "event")).find(
        q(NS_PS_EVENT, "subscription")) is not None, what="subscription event")
    return m.find(q(NS_PS_EVENT, "event")).find(q(NS_PS_EVENT, "subscription")).get(
        "subscription")


def test_authorize_access_model(server):
    """XEP-0060 §4.5 authorize, §6.1.3.x and §8.6: a subscription waits as
    pending (items refused with pending-subscription) until an owner allows
    it; a denied one is gone (not-subscribed)."""
    a = login(server, "alice@localhost/auth")
    b = login(server, "bob@localhost/auth")
    c = login(server, "carol@localhost/auth")
    node = node_name("authz")
    create(a, node, node_config(field("pubsub#access_model", "authorize")))
    ok(publish(a, node, "first"))
    res = ok(subscribe(b, node))
    sub = res.find(q(NS_PS, "pubsub")).find(q(NS_PS, "subscription"))
    assert sub.get("subscription") == "pending" and sub.get("subid")
    res = ps(b, "get", "<items node='%s'/>" % node)
    err(res, "auth", "not-authorized", "pending-subscription")
    res = ok(ps(a, "get", "<subscriptions node='%s'/>" % node, owner=True))
    subs = res.find(q(NS_PS_OWNER, "pubsub")).find(q(NS_PS_OWNER, "subscriptions"))
    assert [(s.get("jid"), s.get("subscription")) for s in subs] == [(b.jid, "pending")]
    assert answer_authorization(a, node, True) == b.jid
    assert subscription_event(b, node) == "subscribed"
    assert item_ids(ok(ps(b, "get", "<items node='%s'/>" % node)), node) == ["first"]
    ok(publish(a, node, "second"))
    b.expect(lambda e: is_event(node)(e) and e.find(q(NS_PS_EVENT, "event")).find(
        q(NS_PS_EVENT, "items")) is not None, what="item after approval")
    ok(subscribe(c, node))
    assert answer_authorization(a, node, False) == c.jid
    assert subscription_event(c, node) == "none"
    err(ps(c, "get", "<items node='%s'/>" % node), "auth", "not-authorized", "not-subscribed")
    # only an owner may decide
    c.send("<message to='%s'><x xmlns='%s' type='submit'>%s%s%s</x></message>"
           % (SERVICE, NS_DATA, field("FORM_TYPE", NS_PS + "#subscribe_authorization"),
              field("pubsub#node", node), field("pubsub#allow", "true")))
    m = c.expect(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("type") == "error",
                 what="forbidden")
    assert stanza_error(m) == ("auth", "forbidden")
    for s in (a, b, c):
        s.close()


def test_presence_and_roster_access_follow_the_owner(server):
    """XEP-0060 §4.5 on the service: presence access admits who receives
    the node owner's presence, roster access who is in an allowed group
    of the owner's roster; others get the XEP's not-authorized errors."""
    a = login(server, "alice@localhost/acc")
    b = login(server, "bob@localhost/acc")
    c = login(server, "carol@localhost/acc")
    # bob gets alice's presence (subscription from, in alice's roster)
    b.send("<presence to='alice@localhost' type='subscribe'/>")
    a.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") == "subscribe",
             what="subscribe")
    a.send("<presence to='bob@localhost' type='subscribed'/>")
    b.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") == "subscribed",
             what="subscribed")
    ok(a.iq("set", "<query xmlns='jabber:iq:roster'><item jid='carol@localhost'>"
            "<group>Team</group></item></query>"))
    pres = node_name("pres")
    create(a, pres, node_config(field("pubsub#access_model", "presence")))
    ok(publish(a, pres, "p1"))
    assert item_ids(ok(ps(b, "get", "<items node='%s'/>" % pres)), pres) == ["p1"]
    err(ps(c, "get", "<items node='%s'/>" % pres), "auth", "not-authorized",
        "presence-subscription-required")
    err(subscribe(c, pres), "auth", "not-authorized", "presence-subscription-required")
    ok(subscribe(b, pres))
    team = node_name("team")
    create(a, team, node_config(field("pubsub#access_model", "roster"),
                                field("pubsub#roster_groups_allowed", "Team")))
    ok(publish(a, team, "t1"))
    assert item_ids(ok(ps(c, "get", "<items node='%s'/>" % team)), team) == ["t1"]
    err(ps(b, "get", "<items node='%s'/>" % team), "auth", "not-authorized",
        "not-in-roster-group")
    for s in (a, b, c):
        s.close()
