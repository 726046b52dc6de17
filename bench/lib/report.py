"""Figures out of loadgen JSON, the side-by-side table, the results file and
the gnuplot chart."""

import json
import os
import shutil
import subprocess
from typing import Callable, NamedTuple


def _get(doc, *path):
    for part in path:
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def _first(doc, *paths):
    """The first of several possible keys present in doc: the muc scenario
    and the Tsung cross-check name some figures differently."""
    for path in paths:
        value = _get(doc, *path)
        if value is not None:
            return value
    return None


def _kb(value):
    return None if value is None else value / 1024


def _errors(doc):
    errs = doc.get("errors")
    if not isinstance(errs, dict):
        return None
    total = sum(v for k, v in errs.items() if isinstance(v, (int, float)))
    return total + (doc.get("msg_errors") or 0) + (doc.get("join_errors") or 0)


def _offered_deliveries(doc):
    exp, dur = doc.get("expected_deliveries"), doc.get("duration_s")
    return exp / dur if exp is not None and dur else None


def _muc_check(doc):
    if doc.get("expected_deliveries") is None or doc.get("delivered") is None:
        return None
    return f"{doc['delivered']:,} / {doc['expected_deliveries']:,}"


def _muc_bad(doc):
    """Per-message check of the loadgen: copies missing from messages that
    got fewer than their room's occupants, surplus copies, and copies from
    another room."""
    c = doc.get("delivery_check")
    if not isinstance(c, dict):
        return None
    return f"{c.get('lost', 0):,} / {c.get('duplicates', 0):,} / {c.get('misrouted', 0):,}"


def _ps_bad(doc):
    """pubsub: notifications missing from items that reached fewer
    subscribers than the node had, surplus ones, and notifications from
    another service or node."""
    if doc.get("scenario") != "pubsub":
        return None
    return _muc_bad(doc)


def _ps_mem(doc, key):
    """pubsub: server RSS in MB at a point of the run (server_mem)."""
    if doc.get("scenario") != "pubsub":
        return None
    kb = _get(doc, "server_mem", key)
    return None if kb is None else kb / 1024


def _ps_growth(doc):
    """pubsub: server RSS growth over the publishing phase, in KB."""
    m = doc.get("server_mem") if doc.get("scenario") == "pubsub" else None
    if not isinstance(m, dict) or m.get("rss_after_kb") is None or m.get("rss_subscribed_kb") is None:
        return None
    return m["rss_after_kb"] - m["rss_subscribed_kb"]


class Figure(NamedTuple):
    key: str
    label: str
    unit: str
    get: Callable  # loadgen JSON -> value or None
    lower_is_better: bool
    ratio: bool = True  # a Tern/peer ratio means something

    @property
    def name(self):
        return f"{self.label} ({self.unit})" if self.unit else self.label


# Rows of the table, in order; rows without a value for any server are left
# out.
FIGURES = [
    Figure("sessions", "sessions held", "",
           lambda d: _first(d, ("sessions_held",), ("server_sessions_held",)), False, ratio=False),
    Figure("setup_rate", "setup rate", "logins/s", lambda d: d.get("setup_logins_per_s"), False),
    Figure("mem_rss", "memory/session RSS", "KB",
           lambda d: _first(d, ("rss_per_session_kb",))
           or _kb(_get(d, "server_mem", "rss_bytes_per_session")), True),
    Figure("mem_pss", "memory/session PSS", "KB",
           lambda d: _first(d, ("pss_per_session_kb",))
           or _kb(_get(d, "server_mem", "pss_bytes_per_session")), True),
    Figure("logins", "logins/s", "", lambda d: d.get("logins_per_s"), False),
    Figure("cpu_login", "CPU/login", "µs", lambda d: d.get("server_cpu_us_per_login"), True),
    Figure("offered", "offered msg/s", "", lambda d: d.get("offered_msgs_per_s"), False, ratio=False),
    # chat: messages; muc: deliveries (one per occupant of the room).
    Figure("delivered", "delivered msg/s", "",
           lambda d: _first(d, ("delivered_msgs_per_s",), ("deliveries_per_s",)), False),
    Figure("cpu_msg", "CPU/msg", "µs",
           lambda d: _first(d, ("server_cpu_us_per_msg",), ("server_cpu_us_per_delivery",)), True),
    # muc: deliveries owed (occupants at send time) per second of sending,
    # the per-message delivery check, and the time the joins took.
    Figure("offered_deliveries", "offered deliveries/s", "", _offered_deliveries, False, ratio=False),
    Figure("muc_check", "deliveries received / expected", "", _muc_check, False, ratio=False),
    Figure("muc_bad", "deliveries lost / duplicate / wrong room", "", _muc_bad, True, ratio=False),
    Figure("join_s", "join of all occupants", "s", lambda d: d.get("join_s"), True),
    # pubsub: items published per second, the per-item delivery check, the
    # node creation and subscriptions, the server's RSS.
    Figure("offered_pub", "offered publishes/s", "",
           lambda d: d.get("offered_msgs_per_s") if d.get("scenario") == "pubsub" else None, False,
           ratio=False),
    Figure("ps_bad", "notifications lost / duplicate / wrong node", "", _ps_bad, True, ratio=False),
    Figure("subscribe_s", "node creation and subscriptions", "s", lambda d: d.get("subscribe_s"), True),
    Figure("rss_subscribed", "server RSS, subscribed", "MB", lambda d: _ps_mem(d, "rss_subscribed_kb"),
           True),
    Figure("rss_end", "server RSS after publishing", "MB", lambda d: _ps_mem(d, "rss_after_kb"), True),
    Figure("rss_growth", "RSS growth while publishing", "KB", _ps_growth, True, ratio=False),
    Figure("presence_rate", "presence delivered/s", "", lambda d: d.get("presence_per_s"), False),
    Figure("presence_login", "presence/login", "", lambda d: d.get("presence_per_login"), False,
           ratio=False),
    Figure("p50", "latency p50", "ms", lambda d: _latency_ms(d, "p50"), True),
    Figure("p99", "latency p99", "ms", lambda d: _latency_ms(d, "p99"), True),
    Figure("p999", "latency p99.9", "ms", lambda d: _latency_ms(d, "p999"), True),
    # web (bench/web/loadgen.mjs): login times by transport, message counts,
    # latency by direction.
    Figure("login_p50", "login p50", "ms", lambda d: _get(d, "login_ms", "all", "p50"), True),
    Figure("login_p99", "login p99", "ms", lambda d: _get(d, "login_ms", "all", "p99"), True),
    Figure("login_ws_p50", "login p50 WebSocket", "ms", lambda d: _get(d, "login_ms", "ws", "p50"), True),
    Figure("login_ws_p99", "login p99 WebSocket", "ms", lambda d: _get(d, "login_ms", "ws", "p99"), True),
    Figure("login_bosh_p50", "login p50 BOSH", "ms", lambda d: _get(d, "login_ms", "bosh", "p50"), True),
    Figure("login_bosh_p99", "login p99 BOSH", "ms", lambda d: _get(d, "login_ms", "bosh", "p99"), True),
    Figure("msgs_sent", "messages sent", "", lambda d: d.get("msgs_sent"), False, ratio=False),
    Figure("msgs_delivered", "messages delivered", "", lambda d: d.get("msgs_delivered"), False),
    Figure("p99_ws_bosh", "latency p99 WS→BOSH", "ms",
           lambda d: _ms(_get(d, "latency_us_ws_to_bosh", "p99")), True),
    Figure("p99_bosh_ws", "latency p99 BOSH→WS", "ms",
           lambda d: _ms(_get(d, "latency_us_bosh_to_ws", "p99")), True),
    Figure("lg_cpu_login", "loadgen CPU in logins", "% of a core",
           lambda d: d.get("loadgen_cpu_login_pct"), True, ratio=False),
    Figure("errors", "errors", "", _errors, True, ratio=False),
    Figure("lg_cpu", "loadgen CPU", "% of a core",
           lambda d: 100 * d["loadgen_cpu_s"] / d["wall_s"] if d.get("wall_s") else None, True,
           ratio=False),
]
BY_KEY = {f.key: f for f in FIGURES}

# Scenarios whose table has its own row order (others: FIGURES order).
SCENARIO_ROWS = {
    "pubsub": ["offered_pub", "offered_deliveries", "delivered", "cpu_msg", "p50", "p99", "p999",
               "muc_check", "ps_bad", "subscribe_s", "rss_subscribed", "rss_end", "rss_growth",
               "errors", "lg_cpu"],
    "web": ["sessions", "logins", "login_p50", "login_p99", "login_ws_p50", "login_ws_p99",
            "login_bosh_p50", "login_bosh_p99", "cpu_login", "lg_cpu_login", "mem_rss", "mem_pss", "offered",
            "msgs_sent", "msgs_delivered", "p50", "p99", "p99_ws_bosh", "p99_bosh_ws", "cpu_msg",
            "errors", "lg_cpu"],
}


def scenario_rows(scenario):
    """(key, row name) pairs for report.table, or None for the default."""
    keys = SCENARIO_ROWS.get(scenario)
    return [(k, BY_KEY[k].name) for k in keys] if keys else None

# Figures shown in the chart: one panel each, the main figure of a scenario.
CHART_FIGURES = ["mem_rss", "mem_pss", "logins", "cpu_login", "delivered", "cpu_msg", "p99",
                 "presence_rate", "login_p99"]


def _ms(us):
    return None if us is None else us / 1000


def _latency_ms(doc, pct):
    """Loadgen latencies are in µs under latency_us; the Tsung cross-check
    (bench/tsung/run) writes ms under latency_ms."""
    us = _get(doc, "latency_us", pct)
    return us / 1000 if us is not None else _get(doc, "latency_ms", pct + "_ms")


def figures(doc):
    """{key: value} for one server's loadgen JSON (None where absent)."""
    if not doc:
        return {}
    out = {}
    for f in FIGURES:
        try:
            out[f.key] = f.get(doc)
        except (KeyError, TypeError, ZeroDivisionError):
            out[f.key] = None
    return out


def fmt(value):
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    mag = abs(value)
    if isinstance(value, int) or mag >= 1000:
        return f"{value:,.0f}"
    if mag >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b == 0:
        return "-"
    return f"{a / b:.2f}"


def table(results, rows=None):
    """The side-by-side table. results: one dict per column with label,
    server, status and figures. rows: (figure key, row name) pairs, by
    default every figure of FIGURES that some column has. After the server
    columns come the ratios of the first one-core Tern column to each peer
    (Tern/peer: below 1 means Tern is lower, e.g. less memory)."""
    if rows is None:
        rows = [(f.key, f.name) for f in FIGURES]
    base = next((r for r in results if r["label"] == "tern" and r["status"] == "ok"), None)
    peers = [r for r in results if r["server"] != "tern" and r["status"] == "ok"] if base else []
    header = ["figure"] + [r["label"] for r in results] + [f"tern/{p['label']}" for p in peers]
    lines = []
    if any(r["status"] != "ok" for r in results):
        lines.append(["status"] + [r["status"].split(":")[0] for r in results] + ["" for _ in peers])
    for key, name in rows:
        values = [r["figures"].get(key) if r["status"] == "ok" else None for r in results]
        if all(v is None for v in values):
            continue
        with_ratio = BY_KEY[key.rsplit(".", 1)[-1]].ratio
        ratios = [_ratio(base["figures"].get(key), p["figures"].get(key)) if with_ratio else ""
                  for p in peers]
        lines.append([name] + [fmt(v) for v in values] + ratios)
    widths = [max(len(str(row[i])) for row in [header] + lines) for i in range(len(header))]
    out = []
    for n, row in enumerate([header] + lines):
        cells = [str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(row)]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def sweep_table(by_size, server_names, rows):
    """Servers as columns, one block of rows ((figure key, label)) per size
    of a sweep ({size: [result per server]}), with the Tern/peer ratios of
    table(). A server that did not run a size shows its status there."""
    columns = []
    for server in server_names:
        figures = {}
        for size, results in by_size.items():
            r = next((x for x in results if x["label"] == server), None)
            if r is None:
                continue
            if r["status"] != "ok":
                for key, _ in rows:
                    figures[f"{size}.{key}"] = r["status"].split(":")[0]
                continue
            figs = r["figures"]
            for key, _ in rows:
                figures[f"{size}.{key}"] = figs.get(key)
        columns.append({"server": server, "label": server, "status": "ok", "figures": figures})
    labels = [(f"{size}.{key}", f"N={size}: {label}") for size in by_size for key, label in rows]
    return table(columns, rows=labels)


def sweep_failed(by_size, name):
    """The runs of a sweep that failed (unsupported is not a failure)."""
    return [f"{name}-{n}/{r['label']}" for n, rs in by_size.items() for r in rs
            if r["status"] not in ("ok", "unsupported")]


def write_json(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def chart(png, title, results):
    """A PNG with one bar panel per headline figure, one bar per server.
    Returns the path, or None when gnuplot is missing or nothing is
    plottable."""
    gnuplot = shutil.which("gnuplot")
    runs = [r for r in results if r["status"] == "ok"]
    panels = [k for k in CHART_FIGURES if any(r["figures"].get(k) is not None for r in runs)]
    if not gnuplot or not runs or not panels:
        return None
    data = png[:-4] + ".dat"
    with open(data, "w") as f:
        for key in panels:
            f.write(f"# {key}\n")
            for r in runs:
                v = r["figures"].get(key)
                f.write(f"\"{r['label']}\" {v if v is not None else 'NaN'}\n")
            f.write("\n\n")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "chart.gp")
    cols = min(len(panels), 3)
    rows = (len(panels) + cols - 1) // cols
    # One variable per panel title (t0, t1, ...): gnuplot has no list type.
    titles = "".join(f" t{i}='{BY_KEY[k].name}, {'lower' if BY_KEY[k].lower_is_better else 'higher'}"
                     " is better';" for i, k in enumerate(panels))
    cmd = [gnuplot, "-e", f"datafile='{data}'; outfile='{png}'; maintitle='{title}';"
           f" npanels={len(panels)}; ncols={cols}; nrows={rows};{titles}", script]
    res = subprocess.run(cmd, capture_output=True, text=True)
    os.remove(data)
    if res.returncode != 0:
        print(f"bench: gnuplot failed: {res.stderr.strip()}")
        return None
    return png
