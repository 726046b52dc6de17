"""Server RSS per idle authenticated TLS session: N clients (u0..uN-1) log
in over STARTTLS with PLAIN, bind, send initial presence and stay idle; the
server's VmRSS is read before and 4 s after (past the 2 s idle parser
release)."""
import asyncio
import base64
import re
import ssl
import sys

PORT, PID, N = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE
HDR = (b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
       b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


def rss_kb():
    for line in open("/proc/%d/status" % PID):
        if line.startswith("VmRSS"):
            return int(line.split()[1])


async def read_until(r, pattern):
    buf = b""
    while not re.search(pattern, buf):
        data = await r.read(65536)
        if not data:
            raise ConnectionError(buf.decode(errors="replace"))
        buf += data


async def session(i, keep):
    r, w = await asyncio.open_connection("127.0.0.1", PORT)
    w.write(HDR)
    await read_until(r, rb"</stream:features>")
    w.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    await read_until(r, rb"proceed")
    await w.start_tls(CTX)
    w.write(HDR)
    await read_until(r, rb"</stream:features>")
    cred = base64.b64encode(("\0u%d\0pw" % i).encode())
    w.write(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + cred + b"</auth>")
    await read_until(r, rb"success")
    w.write(HDR)
    await read_until(r, rb"</stream:features>")
    w.write(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    await read_until(r, rb"</iq>")
    w.write(b"<presence/>")
    await read_until(r, rb"presence")
    keep.append(w)


async def main():
    keep, base = [], rss_kb()
    sem = asyncio.Semaphore(50)

    async def limited(i):
        async with sem:
            await session(i, keep)
    await asyncio.gather(*[limited(i) for i in range(N)])
    await asyncio.sleep(4)
    after = rss_kb()
    print("%d sessions: RSS %d KB -> %d KB, %.0f bytes/session"
          % (len(keep), base, after, (after - base) * 1024 / len(keep)))
    for w in keep:
        w.close()


asyncio.run(main())
