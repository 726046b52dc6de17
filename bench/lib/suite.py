"""The default suite of `make bench`: every scenario against every server,
the two-core Tern run, callgrind counts and the Tsung cross-check, then
one summary table."""

import json
import os
import subprocess

from . import accounts, harness, mucfan, procs, psfan, report, runner

# (name, scenario, options, extra targets). Sizes keep the whole suite
# under ~25 minutes on 2 cores while staying well above start-up noise.
FULL = [
    ("idle-tls", "idle", dict(users=5000, tls=True, hold=15, settle=8)),
    ("idle-plain", "idle", dict(users=5000, tls=False, hold=15, settle=8)),
    ("login-tls", "login", dict(users=1000, tls=True, duration=15, concurrency=50)),
    ("chat-tls", "chat", dict(users=1000, tls=True, rate=2000, duration=20)),
    # MUC fan-out (bench/run mucfan): one room of 10 and of 100 occupants,
    # the same deliveries/s offered at each size. The 1000-occupant room is
    # left to `bench/run mucfan`: filling it (N^2 presences) costs Prosody
    # about 3 minutes and ejabberd over 1, which the suite's budget lacks.
    ("mucfan", "mucfan", dict(sizes=(10, 100), deliveries=mucfan.DEFAULT_DELIVERIES, duration=6)),
    # PubSub fan-out (bench/run psfan): one node with 10 and with 100
    # subscribers, the same notifications/s offered at each size; the
    # 1000-subscriber node only in `bench/run psfan`, as for mucfan.
    ("psfan", "psfan", dict(sizes=(10, 100), deliveries=psfan.DEFAULT_DELIVERIES, duration=6)),
    ("presence-tls", "presence", dict(users=200, roster_size=100, tls=True, duration=10)),
]
QUICK = [
    ("idle-tls", "idle", dict(users=500, tls=True, hold=6, settle=4)),
    ("idle-plain", "idle", dict(users=500, tls=False, hold=6, settle=4)),
    ("login-tls", "login", dict(users=200, tls=True, duration=5, concurrency=20)),
    ("chat-tls", "chat", dict(users=200, tls=True, rate=1000, duration=5)),
    ("mucfan", "mucfan", dict(sizes=(10, 100), deliveries=mucfan.DEFAULT_DELIVERIES, duration=3)),
    ("psfan", "psfan", dict(sizes=(10, 100), deliveries=psfan.DEFAULT_DELIVERIES, duration=3)),
    ("presence-tls", "presence", dict(users=40, roster_size=20, tls=True, duration=5)),
]
# The scenario that also runs Tern on both cores (issue 3: messages/s with
# two cores against one).
TWO_CORE_RUN = "chat-tls"

# Summary rows: (run name, figure key).
SUMMARY = [
    ("idle-tls", "mem_rss"), ("idle-tls", "mem_pss"), ("idle-tls", "setup_rate"),
    ("idle-plain", "mem_rss"), ("idle-plain", "mem_pss"),
    ("login-tls", "logins"), ("login-tls", "cpu_login"),
    ("chat-tls", "delivered"), ("chat-tls", "cpu_msg"), ("chat-tls", "p50"), ("chat-tls", "p99"),
    ("chat-tls", "p999"),
    ("mucfan-10", "delivered"), ("mucfan-10", "cpu_msg"),
    ("mucfan-100", "delivered"), ("mucfan-100", "cpu_msg"),
    ("mucfan-1000", "delivered"), ("mucfan-1000", "cpu_msg"),
    ("psfan-10", "delivered"), ("psfan-10", "cpu_msg"),
    ("psfan-100", "delivered"), ("psfan-100", "cpu_msg"),
    ("presence-tls", "presence_rate"), ("presence-tls", "cpu_login"),
]
# (scenario, users, rate, duration) of the Tsung cross-check against Tern.
TSUNG_FULL = [("idle", 1000, None, 20), ("chat", 200, 500, 20)]
TSUNG_QUICK = [("idle", 200, None, 10), ("chat", 50, 100, 10)]


def run(repo, workroot, out_dir, server_names, quick=False, log=print):
    stamp = runner.timestamp()
    runs = {}
    order = []  # column labels in first-seen order
    for name, scenario, kw in (QUICK if quick else FULL):
        if scenario in ("mucfan", "psfan"):
            sweep = mucfan if scenario == "mucfan" else psfan
            by_size, _ = sweep.run(repo, workroot, out_dir, server_names, log=log, **kw)
            for size, results in by_size.items():
                runs[f"{scenario}-{size}"] = {r["label"]: r for r in results}
                order += [r["label"] for r in results if r["label"] not in order]
            order.sort(key=lambda label: not label.startswith("tern"))
            log("")
            continue
        targets = [harness.Target(s) for s in server_names]
        if name == TWO_CORE_RUN and "tern" in server_names:
            targets.insert(server_names.index("tern") + 1, harness.Target("tern", two_cores=True))
        results, _ = runner.run_scenario(repo, workroot, out_dir, harness.Options(scenario=scenario, **kw),
                                         targets, name=name, log=log)
        runs[name] = {r["label"]: r for r in results}
        order += [r["label"] for r in results if r["label"] not in order]
        # Tern's columns first, then the peers in the order given.
        order.sort(key=lambda label: not label.startswith("tern"))
        log("")

    callgrind = run_callgrind(repo, out_dir, stamp, log)
    tlsfloor = run_tlsfloor(repo, log)
    tsung = run_tsung(repo, workroot, quick, log) if "tern" in server_names else None

    table = summary_table(runs, order)
    log("\n== summary (ratios are Tern on one core / peer) ==\n")
    log(table)
    if callgrind:
        log("\ncallgrind (Tern, instructions per operation; full output in the suite JSON):")
        summary = callgrind.get("summary")
        if isinstance(summary, dict):
            for op, figures in summary.items():
                ir = figures.get("ir_per_op") if isinstance(figures, dict) else figures
                log(f"  {op:<20} {report.fmt(ir)}")
        else:
            log(f"  {callgrind.get('status', 'no summary')}")
    if tlsfloor:
        log("\nbare OpenSSL TLS 1.3 handshake, server on CPU 0 (bench/tlsfloor; the floor under any login):")
        log("  " + ", ".join(f"{k}={report.fmt(v)}" for k, v in tlsfloor.items()))
    if tsung:
        log("\nTsung cross-check against Tern (figures in loadgen terms where they match):")
        for entry in tsung:
            log(f"  {entry['scenario']}: {entry['status']}  "
                + ", ".join(f"{k}={report.fmt(v)}" for k, v in entry["figures"].items() if v is not None))
    path = os.path.join(out_dir, f"{stamp}-suite.json")
    report.write_json(path, {"environment": harness.environment(repo), "quick": quick,
                             "runs": {n: list(r.values()) for n, r in runs.items()},
                             "callgrind": callgrind, "tlsfloor": tlsfloor, "tsung": tsung, "summary": table})
    log(f"\nbench: wrote {os.path.relpath(path, repo)}")
    failed = [f"{n}/{label}" for n, rs in runs.items() for label, r in rs.items()
              if r["status"] not in ("ok", "unsupported")]
    if failed:
        log(f"bench: failed runs: {', '.join(failed)}")
    return 1 if failed else 0


def summary_table(runs, order):
    """One column per server label, one row per (run, figure); each column
    gathers the figures of its runs. Unsupported runs show as such."""
    columns = []
    for label in order:
        figures = {}
        for name, key in SUMMARY:
            r = runs.get(name, {}).get(label)
            if r is None:
                continue
            figures[f"{name}.{key}"] = r["figures"].get(key) if r["status"] == "ok" else \
                ("unsupported" if r["status"] == "unsupported" else "failed")
        server = label.split(" ")[0]  # "tern (2 cores)" is Tern, not a peer
        columns.append({"server": server, "label": label, "status": "ok", "figures": figures})
    rows = [(f"{name}.{key}", f"{name}: {report.BY_KEY[key].name}") for name, key in SUMMARY]
    return report.table(columns, rows=rows)


def run_callgrind(repo, out_dir, stamp, log):
    """bench/callgrind/run, when present: deterministic instruction counts."""
    script = os.path.join(repo, "bench", "callgrind", "run")
    if not os.access(script, os.X_OK):
        log("bench: bench/callgrind/run not present; skipping callgrind counts")
        return None
    out = os.path.join(out_dir, f"{stamp}-callgrind.json")
    log("bench: callgrind counts (bench/callgrind/run)")
    try:
        res = procs.run([script, "--tern", os.path.join(repo, "build", "tern"),
                         "--ternctl", os.path.join(repo, "build", "ternctl"), "--out", out],
                        timeout=900, cwd=repo)
    except subprocess.TimeoutExpired:
        return {"status": "failed: timeout"}
    if res.returncode != 0 or not os.path.exists(out):
        return {"status": f"failed: exit {res.returncode}"}
    with open(out) as f:
        return json.load(f)


def run_tlsfloor(repo, log):
    """bench/tlsfloor: server CPU per bare OpenSSL handshake with Tern's TLS
    settings, so the login figures can be read against what OpenSSL alone
    costs on this machine."""
    binary = os.path.join(repo, "bench", "tlsfloor", "tlsfloor")
    if not os.access(binary, os.X_OK):
        log("bench: bench/tlsfloor not built; skipping the handshake floor")
        return None
    log("bench: bare OpenSSL handshake floor (bench/tlsfloor)")
    try:
        res = procs.run([binary, "5000", "0", "1"], timeout=300, cwd=repo,
                        stdout=subprocess.PIPE, text=True)
    except subprocess.TimeoutExpired:
        return {"status": "failed: timeout"}
    if res.returncode != 0:
        return {"status": f"failed: exit {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_tsung(repo, workroot, quick, log):
    """bench/tsung/run, when present, against a fresh Tern prepared by the
    harness. Encryption is optional on that server, so the check works
    whether the Tsung config uses STARTTLS or not."""
    script = os.path.join(repo, "bench", "tsung", "run")
    if not os.access(script, os.X_OK):
        log("bench: bench/tsung/run not present; skipping the Tsung cross-check")
        return None
    cert, key = accounts.ensure_certificate(os.path.join(workroot, "cert"))
    creds = accounts.ScramSha1()
    out = []
    for scenario, users, rate, duration in (TSUNG_QUICK if quick else TSUNG_FULL):
        opts = harness.Options(scenario=scenario, users=users, tls=False, rate=rate, duration=duration)

        def tsung(srv, pid, json_path):
            cmd = [script, "--scenario", scenario, "--host", "127.0.0.1", "--port", str(srv.port),
                   "--users", str(users), "--server-pid", str(pid), "--duration", str(duration),
                   "--out", json_path]
            if rate:
                cmd += ["--rate", str(rate)]
            log_path = os.path.join(srv.workdir, "tsung.log")
            with open(log_path, "w") as f:
                res = procs.run(cmd, cpus="1", timeout=users / 20 + duration + 300, stdout=f,
                                stderr=subprocess.STDOUT)
            if res.returncode != 0 or not os.path.exists(json_path):
                return f"failed: tsung exit {res.returncode} (see {log_path})", None
            with open(json_path) as f:
                return "ok", json.load(f)

        log(f"bench: Tsung cross-check, {scenario}, {users} users")
        r = harness.run_target(repo, workroot, opts, harness.Target("tern"), creds, cert, key,
                               driver=tsung, log=log)
        out.append({"scenario": scenario, "status": r["status"], "tsung": r["loadgen"],
                    "figures": report.figures(r["loadgen"]) if r["status"] == "ok" else {}})
    return out

