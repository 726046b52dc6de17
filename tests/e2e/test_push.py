"""Push notifications (XEP-0357): a client registers an app server; a
message that the client cannot see (offline, hibernated by stream
management, inactive by CSI) makes the server publish a summary to it.
A slixmpp client plays the app server: it receives the pubsub publish and
answers it."""

import asyncio
import xml.etree.ElementTree as ET

import pytest

import slix
from xmpp_raw import NS_CLIENT, q, server_login, stanza_error

NS_PUSH = "urn:xmpp:push:0"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_DATA = "jabber:x:data"
APP = "carol@localhost/appserver"


@pytest.fixture(params=[1, 2], ids=["1worker", "2workers"])
def srv(tern, request):
    return tern(workers=request.param)


def enable(s, node="node-1", secret="s3cret", jid=APP):
    form = ("<x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options"
            "</value></field><field var='secret'><value>%s</value></field></x>" % secret)
    return s.iq("set", "<enable xmlns='%s' jid='%s' node='%s'>%s</enable>" % (NS_PUSH, jid, node,
                                                                                 form))


def form_fields(x):
    return {f.get("var"): [v.text for v in f.findall(q(NS_DATA, "value"))]
            for f in x.findall(q(NS_DATA, "field"))}


class AppServer:
    """slixmpp client receiving XEP-0357 publishes."""

    def __init__(self, server):
        self.server = server
        self.publishes = asyncio.Queue()

    async def start(self):
        self.c = await slix.connect(self.server, APP, self.server.password("carol@localhost"))
        self.c.send_presence()

        def on_iq(iq):
            pubsub = iq.xml.find(q(NS_PUBSUB, "pubsub"))
            if iq["type"] == "set" and pubsub is not None:
                self.publishes.put_nowait(iq.xml)
                iq.reply().send()
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath
        self.c.register_handler(Callback("push publish", MatchXPath("{%s}iq/{%s}pubsub"
                                                                    % (NS_CLIENT, NS_PUBSUB)),
                                         on_iq))
        return self

    async def next(self, timeout=15):
        return await asyncio.wait_for(self.publishes.get(), timeout)

    async def none(self, wait=1.0):
        await asyncio.sleep(wait)
        assert self.publishes.empty(), "unexpected push: %s" % ET.tostring(
            self.publishes.get_nowait())


def check_publish(iq, node, count, sender, body, secret="s3cret"):
    assert iq.get("from") == "alice@localhost"
    pubsub = iq.find(q(NS_PUBSUB, "pubsub"))
    publish = pubsub.find(q(NS_PUBSUB, "publish"))
    assert publish.get("node") == node
    x = publish.find("%s/%s/%s" % (q(NS_PUBSUB, "item"), q(NS_PUSH, "notification"),
                                   q(NS_DATA, "x")))
    fields = form_fields(x)
    assert fields["FORM_TYPE"] == ["urn:xmpp:push:summary"]
    assert fields["message-count"] == [str(count)]
    assert fields["last-message-sender"] == [sender]
    assert fields["last-message-body"] == [body]
    opts = form_fields(pubsub.find("%s/%s" % (q(NS_PUBSUB, "publish-options"), q(NS_DATA, "x"))))
    assert opts["secret"] == [secret]


def test_enable_validation_and_disco(srv):
    a = server_login(srv, "alice@localhost/phone")
    assert stanza_error(a.iq("set", "<enable xmlns='%s' jid='%s'/>" % (NS_PUSH, APP)))[:2] == \
        ("modify", "bad-request")
    assert stanza_error(a.iq("set", "<enable xmlns='%s' node='n'/>" % NS_PUSH))[:2] == \
        ("modify", "bad-request")
    assert enable(a).get("type") == "result"
    assert a.iq("set", "<disable xmlns='%s' jid='%s' node='node-1'/>" % (NS_PUSH, APP)) \
        .get("type") == "result"
    assert a.iq("set", "<enable xmlns='%s' jid='%s' node='n'/>" % (NS_PUSH, APP),
                to="bob@localhost").get("type") == "error"
    info = a.iq("get", "<query xmlns='http://jabber.org/protocol/disco#info'/>",
                to="alice@localhost")
    feats = {f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")}
    assert NS_PUSH in feats
    a.close()


def test_offline_message_is_pushed_and_disable_stops_it(srv):
    async def go():
        app = await AppServer(srv).start()
        a = server_login(srv, "alice@localhost/phone")
        assert enable(a).get("type") == "result"
        a.close()
        b = server_login(srv, "bob@localhost/b")
        b.send_message("alice@localhost", "wake up")
        check_publish(await app.next(), "node-1", 1, "bob@localhost", "wake up")
        # the message itself waits in offline storage
        a = server_login(srv, "alice@localhost/phone")
        a.send_presence()
        msg = a.expect_message()
        assert msg.findtext(q(NS_CLIENT, "body")) == "wake up"
        assert a.iq("set", "<disable xmlns='%s' jid='%s'/>" % (NS_PUSH, APP)).get("type") == \
            "result"
        a.close()
        b.send_message("alice@localhost", "nobody hears")
        await app.none()
        b.close()
        await app.c.close()
    slix.run(go())


def test_registration_survives_restart(srv):
    a = server_login(srv, "alice@localhost/phone")
    assert enable(a, node="persist").get("type") == "result"
    a.close()
    srv.crash()
    srv.start()

    async def go():
        app = await AppServer(srv).start()
        b = server_login(srv, "bob@localhost/b")
        b.send_message("alice@localhost", "after restart")
        check_publish(await app.next(), "persist", 1, "bob@localhost", "after restart")
        b.close()
        await app.c.close()
    slix.run(go())


def test_csi_inactive_session_is_pushed(srv):
    async def go():
        app = await AppServer(srv).start()
        a = server_login(srv, "alice@localhost/phone")
        a.send_presence()
        assert enable(a).get("type") == "result"
        a.send("<inactive xmlns='urn:xmpp:csi:0'/>")
        a.ping_server()
        b = server_login(srv, "bob@localhost/b")
        b.send_message("alice@localhost/phone", "are you there")
        check_publish(await app.next(), "node-1", 1, "bob@localhost", "are you there")
        # the message is delivered as well: CSI does not hold messages
        assert a.expect_message().findtext(q(NS_CLIENT, "body")) == "are you there"
        a.send("<active xmlns='urn:xmpp:csi:0'/>")
        a.ping_server()
        b.send_message("alice@localhost/phone", "now active")
        assert a.expect_message().findtext(q(NS_CLIENT, "body")) == "now active"
        await app.none()
        a.close()
        b.close()
        await app.c.close()
    slix.run(go())


def test_hibernated_session_is_pushed_then_resumes(srv):
    """A phone loses its network: stream management keeps the session,
    the app server is told about the message, and the resumed stream
    gets the message itself."""
    from test_stream_mgmt import SmClient, kill

    async def go():
        app = await AppServer(srv).start()
        a = SmClient(server_login(srv, "alice@localhost/phone"))
        enabled = a.enable()
        a.available()
        assert enable(a.s).get("type") == "result"
        a.received += 1  # the enable result
        kill(a.s)
        await asyncio.sleep(0.5)  # the server notices the connection is gone
        b = server_login(srv, "bob@localhost/b")
        b.send_message("alice@localhost/phone", "while you sleep")
        check_publish(await app.next(), "node-1", 1, "bob@localhost", "while you sleep")
        r = server_login(srv, "alice@localhost/phone", bind=False)
        r.send("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>"
               % (enabled.get("id"), a.received))
        r.expect(lambda e: e.tag == "{urn:xmpp:sm:3}resumed", what="resumed")
        msg = r.expect_message()
        assert msg.findtext(q(NS_CLIENT, "body")) == "while you sleep"
        r.send("</stream:stream>")
        r.close()
        b.close()
        await app.c.close()
    slix.run(go())
