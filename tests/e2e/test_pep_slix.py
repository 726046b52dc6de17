"""PEP (XEP-0163) with slixmpp's own plugins, as a client nobody on the
team wrote: avatars (XEP-0084), user nickname (XEP-0172), private PEP data
(XEP-0223) and generic XEP-0060 publish with publish-options for XEP-0402
bookmarks. slixmpp announces +notify through its XEP-0115 caps and answers
the server's disco#info, so these also check the caps round trip. Every
scenario runs with one and with two workers."""

import asyncio
import hashlib

import pytest

import slix

NS_BOOKMARKS2 = "urn:xmpp:bookmarks:1"
PLUGINS = ("xep_0030", "xep_0060", "xep_0115", "xep_0163")


@pytest.fixture(params=[1, 2], ids=["1worker", "2workers"])
def srv(tern, request):
    return tern(workers=request.param)


async def client(server, jid, plugins=()):
    c = slix.TernClient(jid, server.password(jid.split("/")[0]), server.c2s_port,
                        host=server.host, plugins=PLUGINS + tuple(plugins))
    c.events = asyncio.Queue()
    for ev in ("avatar_metadata_publish", "user_nick_publish", "pubsub_publish",
               "pubsub_retract"):
        c.add_event_handler(ev, lambda m, ev=ev, c=c: c.events.put_nowait((ev, m)))
    await c.login()
    await c.get_roster()
    await asyncio.sleep(0.2)  # let the plugins' caps update run before presence
    c.send_presence()
    return c


async def befriend(a, b):
    """Mutual presence subscription (slixmpp auto-authorizes and
    subscribes back by default)."""
    a.send_presence(pto=b.boundjid.bare, ptype="subscribe")
    b.send_presence(pto=a.boundjid.bare, ptype="subscribe")
    for _ in range(100):
        if (a.client_roster[b.boundjid.bare]["subscription"] == "both"
                and b.client_roster[a.boundjid.bare]["subscription"] == "both"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no mutual subscription")


async def next_event(c, name, node=None, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError("no %s event" % name)
        ev, m = await asyncio.wait_for(c.events.get(), left)
        if ev == name and (node is None or m["pubsub_event"]["items"]["node"] == node):
            return m


async def no_event(c, name, wait=1.0):
    try:
        await next_event(c, name, timeout=wait)
    except (AssertionError, asyncio.TimeoutError):
        return
    raise AssertionError("unexpected %s event" % name)


def test_avatar_reaches_only_interested_contacts(srv):
    """XEP-0084 §4: alice publishes data then metadata; bob (whose client
    runs the avatar plugin, so its caps carry metadata+notify) gets the
    metadata event and fetches the data by id; carol, a contact whose
    client has no avatar support, gets nothing."""
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(200))

    async def scenario():
        a = await client(srv, "alice@localhost/slix", ["xep_0084"])
        b = await client(srv, "bob@localhost/slix", ["xep_0084"])
        c = await client(srv, "carol@localhost/slix")
        await befriend(a, b)
        await befriend(a, c)
        await asyncio.sleep(0.3)
        av_id = hashlib.sha1(png).hexdigest()
        await a["xep_0084"].publish_avatar(png)
        await a["xep_0084"].publish_avatar_metadata(
            [{"id": av_id, "type": "image/png", "bytes": str(len(png)), "height": "1",
              "width": "1"}])
        m = await next_event(b, "avatar_metadata_publish")
        assert m["from"].bare == "alice@localhost"
        info = m["pubsub_event"]["items"]["item"]["avatar_metadata"]["items"][0]
        assert info["id"] == av_id and int(info["bytes"]) == len(png)
        res = await b["xep_0084"].retrieve_avatar("alice@localhost", av_id)
        got = res["pubsub"]["items"]["item"]["avatar_data"]["value"]
        assert got == png
        await no_event(c, "avatar_metadata_publish")
        for x in (a, b, c):
            await x.close()

    slix.run(scenario(), timeout=60)


def test_nick_and_last_item_at_login(srv):
    """XEP-0172 §4.5 and XEP-0163 §4.3.2: a nickname published while bob
    is away reaches him when he logs in with nick+notify."""
    async def scenario():
        a = await client(srv, "alice@localhost/slix", ["xep_0172"])
        b = await client(srv, "bob@localhost/slix", ["xep_0172"])
        await befriend(a, b)
        await b.close()
        await a["xep_0172"].publish_nick("Alice in Tern")
        b = await client(srv, "bob@localhost/again", ["xep_0172"])
        m = await next_event(b, "user_nick_publish")
        assert m["pubsub_event"]["items"]["item"]["nick"]["nick"] == "Alice in Tern"
        for x in (a, b):
            await x.close()

    slix.run(scenario(), timeout=60)


def test_private_pep_data_stays_private(srv):
    """XEP-0223 §4: stored with the whitelist profile; the owner reads it
    back, a contact is refused (closed-node)."""
    from slixmpp.plugins.xep_0172.stanza import UserNick

    async def scenario():
        a = await client(srv, "alice@localhost/slix", ["xep_0223", "xep_0172"])
        b = await client(srv, "bob@localhost/slix")
        await befriend(a, b)
        secret = UserNick()
        secret["nick"] = "my secret"
        await a["xep_0223"].store(secret, node="urn:test:private", id="current")
        res = await a["xep_0223"].retrieve("urn:test:private", id="current")
        assert res["pubsub"]["items"]["item"]["payload"] is not None
        with pytest.raises(slix.IqError) as e:
            await b["xep_0060"].get_items("alice@localhost", "urn:test:private")
        assert e.value.iq["error"]["condition"] == "not-allowed"
        for x in (a, b):
            await x.close()

    slix.run(scenario(), timeout=60)


def test_bookmarks2_to_own_resources_only(srv):
    """XEP-0402 §3: a bookmark published with the XEP's publish-options
    reaches the owner's other resource (bookmarks+notify) and not a
    contact with the same interest; retract notifies too."""
    from slixmpp.xmlstream import ET

    async def scenario():
        a1 = await client(srv, "alice@localhost/one")
        a2 = await client(srv, "alice@localhost/two")
        b = await client(srv, "bob@localhost/slix")
        for x in (a1, a2, b):
            x["xep_0163"].add_interest(NS_BOOKMARKS2)
        await asyncio.sleep(0.2)
        for x in (a1, a2, b):
            x.send_presence()
        await befriend(a1, b)
        await asyncio.sleep(0.3)
        form = a1["xep_0004"].make_form(ftype="submit")
        form.add_field(var="FORM_TYPE", ftype="hidden",
                       value="http://jabber.org/protocol/pubsub#publish-options")
        for var, val in (("pubsub#persist_items", "true"), ("pubsub#max_items", "max"),
                         ("pubsub#send_last_published_item", "never"),
                         ("pubsub#access_model", "whitelist")):
            form.add_field(var=var, value=val)
        conf = ET.fromstring("<conference xmlns='%s' autojoin='true' name='Tern'>"
                             "<nick>ally</nick></conference>" % NS_BOOKMARKS2)
        await a1["xep_0060"].publish(None, NS_BOOKMARKS2, id="tern@conference.localhost",
                                     payload=conf, options=form)
        m = await next_event(a2, "pubsub_publish", NS_BOOKMARKS2)
        item = m["pubsub_event"]["items"]["item"]
        assert item["id"] == "tern@conference.localhost"
        assert item["payload"].get("autojoin") == "true"
        await no_event(b, "pubsub_publish")
        await a1["xep_0060"].retract(None, NS_BOOKMARKS2, "tern@conference.localhost",
                                     notify=True)
        m = await next_event(a2, "pubsub_retract", NS_BOOKMARKS2)
        assert m["pubsub_event"]["items"]["retract"]["id"] == "tern@conference.localhost"
        for x in (a1, a2, b):
            await x.close()

    slix.run(scenario(), timeout=60)
