"""Setup shared by bench/run and the suite, and one full scenario run:
all targets, table, results JSON and chart."""

import datetime
import os
import subprocess
from dataclasses import asdict

from . import accounts, harness, report


def setup(repo, install=True, build=True, log=print, web=False):
    """Debian packages (scripts/deps.sh bench), the Tern release build, the
    loadgen and the bare-OpenSSL handshake floor (bench/tlsfloor). web: also
    Node and tests/web/node_modules (scripts/web-deps.sh), for the web
    scenario's loadgen."""
    if install:
        subprocess.run([os.path.join(repo, "scripts", "deps.sh"), "bench"], check=True)
        if web:
            subprocess.run([os.path.join(repo, "scripts", "web-deps.sh")], check=True)
    if build:
        for target in (repo, os.path.join(repo, "bench", "loadgen"),
                       os.path.join(repo, "bench", "tlsfloor")):
            res = subprocess.run(["make", "-s", "-C", target], capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"make -C {target} failed:\n{res.stdout}{res.stderr}")
    harness.warn_system_instances(log)


def timestamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def run_scenario(repo, workroot, out_dir, opts, targets, name=None, log=print, driver=None):
    """Runs opts.scenario against every target; prints the table; writes
    OUT/<timestamp>-<name>.json and .png. Returns (results, json_path)."""
    name = name or opts.scenario
    cert, key = accounts.ensure_certificate(os.path.join(workroot, "cert"))
    creds = accounts.ScramSha1()
    mode = "TLS" if opts.tls else "plaintext"
    title = f"{name}: {opts.users} users, {mode}, {opts.mech}"
    if opts.scenario == "web":
        title = (f"{name}: {opts.users} users ({(opts.users + 1) // 2} WebSocket, {opts.users // 2} BOSH),"
                 f" plain HTTP, {opts.mech.upper()}, {opts.messages} msgs/user at {report.fmt(opts.rate)} msg/s")
    log(f"bench: {title}")
    results = []
    for target in targets:
        r = harness.run_target(repo, workroot, opts, target, creds, cert, key, driver=driver, log=log)
        r["figures"] = report.figures(r["loadgen"]) if r["status"] == "ok" else {}
        results.append(r)
    table = report.table(results, rows=report.scenario_rows(opts.scenario))
    log("")
    log(table)
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, f"{timestamp()}-{name}")
    doc = {"scenario": opts.scenario, "name": name, "title": title, "options": asdict(opts),
           "pinning": {t.label: {"server_cpus": t.server_cpus, "loadgen_cpus": t.loadgen_cpus}
                       for t in targets},
           "environment": harness.environment(repo), "results": results, "table": table}
    report.write_json(base + ".json", doc)
    png = report.chart(base + ".png", title, results)
    log(f"\nbench: wrote {os.path.relpath(base + '.json', repo)}"
        + (f" and {os.path.relpath(png, repo)}" if png else " (no chart)"))
    return results, base + ".json"
