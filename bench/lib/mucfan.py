"""MUC fan-out sweep (`bench/run mucfan`): one room of N occupants for
each N in --room-sizes (10, 100, 1000), against every server, and one table
of the server CPU per delivered stanza and the deliveries/s at each size.

Each size is an ordinary muc run (fresh server, N accounts, N joins, then
groupchat messages to the room) at an offered rate of D/N messages/s, so
that every size and every server is offered the same D deliveries/s (each
message is delivered to all N occupants, the sender's echo included). D
is chosen below the slowest server's capacity at every size, so that no
server is saturated and the figure is its cost rather than its backlog.
"""

import os

from . import harness, report, runner

DEFAULT_SIZES = (10, 100, 1000)
# Offered deliveries/s at every size. Prosody 0.12 is the slowest of the
# three, at 110-180 µs of CPU per delivery on the 2-core bench machine, so
# at this rate it uses half to three quarters of its core; Tern and
# ejabberd much less. Six seconds of it give Tern (15-30 µs per delivery)
# 35-70 clock ticks of CPU.
DEFAULT_DELIVERIES = 4000
DEFAULT_DURATION = 6
# Filling a 1000-occupant room takes Prosody two to three minutes (every
# join is answered with the presence of every occupant, so N^2 presences in
# all); joins queue behind one another, so the per-join timeout must cover
# the queue, not one join.
JOIN_TIMEOUT = 300
JOIN_CONCURRENCY = 50

# Rows of the combined table: (figure key, row label); one block per size.
ROWS = [
    ("offered_deliveries", "offered deliveries/s"),
    ("delivered", "deliveries/s"),
    ("cpu_msg", "CPU per delivery (µs)"),
    ("p50", "latency p50 (ms)"),
    ("p99", "latency p99 (ms)"),
    ("muc_check", "received / expected"),
    ("muc_bad", "lost / duplicate / wrong room"),
    ("join_s", "join of all occupants (s)"),
    ("errors", "errors"),
    ("lg_cpu", "loadgen CPU (% of a core)"),
]


def options(size, deliveries=DEFAULT_DELIVERIES, duration=DEFAULT_DURATION, rooms=1, tls=True,
            mech="scram-sha-1", loadgen_args=()):
    """The muc run for rooms x size occupants at deliveries/s offered (in
    total over the rooms)."""
    rate = deliveries / size  # messages/s over all the rooms, N copies each
    extra = ["--timeout", str(JOIN_TIMEOUT)] + list(loadgen_args)
    return harness.Options(scenario="muc", users=rooms * size, rooms=rooms, room_size=size, tls=tls,
                           mech=mech, rate=round(rate, 3), duration=duration,
                           concurrency=min(JOIN_CONCURRENCY, rooms * size), loadgen_args=extra)


def run(repo, workroot, out_dir, server_names, sizes=DEFAULT_SIZES, deliveries=DEFAULT_DELIVERIES,
        duration=DEFAULT_DURATION, rooms=1, tls=True, mech="scram-sha-1", loadgen_args=(), log=print):
    """Runs every size against every server; prints each size's table, then
    the combined one. Returns ({size: [result per server]}, table)."""
    by_size = {}
    for size in sizes:
        opts = options(size, deliveries, duration, rooms, tls, mech, loadgen_args)
        targets = [harness.Target(s) for s in server_names]
        results, _ = runner.run_scenario(repo, workroot, out_dir, opts, targets, name=f"mucfan-{size}",
                                         log=log)
        by_size[size] = results
        log("")
    table = combined_table(by_size, server_names)
    mode = "TLS" if tls else "plaintext"
    log(f"== MUC fan-out: {rooms} room(s) of N occupants, {report.fmt(deliveries)} deliveries/s offered"
        f" (N x msgs/s), {report.fmt(duration)} s measured, {mode} ==\n")
    log(table)
    path = os.path.join(out_dir, f"{runner.timestamp()}-mucfan.json")
    report.write_json(path, {
        "scenario": "mucfan", "sizes": list(sizes), "deliveries_per_s": deliveries, "duration": duration,
        "rooms": rooms, "tls": tls, "mech": mech, "environment": harness.environment(repo),
        "results": {str(n): rs for n, rs in by_size.items()}, "table": table})
    log(f"\nbench: wrote {os.path.relpath(path, repo)}")
    return by_size, table


def combined_table(by_size, server_names):
    return report.sweep_table(by_size, server_names, ROWS)


def failed(by_size):
    return report.sweep_failed(by_size, "mucfan")
