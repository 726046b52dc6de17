"""Interoperability with libstrophe (C client library): strophe_client.c logs
in over STARTTLS or Direct TLS and exchanges a message with a slixmpp echo
bot through the server, and reads its roster and offline messages."""

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

import slix

HERE = Path(__file__).resolve().parent
USERS = {"alice@localhost": "strophe-alice-pw", "bob@localhost": "echo-bob-pw",
         "dave@example.org": "strophe-dave-pw"}


@pytest.fixture(scope="module")
def strophe_client(tmp_path_factory):
    if shutil.which("gcc") is None or shutil.which("pkg-config") is None:
        pytest.fail("gcc and pkg-config are needed (scripts/deps.sh test)")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libstrophe"],
                           capture_output=True, text=True)
    assert flags.returncode == 0, "libstrophe-dev missing: " + flags.stderr
    out = tmp_path_factory.mktemp("strophe") / "strophe_client"
    r = subprocess.run(["gcc", "-std=c17", "-O1", "-Wall", "-Wextra", "-Werror", "-o", str(out),
                        str(HERE / "strophe_client.c")] + flags.stdout.split(),
                       capture_output=True, text=True)
    assert r.returncode == 0, "cannot compile strophe_client.c:\n" + r.stderr
    return out


@pytest.fixture(scope="module")
def server(tern_module):
    return tern_module(users=USERS)


async def run_with_echo_bot(server, client_bin, jid, password, body, direct_tls=False):
    bot = await slix.connect(server, "bob@localhost/echo", USERS["bob@localhost"])
    seen = []

    def echo(msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            seen.append(msg)
            bot.send_message(mto=msg["from"], mbody="echo: " + msg["body"], mtype="chat")
    bot.add_event_handler("message", echo)
    try:
        port = server.tls_port if direct_tls else server.c2s_port
        args = [str(client_bin), jid, password, server.host, str(port), "bob@localhost/echo", body,
                "--timeout", "30"]
        if direct_tls:
            args.append("--direct-tls")
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError("strophe_client hung")
        return proc.returncode, out.decode(), err.decode(), seen
    finally:
        await bot.close()


@pytest.mark.parametrize("transport", ["starttls", "direct_tls"])
def test_libstrophe_message_round_trip(server, strophe_client, transport):
    body = "hello from libstrophe (%s) \u00e9\u2603" % transport
    rc, out, err, seen = slix.run(run_with_echo_bot(
        server, strophe_client, "alice@localhost/strophe", USERS["alice@localhost"], body,
        direct_tls=transport == "direct_tls"))
    assert rc == 0, "strophe_client exit %d\nstdout: %s\nstderr: %s" % (rc, out, err)
    assert out.strip() == "echo: " + body
    assert len(seen) == 1
    assert str(seen[0]["from"]) == "alice@localhost/strophe"


def test_libstrophe_other_vhost(server, strophe_client):
    rc, out, err, seen = slix.run(run_with_echo_bot(
        server, strophe_client, "dave@example.org/strophe", USERS["dave@example.org"], "cross-host"))
    assert rc == 0, "strophe_client exit %d\nstderr: %s" % (rc, err)
    assert out.strip() == "echo: cross-host"
    assert str(seen[0]["from"]) == "dave@example.org/strophe"


def test_libstrophe_wrong_password(server, strophe_client):
    rc, out, err, seen = slix.run(run_with_echo_bot(
        server, strophe_client, "alice@localhost/strophe", "wrong-password", "never sent"))
    assert rc == 2, "login with a wrong password: exit %d\nstderr: %s" % (rc, err)
    assert not seen


def test_libstrophe_roster_and_offline_messages(tern, strophe_client):
    """IM with a second client library: bob (slixmpp) and alice (raw)
    become contacts, bob leaves messages for alice while she is offline,
    and alice's libstrophe client sees the roster item and the messages."""
    import sqlite3
    import time
    from xmpp_raw import NS_CLIENT, q, server_login
    srv = tern(users=USERS)

    def alice_accepts():
        alice = server_login(srv, "alice@localhost/raw", password=USERS["alice@localhost"])
        alice.send_presence()
        alice.expect(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") == "subscribe",
                     what="bob's request")
        alice.send_presence(to="bob@localhost", type_="subscribed")
        return alice

    def offline_stored(n):
        db = srv.workdir / "data" / "tern.db"
        for _ in range(300):
            con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
            got = con.execute("SELECT count(*) FROM kv WHERE username='alice' "
                              "AND store='offline'").fetchone()[0]
            con.close()
            if got >= n:
                return got
            time.sleep(0.05)
        return got

    async def go():
        bob = await slix.connect(srv, "bob@localhost/slix", USERS["bob@localhost"])
        try:
            await bob.get_roster()
            bob.send_presence()
            accepting = asyncio.ensure_future(asyncio.to_thread(alice_accepts))
            await asyncio.sleep(0.5)
            bob.send_presence(pto="alice@localhost", ptype="subscribe")
            alice = await accepting
            for _ in range(100):
                if bob.client_roster["alice@localhost"]["subscription"] == "to":
                    break
                await asyncio.sleep(0.1)
            assert bob.client_roster["alice@localhost"]["subscription"] == "to"
            alice.close()
            await asyncio.sleep(0.5)  # let the server see alice go
            for i in range(3):
                bob.send_message(mto="alice@localhost", mbody="offline %d" % i, mtype="chat")
            assert await asyncio.to_thread(offline_stored, 3) == 3
            proc = await asyncio.create_subprocess_exec(
                str(strophe_client), "alice@localhost/strophe", USERS["alice@localhost"],
                srv.host, str(srv.c2s_port), "--inbox", "3", "--timeout", "30",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode, out.decode(), err.decode()
        finally:
            await bob.close()

    rc, out, err = slix.run(go())
    assert rc == 0, "strophe_client exit %d\nstdout: %s\nstderr: %s" % (rc, out, err)
    lines = out.split("\n")
    assert "ROSTER bob@localhost from" in lines
    assert [line for line in lines if line.startswith("MSG ")] == \
        ["MSG offline %d" % i for i in range(3)]
