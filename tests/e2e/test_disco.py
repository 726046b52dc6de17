"""Server discovery extras: contact addresses (XEP-0157) in the server's
disco#info and the server's entity capabilities (XEP-0115) in the stream
features after authentication.

The capabilities hash is recomputed here from the disco#info answer with
an independent implementation of XEP-0115 §5.1, and slixmpp's own caps
plugin must accept it too."""

import asyncio
import base64
import hashlib
import time
import xml.etree.ElementTree as ET

import pytest

import slix
from xmpp_raw import NS_XML, q, server_connect, server_login, stanza_error

DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DATA = "jabber:x:data"
NS_CAPS = "http://jabber.org/protocol/caps"
SERVERINFO = "http://jabber.org/network/serverinfo"
CAPS_NODE = "https://tern.example/caps"

USERS = {"alice@localhost": "alice-secret", "bob@example.org": "bob-secret"}

CONTACTS = ("admin=xmpp:admin@localhost, abuse=mailto:abuse@localhost, "
            "admin = mailto:admin@localhost, bogus=xmpp:nobody@localhost, no-equals-sign, "
            "support=")


@pytest.fixture(scope="module")
def server(tern_module):
    hosts = {"localhost": {"registration": "no", "contact_addresses": CONTACTS},
             "example.org": {}}
    return tern_module(users=USERS, hosts=hosts)


def disco_info(s, to, node=None):
    node_attr = " node='%s'" % node if node is not None else ""
    return s.iq("get", "<query xmlns='%s'%s/>" % (DISCO_INFO, node_attr), to=to)


def info_query(el):
    assert el.get("type") == "result", ET.tostring(el)
    qe = el.find(q(DISCO_INFO, "query"))
    assert qe is not None, ET.tostring(el)
    return qe


def caps_ver(query):
    """XEP-0115 §5.1 verification string (sha-1) of a disco#info <query/>."""
    ids = sorted("%s/%s/%s/%s" % (i.get("category", ""), i.get("type", ""),
                                  i.get("{%s}lang" % NS_XML, ""), i.get("name", ""))
                 for i in query.findall(q(DISCO_INFO, "identity")))
    feats = sorted(f.get("var") for f in query.findall(q(DISCO_INFO, "feature")))
    s = "".join(x + "<" for x in ids) + "".join(x + "<" for x in feats)
    forms = []
    for x in query.findall(q(NS_DATA, "x")):
        fields = {f.get("var"): f for f in x.findall(q(NS_DATA, "field"))}
        ft = fields.get("FORM_TYPE")
        if ft is None or ft.get("type") != "hidden":
            continue
        forms.append((ft.findtext(q(NS_DATA, "value")), fields))
    for ftype, fields in sorted(forms, key=lambda f: f[0]):
        s += ftype + "<"
        for var in sorted(v for v in fields if v != "FORM_TYPE"):
            s += var + "<"
            for v in sorted((val.text or "") for val in fields[var].findall(q(NS_DATA, "value"))):
                s += v + "<"
    return base64.b64encode(hashlib.sha1(s.encode("utf-8")).digest()).decode()


def form_fields(query):
    forms = query.findall(q(NS_DATA, "x"))
    assert len(forms) == 1, ET.tostring(query)
    x = forms[0]
    assert x.get("type") == "result"
    out = []
    for f in x.findall(q(NS_DATA, "field")):
        out.append((f.get("var"), f.get("type"),
                    [v.text for v in f.findall(q(NS_DATA, "value"))]))
    return out


# ------------------------------------------------------------ XEP-0157

def test_contact_addresses_form(server):
    s = server_login(server, "alice@localhost/c")
    try:
        qe = info_query(disco_info(s, "localhost"))
        assert form_fields(qe) == [
            ("FORM_TYPE", "hidden", [SERVERINFO]),
            ("abuse-addresses", "list-multi", ["mailto:abuse@localhost"]),
            ("admin-addresses", "list-multi",
             ["xmpp:admin@localhost", "mailto:admin@localhost"]),
        ]
        # The account's disco#info carries no server form.
        assert info_query(disco_info(s, "alice@localhost")).find(q(NS_DATA, "x")) is None
    finally:
        s.close()
    log = server.log_text()
    for bad in ("bogus=xmpp:nobody@localhost", "no-equals-sign", "'support='"):
        assert bad in log, "no warning about %s" % bad
    # Once per module instance (one per worker), at start-up.
    assert log.count("no-equals-sign") == int(server.options["workers"])


def test_contact_addresses_with_slixmpp(server):
    async def main():
        c = await slix.connect(server, "alice@localhost/s", USERS["alice@localhost"],
                               plugins=["xep_0030", "xep_0128"])
        try:
            info = await c["xep_0030"].get_info(jid="localhost")
            form = info["disco_info"]["form"]
            values = form.get_values()
            # slixmpp 1.8 reads FORM_TYPE of a result form as a list.
            assert values["FORM_TYPE"] in (SERVERINFO, [SERVERINFO])
            assert values["admin-addresses"] == ["xmpp:admin@localhost",
                                                 "mailto:admin@localhost"]
            assert values["abuse-addresses"] == ["mailto:abuse@localhost"]
        finally:
            await c.close()
    slix.run(main())


def test_no_contact_addresses_no_form(server):
    s = server_login(server, "bob@example.org/c")
    try:
        qe = info_query(disco_info(s, "example.org"))
        assert qe.find(q(NS_DATA, "x")) is None
    finally:
        s.close()


# ------------------------------------------------------------ XEP-0115

def stream_caps(s):
    c = s.features.find(q(NS_CAPS, "c"))
    assert c is not None, "no caps in the features: %s" % ET.tostring(s.features)
    assert c.get("hash") == "sha-1"
    assert c.get("node") == CAPS_NODE
    return c.get("ver")


@pytest.mark.parametrize("jid,domain", [("alice@localhost", "localhost"),
                                        ("bob@example.org", "example.org")])
def test_caps_ver_matches_disco(server, jid, domain):
    s = server_login(server, jid + "/caps")
    try:
        ver = stream_caps(s)
        qe = info_query(disco_info(s, domain))
        assert caps_ver(qe) == ver
        # The node form of the query answers the same, with the node echoed.
        node = "%s#%s" % (CAPS_NODE, ver)
        qn = info_query(disco_info(s, domain, node))
        assert qn.get("node") == node
        assert caps_ver(qn) == ver
        assert [ET.tostring(c) for c in qn] == [ET.tostring(c) for c in qe]
        # Any other node is unknown.
        for other in (CAPS_NODE + "#AAAA", CAPS_NODE, "x#" + ver):
            r = disco_info(s, domain, other)
            assert stanza_error(r) == ("cancel", "item-not-found"), ET.tostring(r)
    finally:
        s.close()


def test_caps_differ_between_hosts(server):
    """localhost has a contact form, example.org none: different hashes."""
    a = server_login(server, "alice@localhost/v")
    b = server_login(server, "bob@example.org/v")
    try:
        assert stream_caps(a) != stream_caps(b)
    finally:
        a.close()
        b.close()


def test_no_caps_before_authentication(server):
    s = server_connect(server)
    try:
        s.open_stream("localhost")
        assert s.features.find(q(NS_CAPS, "c")) is None
        s.starttls()
        assert s.features.find(q(NS_CAPS, "c")) is None
    finally:
        s.close()


def test_caps_accepted_by_slixmpp(server):
    async def main():
        c = await slix.connect(server, "alice@localhost/caps", USERS["alice@localhost"],
                               plugins=["xep_0030", "xep_0004", "xep_0115"])
        try:
            # slixmpp fetches node#ver on seeing the feature and keeps the
            # ver only if its own hash of the answer matches.
            deadline = time.monotonic() + 10
            ver = None
            while time.monotonic() < deadline:
                ver = await c["xep_0115"].get_verstring("localhost")
                if ver:
                    break
                await asyncio.sleep(0.1)
            assert ver, "slixmpp did not validate the server's caps"
            return ver
        finally:
            await c.close()
    ver = slix.run(main())
    s = server_login(server, "alice@localhost/cmp")
    try:
        assert stream_caps(s) == ver
    finally:
        s.close()
