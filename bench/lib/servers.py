"""The servers under test: configuration, accounts, command line, version.

Each server instance lives in a private directory that is wiped before
every run, so each scenario starts from a fresh process and fresh storage.
The configs come from bench/servers/*; this module fills in ports, paths
and the TLS mode, and writes the accounts straight into each server's
SQLite database (Tern through its own `ternctl user bulk-add`).
"""

import base64
import os
import shutil
import sqlite3
import string
import subprocess

from . import accounts, procs

DOMAIN = "localhost"
PUBSUB_DOMAIN = "pubsub." + DOMAIN
# The account that creates the pubsub node (the loadgen's publisher, user0).
PUBSUB_PUBLISHER = "user0@" + DOMAIN
EJABBERD_SCHEMA = "/usr/share/ejabberd/sql/lite.sql"
EJABBERD_LIBS = "/usr/lib/x86_64-linux-gnu"


class Server:
    name = ""
    sqlite_db = None  # the peers' SQLite file in workdir, written by the harness
    process_name = ""  # comm of the process whose /proc figures are read
    config_template = ""
    config_file = ""
    start_timeout = 60.0
    # The web scenario's endpoints on the plain HTTP port (http_port).
    bosh_path = "/http-bind"
    ws_path = "/xmpp-websocket"

    def __init__(self, repo, workdir, cert, key, tls):
        self.repo = repo
        self.workdir = workdir
        self.cert = cert
        self.key = key
        self.tls = tls
        self.port = None
        # Set by the harness for the web scenario: BOSH and WebSocket on a
        # plain HTTP port (http_port); off otherwise, as in every other run.
        self.web = False
        self.http_port = None
        # Set by the harness for the pubsub scenario (bench/run psfan): the
        # generic XEP-0060 service on PUBSUB_DOMAIN; off otherwise on the
        # peers, as in every other run.
        self.pubsub = False

    @property
    def config_path(self):
        return os.path.join(self.workdir, self.config_file)

    @property
    def log_path(self):
        return os.path.join(self.workdir, "server.log")

    def prepare(self, users, creds, roster_size=None):
        """Fresh directory, config on a new free port, users created, and
        with roster_size mutual rosters where the server's storage allows.
        Sets self.rosters_preloaded."""
        shutil.rmtree(self.workdir, ignore_errors=True)
        os.makedirs(self.workdir)
        self.port = procs.free_port()
        self.http_port = None
        while self.web and self.http_port in (None, self.port):
            self.http_port = procs.free_port()
        template = os.path.join(self.repo, "bench", "servers", self.config_template)
        with open(template) as f:
            text = string.Template(f.read()).substitute(self.config_values())
        with open(self.config_path, "w") as f:
            f.write(text)
        self.create_users(users, creds)
        if self.pubsub and self.sqlite_db:
            # Every publish is a storage write. Tern's SQLite runs in WAL
            # mode; the peers' database files are put in WAL mode too
            # (persistent in the file), so that a commit is one append to
            # the log rather than a rollback journal written and deleted.
            _sqlite_wal(os.path.join(self.workdir, self.sqlite_db))
        self.rosters_preloaded = bool(roster_size) and self.create_rosters(users, roster_size)

    def config_values(self):
        return {"workdir": self.workdir, "c2s_port": self.port, "cert": self.cert, "key": self.key,
                "cert_dir": os.path.dirname(self.cert),
                "iterations": accounts.ITERATIONS, "require_tls": self.bool_word(self.tls),
                "http_port": self.http_port or 0}

    def bool_word(self, value):
        return "yes" if value else "no"

    def env(self):
        return None

    def command(self):
        raise NotImplementedError

    def create_users(self, users, creds):
        raise NotImplementedError

    def create_rosters(self, users, roster_size):
        """Writes every user's roster (all subscriptions "both") straight
        into storage; False when this server has no way to do that, and the
        loadgen must make them over XMPP."""
        return False

    def version(self):
        raise NotImplementedError


def _package_version(pkg):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else "not installed"


def _sqlite_wal(path):
    db = sqlite3.connect(path)
    try:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    finally:
        db.close()
    if mode.lower() != "wal":
        raise RuntimeError(f"{path}: could not switch to WAL (journal_mode {mode})")


def _sqlite_insert(path, insert, rows, schema=None):
    """Bulk-inserts rows into the SQLite database at path in one
    transaction, after running the schema script if one is given."""
    db = sqlite3.connect(path)
    try:
        if schema:
            db.executescript(schema)
        db.executemany(insert, rows)
        db.commit()
    finally:
        db.close()


class Tern(Server):
    name = "tern"
    process_name = "tern"
    config_template = "tern.conf"
    config_file = "tern.conf"
    start_timeout = 20.0

    def config_values(self):
        values = super().config_values()
        values["workers"] = getattr(self, "workers", 1)
        return values

    def command(self):
        return [os.path.join(self.repo, "build", "tern"), "-c", self.config_path]

    def create_users(self, users, creds):
        # Tern derives its own salt once per bulk-add; the password and the
        # iteration count (sasl_iterations in the config) are the same.
        ternctl = os.path.join(self.repo, "build", "ternctl")
        subprocess.run([ternctl, "-c", self.config_path, "user", "bulk-add", "user%d@" + DOMAIN,
                        str(users)], input=accounts.PASSWORD + "\n", text=True, check=True,
                       cwd=self.workdir)

    def version(self):
        out = subprocess.run(["git", "-C", self.repo, "describe", "--always", "--dirty"],
                             capture_output=True, text=True)
        return out.stdout.strip() or "unknown"


class Prosody(Server):
    name = "prosody"
    process_name = "lua5.4"
    config_template = "prosody.cfg.lua"
    config_file = "prosody.cfg.lua"
    sqlite_db = "prosody.sqlite"

    def bool_word(self, value):
        return "true" if value else "false"

    def config_values(self):
        values = super().config_values()
        # mod_bosh and mod_websocket (Prosody 0.12's own, served by its
        # mod_http) only for the web scenario; no HTTP listener otherwise.
        values["http_ports"] = str(self.http_port) if self.web else ""
        values["web_modules"] = ', "bosh", "websocket"' if self.web else ""
        # mod_pubsub as a component only for the pubsub scenario. Prosody
        # 0.12 lets only admins (of the component) create nodes: the
        # publisher is made one there, and nowhere else.
        values["pubsub_component"] = (
            f'Component "{PUBSUB_DOMAIN}" "pubsub"\n'
            f'    admins = {{ "{PUBSUB_PUBLISHER}" }}\n' if self.pubsub else "")
        return values

    def command(self):
        # -F: stay in the foreground, so the PID we started is the server.
        return ["prosody", "--config", self.config_path, "-F"]

    def create_users(self, users, creds):
        """Rows as mod_storage_sql writes them for mod_auth_internal_hashed:
        one (host, user, 'accounts', key, type, value) row per field."""
        # The table and index mod_storage_sql would create on first start.
        schema = ('CREATE TABLE "prosody" ("host" TEXT NOT NULL, "user" TEXT NOT NULL,'
                  ' "store" TEXT NOT NULL, "key" TEXT NOT NULL, "type" TEXT NOT NULL,'
                  ' "value" MEDIUMTEXT NOT NULL);'
                  'CREATE INDEX "prosody_index" ON "prosody" ("host", "user", "store", "key");')
        fields = [("salt", "string", creds.salt.decode()),
                  ("iteration_count", "number", str(creds.iterations)),
                  ("stored_key", "string", creds.stored_key.hex()),
                  ("server_key", "string", creds.server_key.hex())]
        _sqlite_insert(os.path.join(self.workdir, "prosody.sqlite"),
                       'INSERT INTO "prosody" VALUES (?, ?, ?, ?, ?, ?)',
                       ((DOMAIN, user, "accounts", k, t, v)
                        for user in accounts.user_names(users) for k, t, v in fields),
                       schema)

    def create_rosters(self, users, roster_size):
        """One roster row per contact, as mod_storage_sql stores the
        rostermanager's map (the metadata entry is rebuilt at load)."""
        item = '{"subscription":"both","groups":{}}'
        names = list(accounts.user_names(users))
        _sqlite_insert(os.path.join(self.workdir, "prosody.sqlite"),
                       'INSERT INTO "prosody" VALUES (?, ?, ?, ?, ?, ?)',
                       ((DOMAIN, names[u], "roster", f"{names[v]}@{DOMAIN}", "json", item)
                        for u in range(users) for v in accounts.contacts(u, users, roster_size)))
        return True

    def version(self):
        return _package_version("prosody")


class Ejabberd(Server):
    name = "ejabberd"
    process_name = "beam.smp"
    config_template = "ejabberd.yml"
    config_file = "ejabberd.yml"
    sqlite_db = "ejabberd.db"
    start_timeout = 90.0
    bosh_path = "/bosh"
    ws_path = "/ws"

    def bool_word(self, value):
        return "true" if value else "false"

    def config_values(self):
        values = super().config_values()
        # Lines of ejabberd.yml prefixed with ${web_only} (the ejabberd_http
        # listener with /bosh and /ws, and mod_bosh) are comments except in
        # the web scenario.
        values["web_only"] = "" if self.web else "# "
        # mod_pubsub (and mod_caps, which its pep plugin requires) only for
        # the pubsub scenario.
        values["pubsub_only"] = "" if self.pubsub else "# "
        return values

    def env(self):
        # What ejabberdctl would export, pointed at the private directory.
        env = dict(os.environ)
        env.update({
            "EJABBERD_CONFIG_PATH": self.config_path,
            "EJABBERD_LOG_PATH": os.path.join(self.workdir, "ejabberd.log"),
            "ERL_LIBS": EJABBERD_LIBS,
            "ERL_CRASH_DUMP": os.path.join(self.workdir, "erl_crash.dump"),
            "ERL_MAX_PORTS": "32000",
            "ERL_MAX_ETS_TABLES": "1400",
            "HOME": self.workdir,
        })
        return env

    def command(self):
        # erl directly rather than ejabberdctl: no switch to the ejabberd
        # user, no node name (so no epmd, and no clash with a system
        # instance), and erl execs beam.smp so the PID we started is the VM.
        return ["erl", "-noinput", "-noshell", "+K", "true", "+P", "250000",
                "-mnesia", "dir", '"%s"' % os.path.join(self.workdir, "mnesia"),
                "-s", "ejabberd"]

    def create_users(self, users, creds):
        """The stock SQLite schema, then one users row per account with the
        SCRAM fields base64-encoded as ejabberd stores them."""
        with open(EJABBERD_SCHEMA) as f:
            schema = f.read()
        b64 = lambda b: base64.b64encode(b).decode()
        row = (b64(creds.stored_key), b64(creds.server_key), b64(creds.salt), creds.iterations)
        _sqlite_insert(os.path.join(self.workdir, "ejabberd.db"),
                       "INSERT INTO users (username, password, serverkey, salt, iterationcount)"
                       " VALUES (?, ?, ?, ?, ?)",
                       ((user,) + row for user in accounts.user_names(users)), schema)

    def create_rosters(self, users, roster_size):
        """rosterusers rows with subscription 'B' (both), no pending ask."""
        names = list(accounts.user_names(users))
        _sqlite_insert(os.path.join(self.workdir, "ejabberd.db"),
                       "INSERT INTO rosterusers (username, jid, nick, subscription, ask, askmessage,"
                       " server, subscribe, type) VALUES (?, ?, '', 'B', 'N', '', 'N', '', 'item')",
                       ((names[u], f"{names[v]}@{DOMAIN}")
                        for u in range(users) for v in accounts.contacts(u, users, roster_size)))
        return True

    def version(self):
        return _package_version("ejabberd")


SERVERS = {cls.name: cls for cls in (Tern, Prosody, Ejabberd)}
