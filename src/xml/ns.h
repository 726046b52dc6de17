/* SPDX-License-Identifier: MIT
 * ns.h - namespace URIs used by Tern.
 *
 * Every namespace the server reads or writes is named here once, so that a
 * typo becomes a compile error instead of a silently unmatched element.
 * Grouped by the specification that defines them: the XML core
 * namespaces, RFC 6120/6121, then XEPs in number order. Values are exact
 * URIs as compared by the parser (byte-for-byte, no normalisation).
 */
#ifndef TERN_XML_NS_H
#define TERN_XML_NS_H

/* XML itself (the xml: prefix and namespace declarations). */
#define NS_XML   "http://www.w3.org/XML/1998/namespace"
#define NS_XMLNS "http://www.w3.org/2000/xmlns/"

/* RFC 6120: streams, errors and stream features. */
#define NS_CLIENT  "jabber:client"
#define NS_SERVER  "jabber:server"
#define NS_STREAM  "http://etherx.jabber.org/streams"
#define NS_STREAMS "urn:ietf:params:xml:ns:xmpp-streams"
#define NS_TLS     "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL    "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND    "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
/* RFC 3921 session establishment, still announced for old clients. */
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"

/* RFC 6121: roster and presence. */
#define NS_ROSTER       "jabber:iq:roster"
#define NS_ROSTERVER    "urn:xmpp:features:rosterver"
#define NS_PRE_APPROVAL "urn:xmpp:features:pre-approval"

/* Server-to-server dialback (XEP-0220). */
#define NS_DIALBACK          "jabber:server:dialback"
#define NS_DIALBACK_FEATURES "urn:xmpp:features:dialback"

/* XEP-0004 data forms. */
#define NS_DATA "jabber:x:data"
/* XEP-0012 last activity. */
#define NS_LAST "jabber:iq:last"
/* XEP-0030 service discovery. */
#define NS_DISCO_INFO  "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
/* XEP-0045 multi-user chat. */
#define NS_MUC          "http://jabber.org/protocol/muc"
#define NS_MUC_USER     "http://jabber.org/protocol/muc#user"
#define NS_X_CONFERENCE "jabber:x:conference"
/* XEP-0049 private XML storage. */
#define NS_PRIVATE "jabber:iq:private"
/* XEP-0050 ad-hoc commands. */
#define NS_COMMANDS "http://jabber.org/protocol/commands"
/* XEP-0054 vcard-temp. */
#define NS_VCARD "vcard-temp"
/* XEP-0059 result set management. */
#define NS_RSM "http://jabber.org/protocol/rsm"
/* XEP-0060 publish-subscribe (and XEP-0163 PEP). */
#define NS_PUBSUB       "http://jabber.org/protocol/pubsub"
#define NS_PUBSUB_EVENT "http://jabber.org/protocol/pubsub#event"
#define NS_PUBSUB_OWNER "http://jabber.org/protocol/pubsub#owner"
/* XEP-0077 in-band registration. */
#define NS_REGISTER         "jabber:iq:register"
#define NS_FEATURE_REGISTER "http://jabber.org/features/iq-register"
/* XEP-0092 software version. */
#define NS_VERSION "jabber:iq:version"
/* XEP-0115 entity capabilities. */
#define NS_CAPS "http://jabber.org/protocol/caps"
/* XEP-0191 blocking command. */
#define NS_BLOCKING "urn:xmpp:blocking"
/* XEP-0198 stream management. */
#define NS_SM "urn:xmpp:sm:3"
/* XEP-0199 XMPP ping. */
#define NS_PING "urn:xmpp:ping"
/* XEP-0202 entity time. */
#define NS_TIME "urn:xmpp:time"
/* XEP-0203 delayed delivery. */
#define NS_DELAY "urn:xmpp:delay"
/* XEP-0280 message carbons and the XEP-0297 forwarding wrapper. */
#define NS_CARBONS "urn:xmpp:carbons:2"
#define NS_FORWARD "urn:xmpp:forward:0"
/* XEP-0313 message archive management. */
#define NS_MAM "urn:xmpp:mam:2"
/* XEP-0334 message processing hints. */
#define NS_HINTS "urn:xmpp:hints"
/* XEP-0352 client state indication. */
#define NS_CSI "urn:xmpp:csi:0"
/* XEP-0359 unique and stable stanza ids. */
#define NS_STANZA_ID "urn:xmpp:sid:0"
/* XEP-0363 HTTP file upload. */
#define NS_HTTP_UPLOAD "urn:xmpp:http:upload:0"
/* XEP-0388 SASL2 and XEP-0386 Bind 2. */
#define NS_SASL2 "urn:xmpp:sasl:2"
#define NS_BIND2 "urn:xmpp:bind:0"
/* XEP-0440 SASL channel-binding type capability. */
#define NS_SASL_CB "urn:xmpp:sasl-cb:0"
/* XEP-0474 SASL SCRAM downgrade protection. */
#define NS_SSDP "urn:xmpp:ssdp:0"
/* XEP-0478 stream limits advertisement. */
#define NS_STREAM_LIMITS "urn:xmpp:stream-limits:0"

#endif
