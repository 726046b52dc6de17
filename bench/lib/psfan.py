"""PubSub fan-out sweep (`bench/run psfan`): one node with N subscribers
for each N in --sizes (10, 100, 1000), against every server, and one table
of the server CPU per delivered notification and the deliveries/s at each
size.

Each size is one run of the loadgen's pubsub scenario: a fresh server,
N + 1 accounts, user0 creates the node `bench` on pubsub.localhost (the
same node configuration everywhere: pubsub#max_items 10, items persisted,
notifications with payloads, open access, publishers publish, no last item
sent), users 1..N subscribe their bare JIDs, then user0 publishes small
Atom items at D/N items/s, so that every size and every server is offered
the same D notifications/s. D (1500 by default) is chosen below the
slowest server's capacity at N=10, where each publish's own cost (a storage
write) weighs most, so the figure is a cost, not a backlog.
"""

import os

from . import harness, report, runner

DEFAULT_SIZES = (10, 100, 1000)
# Offered notifications/s at every size. Every publish is also a storage
# write (items persist), so at small N the cost per publish dominates:
# ejabberd 23.01 spends about 4 ms of CPU per publish at N=10 (400 µs per
# notification), so the 4000/s of mucfan (400 publishes/s) takes more than
# its core and leaves a backlog. At 1500/s (150 publishes/s at N=10) it
# uses about 60 % of its core, Prosody 0.12 40-50 %.
DEFAULT_DELIVERIES = 1500
DEFAULT_DURATION = 6
# The per-request timeout of the node creation and the subscriptions, which
# queue behind one another (50 in flight).
JOIN_TIMEOUT = 120
JOIN_CONCURRENCY = 50
MAX_ITEMS = 10

# Rows of the combined table: (figure key, row label); one block per size.
ROWS = [
    ("offered_pub", "publishes/s offered"),
    ("offered_deliveries", "offered deliveries/s"),
    ("delivered", "deliveries/s"),
    ("cpu_msg", "CPU per delivery (µs)"),
    ("p50", "latency p50 (ms)"),
    ("p99", "latency p99 (ms)"),
    ("muc_check", "received / expected"),
    ("ps_bad", "lost / duplicate / wrong node"),
    ("subscribe_s", "create + subscribe all (s)"),
    ("rss_subscribed", "server RSS, subscribed (MB)"),
    ("rss_growth", "RSS growth while publishing (KB)"),
    ("errors", "errors"),
    ("lg_cpu", "loadgen CPU (% of a core)"),
]


def options(size, deliveries=DEFAULT_DELIVERIES, duration=DEFAULT_DURATION, tls=True,
            mech="scram-sha-1", loadgen_args=()):
    """The pubsub run for one node of size subscribers at deliveries/s."""
    rate = deliveries / size  # items/s, size notifications each
    extra = ["--timeout", str(JOIN_TIMEOUT), "--max-items", str(MAX_ITEMS)] + list(loadgen_args)
    return harness.Options(scenario="pubsub", users=size + 1, subscribers=size, tls=tls, mech=mech,
                           rate=round(rate, 3), duration=duration,
                           concurrency=min(JOIN_CONCURRENCY, size + 1), loadgen_args=extra)


def run(repo, workroot, out_dir, server_names, sizes=DEFAULT_SIZES, deliveries=DEFAULT_DELIVERIES,
        duration=DEFAULT_DURATION, tls=True, mech="scram-sha-1", loadgen_args=(), log=print):
    """Runs every size against every server; prints each size's table, then
    the combined one. Returns ({size: [result per server]}, table)."""
    by_size = {}
    for size in sizes:
        opts = options(size, deliveries, duration, tls, mech, loadgen_args)
        targets = [harness.Target(s) for s in server_names]
        results, _ = runner.run_scenario(repo, workroot, out_dir, opts, targets, name=f"psfan-{size}",
                                         log=log)
        by_size[size] = results
        log("")
    table = combined_table(by_size, server_names)
    mode = "TLS" if tls else "plaintext"
    log(f"== PubSub fan-out: 1 node with N subscribers, {report.fmt(deliveries)} notifications/s offered"
        f" (N x items/s), max_items {MAX_ITEMS}, {report.fmt(duration)} s measured, {mode} ==\n")
    log(table)
    path = os.path.join(out_dir, f"{runner.timestamp()}-psfan.json")
    report.write_json(path, {
        "scenario": "psfan", "sizes": list(sizes), "deliveries_per_s": deliveries, "duration": duration,
        "max_items": MAX_ITEMS, "tls": tls, "mech": mech, "environment": harness.environment(repo),
        "results": {str(n): rs for n, rs in by_size.items()}, "table": table})
    log(f"\nbench: wrote {os.path.relpath(path, repo)}")
    return by_size, table


def combined_table(by_size, server_names):
    return report.sweep_table(by_size, server_names, ROWS)


def failed(by_size):
    return report.sweep_failed(by_size, "psfan")
