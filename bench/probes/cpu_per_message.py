"""Server CPU (utime+stime from /proc) per routed 1:1 message over TLS.
u1 sends N chat messages (100-byte body) to u2, paced so u2's reader keeps
up; prints messages/s and microseconds of server CPU per message."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "e2e"))
from xmpp_raw import RawStream  # noqa: E402

PORT, PID, N = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])


def cpu_seconds():
    fields = open("/proc/%d/stat" % PID).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


a = RawStream.login("127.0.0.1", PORT, "u1", "localhost", "pw", resource="a")
b = RawStream.login("127.0.0.1", PORT, "u2", "localhost", "pw", resource="b")
batch = ("<message to='u2@localhost/b' type='chat'><body>%s</body></message>"
         % ("x" * 100)).encode() * 100
got = 0


def reader():
    global got
    while got < N:
        data = b.sock.recv(1 << 20)
        if not data:
            break
        got += data.count(b"</message>")


t = threading.Thread(target=reader)
t.start()
c0, t0 = cpu_seconds(), time.time()
sent = 0
for _ in range(N // 100):
    while sent - got > 3000:
        time.sleep(0.0005)
    a.sock.sendall(batch)
    sent += 100
t.join(120)
c1, t1 = cpu_seconds(), time.time()
print("%d messages in %.2fs (%.0f/s), server CPU %.2fs = %.1f us/message"
      % (got, t1 - t0, got / (t1 - t0), c1 - c0, (c1 - c0) / max(got, 1) * 1e6))
