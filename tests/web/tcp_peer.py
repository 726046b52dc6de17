#!/usr/bin/python3
"""A slixmpp client on Tern's TCP c2s port, driven by the Node web tests.

Run with Debian's interpreter (python3-slixmpp 1.8):

    /usr/bin/python3 tests/web/tcp_peer.py '{"jid": "bob@localhost/tcp",
        "password": "...", "port": 5222}'

It connects to 127.0.0.1:port (no DNS), does STARTTLS without certificate
verification (Tern's certificate is self-signed), logs in with a fixed SASL
mechanism (default SCRAM-SHA-256; slixmpp 1.8 would otherwise pick a -PLUS
mechanism it cannot complete on asyncio transports), fetches its roster,
sends initial presence and then speaks JSON lines:

  stdin (commands; an optional "id" is echoed in an {"event": "ok"}):
    {"cmd": "send", "to": JID, "body": TEXT, "type": "chat"}
    {"cmd": "presence", "to": JID?, "type": TYPE?, "status": TEXT?, "show": SHOW?}
    {"cmd": "quit"}                  disconnect and exit 0 (so does EOF)
  stdout (events):
    {"event": "ready", "jid": FULL_JID}
    {"event": "message", "from": ..., "to": ..., "type": ..., "body": ..., "id": ...}
    {"event": "presence", "from": ..., "to": ..., "type": ..., "show": ..., "status": ...}
    {"event": "ok", "id": ...}
    {"event": "error", "message": ...}
    {"event": "disconnected"}

A second mode sets up mutual presence subscriptions ("both") between pairs
of accounts, so that presence is broadcast between them later:

    tcp_peer.py --subscribe '{"port": 5222, "accounts": {JID: PASSWORD, ...},
                              "pairs": [[JID_A, JID_B], ...]}'

It prints {"event": "subscribed"} and exits 0 when every pair is "both".
"""

import asyncio
import json
import logging
import os
import ssl
import sys
import threading

import slixmpp

LOGIN_TIMEOUT = 30.0


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Peer(slixmpp.ClientXMPP):
    def __init__(self, jid, password, port, host="127.0.0.1", mech="SCRAM-SHA-256"):
        super().__init__(jid, password, sasl_mech=mech)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.peer_address = (host, port)
        self.whitespace_keepalive = False
        self.session_ready = asyncio.Event()
        self.gone = asyncio.Event()
        self.failure = None
        self.forward = False  # emit message/presence events on stdout
        self.add_event_handler("session_start", self._on_start)
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("presence", self._on_presence)
        self.add_event_handler("failed_all_auth", self._on_auth_failed)
        self.add_event_handler("connection_failed", self._on_conn_failed)
        self.add_event_handler("disconnected", self._on_disconnected)
        self.add_event_handler("stream_error", self._on_stream_error)

    async def _pick_dns_answer(self, domain, port=None):
        return (self.boundjid.domain, self.peer_address[0], self.peer_address[1])

    def _on_start(self, _ev):
        self.session_ready.set()

    def _on_auth_failed(self, _ev):
        self.failure = "authentication failed"
        self.session_ready.set()

    def _on_conn_failed(self, err):
        self.failure = "connection failed: %s" % (err,)
        self.cancel_connection_attempt()
        self.session_ready.set()

    def _on_stream_error(self, err):
        if self.forward:
            emit({"event": "error", "message": "stream error: %s" % err["condition"]})

    def _on_disconnected(self, _reason):
        if not self.session_ready.is_set():
            self.failure = self.failure or "disconnected during login"
            self.session_ready.set()
        self.gone.set()
        if self.forward:
            emit({"event": "disconnected"})

    def _on_message(self, msg):
        if self.forward:
            emit({"event": "message", "from": str(msg["from"]), "to": str(msg["to"]),
                  "type": msg["type"], "body": msg["body"], "id": msg["id"]})

    def _on_presence(self, p):
        if self.forward:
            emit({"event": "presence", "from": str(p["from"]), "to": str(p["to"]),
                  "type": p.xml.get("type"), "show": p["show"], "status": p["status"]})

    async def login(self):
        self.connect(address=self.peer_address, force_starttls=True)
        try:
            await asyncio.wait_for(self.session_ready.wait(), LOGIN_TIMEOUT)
        except asyncio.TimeoutError:
            self.failure = "login timeout"
        if self.failure:
            raise RuntimeError(self.failure)

    async def close(self):
        if self.transport is None:
            return
        self.disconnect(wait=1.0)
        try:
            await asyncio.wait_for(self.gone.wait(), 5.0)
        except asyncio.TimeoutError:
            self.abort()


def stdin_lines(loop, queue):
    """Reads stdin in a thread; None marks EOF."""
    def reader():
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)
    threading.Thread(target=reader, daemon=True).start()


async def serve(cfg):
    peer = Peer(cfg["jid"], cfg["password"], int(cfg["port"]),
                host=cfg.get("host", "127.0.0.1"), mech=cfg.get("mech", "SCRAM-SHA-256"))
    try:
        await peer.login()
    except RuntimeError as e:
        emit({"event": "error", "message": str(e)})
        return 1
    peer.forward = True
    await peer.get_roster()
    peer.send_presence()
    emit({"event": "ready", "jid": str(peer.boundjid)})
    queue = asyncio.Queue()
    stdin_lines(asyncio.get_running_loop(), queue)
    while True:
        get = asyncio.ensure_future(queue.get())
        gone = asyncio.ensure_future(peer.gone.wait())
        done, _ = await asyncio.wait({get, gone}, return_when=asyncio.FIRST_COMPLETED)
        if get not in done:
            get.cancel()
            return 2  # the server closed the stream
        gone.cancel()
        line = get.result()
        if line is None:
            break
        line = line.strip()
        if not line:
            continue
        try:
            c = json.loads(line)
            cmd = c.get("cmd")
            if cmd == "send":
                peer.send_message(mto=c["to"], mbody=c["body"], mtype=c.get("type", "chat"))
            elif cmd == "presence":
                peer.send_presence(pto=c.get("to"), ptype=c.get("type"),
                                   pstatus=c.get("status"), pshow=c.get("show"))
            elif cmd == "quit":
                if "id" in c:
                    emit({"event": "ok", "id": c["id"]})
                break
            else:
                raise ValueError("unknown command %r" % cmd)
            if "id" in c:
                emit({"event": "ok", "id": c["id"]})
        except Exception as e:  # report and go on
            emit({"event": "error", "message": "%s: %s" % (type(e).__name__, e)})
    peer.forward = False
    await peer.close()
    return 0


async def subscribe(cfg):
    port = int(cfg["port"])
    clients = {}
    try:
        for jid, pw in cfg["accounts"].items():
            c = Peer(jid + "/setup", pw, port, mech=cfg.get("mech", "SCRAM-SHA-256"))
            c.auto_authorize = True
            c.auto_subscribe = True
            await c.login()
            await c.get_roster()
            c.send_presence()
            clients[jid] = c
        for a, b in cfg["pairs"]:
            clients[a].send_presence(pto=b, ptype="subscribe")
        for _ in range(200):
            if all(clients[a].client_roster[b]["subscription"] == "both"
                   and clients[b].client_roster[a]["subscription"] == "both"
                   for a, b in cfg["pairs"]):
                break
            await asyncio.sleep(0.05)
        else:
            state = {"%s->%s" % (a, b): clients[a].client_roster[b]["subscription"]
                     for a, b in cfg["pairs"]}
            emit({"event": "error", "message": "subscriptions incomplete: %s" % state})
            return 1
        emit({"event": "subscribed"})
        return 0
    finally:
        for c in clients.values():
            await c.close()


def main():
    logging.basicConfig(level=logging.DEBUG if os.environ.get("TCP_PEER_DEBUG") else logging.ERROR,
                        stream=sys.stderr)
    args = sys.argv[1:]
    if args and args[0] == "--subscribe":
        rc = asyncio.run(asyncio.wait_for(subscribe(json.loads(args[1])), 60))
    else:
        rc = asyncio.run(serve(json.loads(args[0])))
    sys.exit(rc)


if __name__ == "__main__":
    main()
