"""Benchmark accounts: SCRAM-SHA-1 credentials and the TLS certificate
shared by every server.

All accounts of a run share one salt, so PBKDF2 runs once per server rather
than once per account (15,000 accounts would otherwise take minutes at 4096
iterations, on the server side here and in the loadgen). Every server gets
the same treatment, and a SCRAM login costs the server the same HMACs
whatever the salt, so the figures are unaffected. Never do this for real
users.
"""

import hashlib
import hmac
import os
import secrets
import subprocess

ITERATIONS = 4096
PASSWORD = "pw"


class ScramSha1:
    """StoredKey and ServerKey (RFC 5802 §3) for one password and salt."""

    def __init__(self, password=PASSWORD, salt=None, iterations=ITERATIONS):
        # Printable salt: Prosody stores the salt as a raw string, ejabberd
        # as base64 of the bytes; ASCII bytes work for both.
        self.salt = salt or secrets.token_hex(12).encode()
        self.iterations = iterations
        salted = hashlib.pbkdf2_hmac("sha1", password.encode(), self.salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha1).digest()
        self.stored_key = hashlib.sha1(client_key).digest()
        self.server_key = hmac.new(salted, b"Server Key", hashlib.sha1).digest()


def user_names(count, fmt="user%d"):
    return (fmt % i for i in range(count))


def contacts(user, users, roster_size):
    """The roster of user as the loadgen's presence scenario expects it: its
    roster_size/2 neighbours on each side, modulo users (symmetric)."""
    half = roster_size // 2
    return [(user + d) % users for d in list(range(1, half + 1)) + list(range(-1, -half - 1, -1))]


def ensure_certificate(cert_dir, domain="localhost"):
    """A self-signed ECDSA P-256 certificate for domain, created once and
    reused by every server and run. Returns (cert, key) paths."""
    cert = os.path.join(cert_dir, domain + ".crt")
    key = os.path.join(cert_dir, domain + ".key")
    if os.path.exists(cert) and os.path.exists(key):
        return cert, key
    os.makedirs(cert_dir, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-sha256", "-days", "3650", "-subj", "/CN=" + domain,
                    "-addext", "subjectAltName=DNS:" + domain, "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(key, 0o600)
    return cert, key
