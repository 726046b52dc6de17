"""XEP-0115: the server learns what a client's caps ver stands for by asking
the client once (disco#info of node#ver), and only believes an answer that
hashes to the ver, from the client it asked (tern_iq_request)."""
import base64
import hashlib

from xmpp_raw import NS_CLIENT, q, server_login

NS_CAPS = "http://jabber.org/protocol/caps"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
NODE = "https://example.org/client"


def ver_of(identity, features):
    s = identity + "<" + "".join(f + "<" for f in sorted(features))
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


def caps_presence(s, ver):
    s.send("<presence><c xmlns='%s' hash='sha-1' node='%s' ver='%s'/></presence>"
           % (NS_CAPS, NODE, ver))


def is_caps_query(e):
    return (e.tag == q(NS_CLIENT, "iq") and e.get("type") == "get"
            and e.find(q(DISCO_INFO, "query")) is not None)


def answer(s, iq, features, frm_query=True):
    feats = "".join("<feature var='%s'/>" % f for f in features)
    s.send("<iq type='result' id='%s' to='%s'><query xmlns='%s' node='%s'>"
           "<identity category='client' type='pc' name='T'/>%s</query></iq>"
           % (iq.get("id"), iq.get("from"), DISCO_INFO,
              iq.find(q(DISCO_INFO, "query")).get("node"), feats))


def no_query(s, timeout=1.0):
    try:
        s.expect(is_caps_query, timeout=timeout, what="caps query")
    except TimeoutError:
        return True
    return False


def test_caps_learned_once_and_shared(server):
    feats = ["http://jabber.org/protocol/caps", "urn:xmpp:avatar:metadata+notify", "a:b"]
    ver = ver_of("client/pc//T", feats)
    a = server_login(server, "alice@localhost/caps1")
    b = server_login(server, "bob@localhost/caps1")
    caps_presence(a, ver)
    iq = a.expect(is_caps_query, what="disco#info of node#ver")
    assert iq.get("from") == "localhost"
    assert iq.find(q(DISCO_INFO, "query")).get("node") == NODE + "#" + ver
    answer(a, iq, feats)
    # known now: neither alice again nor bob with the same ver is asked
    caps_presence(a, ver)
    assert no_query(a)
    caps_presence(b, ver)
    assert no_query(b)
    a.close()
    b.close()


def test_caps_wrong_hash_or_wrong_sender_not_believed(server):
    feats = ["http://jabber.org/protocol/caps", "x:y"]
    ver = ver_of("client/pc//T", feats)
    a = server_login(server, "alice@localhost/caps2")
    c = server_login(server, "carol@localhost/caps2")
    caps_presence(a, ver)
    iq = a.expect(is_caps_query, what="disco#info of node#ver")
    # carol answers alice's question: dropped, alice is still expected to
    answer(c, iq, feats)
    # alice answers with features that do not hash to ver: not kept
    answer(a, iq, feats + ["extra:feature"])
    caps_presence(a, ver)
    iq = a.expect(is_caps_query, what="asked again")
    answer(a, iq, feats)
    caps_presence(a, ver)
    assert no_query(a)
    a.close()
    c.close()
