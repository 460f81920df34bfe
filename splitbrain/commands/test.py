"""`splitbrain test`: run a test against a system and check it.

The command only parses and validates options into one plain dict (the test, Jepsen's "a test is
plain data"), dispatches to a backend, and prints the summary:

    backend sim    splitbrain.harness.sim.run_sim_test(test) -> RunSummary
    backend other  splitbrain.harness.runner.run_test(test) -> RunSummary   (issue 6: local, ...)

The test dict (also saved as test.json): name, backend, system, bin, workload, nemesis (list),
time_limit (s), nodes, concurrency, rate, seed, bugs (list), opts (the system's --opt k=v),
workload_opts (--opt workload.k=v), sim_opts (--opt sim.k=v), harness_opts (--opt harness.k=v,
the real-process runner's), schedule (sim: explicit fault list or None), store (root dir or
None). Values a user did not give are None: each backend applies its own defaults and records
what it used.

It prints the verdict, the anomalies by checker and name, the store path, and the exact command
that replays the run. Exit code from the validity (0 valid, 1 invalid, 3 unknown).
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

import click

from .. import exitcodes
from ..cli import UserError

BACKENDS = ("sim", "local", "netns", "docker", "ssh")
DEFAULT_WORKLOAD = "register"
# For --help without importing the harness; tests/test_campaign.py checks them against
# harness/nemesis.py FAULTS and harness/sim/schedule.py KINDS.
NEMESES = ("partition", "partition-leader", "kill", "lost-writes", "pause", "clock", "loss",
           "latency", "duplicate", "crash-storm", "crash-point")
SIM_NEMESES = ("partition", "kill", "pause", "clock", "loss")


def parse_opt(text: str) -> tuple[str, Any]:
    """`k=v` with v parsed as JSON when it is JSON (300, true, "x"), else kept as a string."""
    if "=" not in text:
        raise UserError(f"--opt {text!r}: expected NAME=VALUE")
    k, _, v = text.partition("=")
    k = k.strip()
    if not k:
        raise UserError(f"--opt {text!r}: empty option name")
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def parse_schedule(text: str | None) -> list | None:
    if text is None:
        return None
    src = "--schedule"
    if text.startswith("@"):
        path = text[1:]
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as e:
            raise UserError(f"--schedule: cannot read {path}: {e.strerror}") from None
        src = path
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{src}: not valid JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(data, list):
        raise UserError(f"{src}: expected a JSON list of faults")
    return data


def replay_command(test: dict) -> str:
    """The exact command line that replays `test` (every option that shapes the run)."""
    args = ["splitbrain", "test", "--backend", test["backend"]]
    if test.get("system"):
        args += ["--system", test["system"]]
    if test.get("bin"):
        args += ["--bin", shlex.join([test["bin"], *(test.get("bin_args") or [])])
                 if test.get("bin_args") else test["bin"]]
    if test.get("db"):
        args += ["--db", test["db"]]
    args += ["--workload", test["workload"]]
    if test.get("latency"):
        v = test["latency"]
        args += ["--latency", str(int(v)) if float(v).is_integer() else str(v)]
    args += ["--nemesis", ",".join(test.get("nemesis") or []) or "none"]
    for flag, key in (("--time-limit", "time_limit"), ("--nodes", "nodes"),
                      ("--concurrency", "concurrency"), ("--rate", "rate"), ("--seed", "seed")):
        if test.get(key) is not None:
            v = test[key]
            args += [flag, str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)]
    for b in test.get("bugs") or []:
        args += ["--bug", b]
    for prefix, key in (("", "opts"), ("workload.", "workload_opts"), ("sim.", "sim_opts"),
                        ("harness.", "harness_opts")):
        for k, v in sorted((test.get(key) or {}).items()):
            if key == "opts" and test.get("system"):
                k = k.replace("_", "-")     # a system option's one shown spelling (registry)
            args += ["--opt", f"{prefix}{k}={v if isinstance(v, str) else json.dumps(v)}"]
    if test.get("schedule") is not None:
        args += ["--schedule", json.dumps(test["schedule"], separators=(",", ":"))]
    if test.get("ssh_hosts_file"):          # the ssh backend's hosts
        args += ["--hosts", test["ssh_hosts_file"]]
    elif test.get("ssh_hosts"):
        for n, h in test["ssh_hosts"].items():
            args += ["--host", f"{n}={h['user']}@{h['address']}:{h['port']}"]
    return " ".join(shlex.quote(a) for a in args)


def parse_ssh_hosts(backend: str | None, hosts_file: str | None, host_args, nodes: int | None):
    """The ssh backend's hosts (node -> HostSpec) from --hosts FILE or --host n1=USER@ADDR,
    None for other backends; UserError naming what is wrong. --nodes, when given, must match
    the number of hosts (one node per host)."""
    if backend != "ssh":
        if hosts_file or host_args:
            raise UserError("--hosts/--host are for --backend ssh")
        return None
    from ..harness.backends.ssh_hosts import HostsError, parse_host_args, parse_hosts_file
    if hosts_file and host_args:
        raise UserError("give either --hosts FILE or --host NODE=USER@ADDRESS, not both")
    if not hosts_file and not host_args:
        raise UserError("--backend ssh needs hosts: --hosts hosts.toml or --host "
                        "n1=USER@ADDRESS ... (one per node)")
    try:
        hosts = parse_hosts_file(hosts_file) if hosts_file else parse_host_args(host_args)
    except HostsError as e:
        raise UserError(str(e)) from None
    if nodes is not None and nodes != len(hosts):
        raise UserError(f"--nodes {nodes}: the ssh backend runs one node per host, and "
                        f"{len(hosts)} host(s) are given")
    return hosts


def parse_bin(bin_path: str | None, extra: list[str] | tuple[str, ...] = ()) -> tuple[str | None, list[str]]:
    """Maelstrom's `--bin PROGRAM ARGS...`: the program and its arguments, from the option's
    value and the command's trailing arguments. `--bin "python3 node.py"` (one word with
    spaces that names no file) is split as a shell would. The program is resolved later (a
    path, or a name on PATH)."""
    if bin_path is None:
        if extra:
            raise UserError(f"unexpected argument {extra[0]!r} (arguments after the options are "
                            f"the node program's, and need --bin)")
        return None, []
    words = [bin_path]
    if any(c.isspace() for c in bin_path) and not os.path.exists(bin_path):
        try:
            words = shlex.split(bin_path)
        except ValueError as e:
            raise UserError(f"--bin {bin_path!r}: {e}") from None
        if not words:
            raise UserError("--bin: empty program")
    return words[0], [*words[1:], *extra]


def program_label(program: str, args=()) -> str:
    """A short name for a node program: the script an interpreter runs (`python3 node.py` ->
    node.py), else the program's file name."""
    for a in args:
        if not a.startswith("-") and os.path.isfile(a):
            return os.path.basename(a)
    return os.path.basename(program)


def parse_concurrency(text: Any, nodes: int) -> int | None:
    """--concurrency N, or Maelstrom's Kn (K times the node count, e.g. 2n)."""
    if text is None or isinstance(text, int):
        return text
    t = str(text).strip()
    try:
        if t.endswith("n"):
            k = float(t[:-1]) if t[:-1] else 1.0
            return max(1, int(round(k * nodes)))
        return int(t)
    except ValueError:
        raise UserError(f"--concurrency {text!r}: expected a number of workers or Kn (K times "
                        f"the node count, e.g. 2n)") from None


def parse_availability(text: Any) -> Any:
    """--availability: Maelstrom's `total`, or a fraction in [0, 1]."""
    if text is None:
        return None
    if str(text).strip() == "total":
        return "total"
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0.0 <= v <= 1.0:
        raise UserError(f"--availability {text!r}: expected total or a fraction in [0, 1]")
    return v


def build_test(*, system, bin_path, workload, nemesis, time_limit, nodes, concurrency, rate,
               seed, bugs, opts, backend, store, name, schedule, bin_args=(), latency=None,
               availability=None, topology=None, nemesis_interval=None,
               log_stderr=False, db=None) -> dict:
    """Validate the options (UserError naming the option) and return the test dict."""
    from ..harness.workloads import WORKLOADS, make_workload
    if db:       # a real database: splitbrain/dbs/options.py (its own defaults and checks)
        from ..dbs.options import build_db_test
        return build_db_test(db=db, system=system, bin_path=bin_path, workload=workload,
                             nemesis=nemesis, time_limit=time_limit, nodes=nodes,
                             concurrency=concurrency, rate=rate, seed=seed, bugs=list(bugs),
                             opts=opts, backend=backend, store=store, name=name,
                             schedule=schedule, latency=latency, availability=availability,
                             topology=topology, nemesis_interval=nemesis_interval,
                             log_stderr=log_stderr)
    backend = backend or "local"
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend!r}: choose from {', '.join(BACKENDS)}")
    if not system and not bin_path:
        raise UserError("give --system NAME (an in-house system), --bin PATH (a Maelstrom node) "
                        "or --db NAME (a real database)")
    if system and bin_path:
        raise UserError("give either --system or --bin, not both")
    if backend == "sim" and bin_path:
        raise UserError("--backend sim runs in-house systems only (--system); use --backend "
                        "local for --bin")
    if system:
        from ..systems.registry import get_system
        try:
            cls = get_system(system)
        except ValueError as e:
            raise UserError(f"--system: {e}") from None
        except (ImportError, AttributeError) as e:
            raise UserError(f"--system {system}: not available ({e})") from None
        unknown = [b for b in bugs if b not in cls.BUGS]
        if unknown:
            raise UserError(f"--bug {unknown[0]!r}: {system} has no such bug switch "
                            f"(known: {', '.join(cls.BUGS) or 'none'})")
    workload = workload or DEFAULT_WORKLOAD
    try:
        make_workload(workload)
    except ValueError as e:
        raise UserError(f"--workload: {e}") from None
    if not isinstance(nemesis, str):          # --nemesis given several times (Maelstrom's way)
        nemesis = ",".join(nemesis or ())
    nem: list[str] = []
    for part in (nemesis or "").split(","):
        part = part.strip()
        if part and part != "none":
            nem.append(part)
    if backend == "sim":
        from ..harness.sim.schedule import KINDS
        if nem == ["all"]:
            nem = list(KINDS)
        bad = [n for n in nem if n not in KINDS]
        if bad:
            raise UserError(f"--nemesis {bad[0]!r}: the simulator's nemeses are "
                            f"{', '.join(KINDS)} (or all, none)")
    for flag, v, lo in (("--time-limit", time_limit, 0), ("--rate", rate, 0)):
        if v is not None and v <= lo:
            raise UserError(f"{flag} must be > {lo}, got {v}")
    for flag, v in (("--latency", latency), ("--nemesis-interval", nemesis_interval)):
        if v is not None and (v < 0 or v != v):
            raise UserError(f"{flag} must be >= 0, got {v}")
    if latency and backend == "sim":
        raise UserError("--latency is for the process backends (local, netns, docker); the "
                        "simulator's network is set with --opt sim.*")
    if nodes is not None and nodes < 1:
        raise UserError(f"--nodes must be >= 1, got {nodes}")
    if backend == "sim":
        from ..harness.sim import SIM_DEFAULTS as _defaults
    else:
        from ..harness.runner import LOCAL_DEFAULTS as _defaults
    concurrency = parse_concurrency(concurrency, nodes or _defaults["nodes"])
    if concurrency is not None and concurrency < 1:
        raise UserError(f"--concurrency must be >= 1, got {concurrency}")
    sys_opts: dict[str, Any] = {}
    wl_opts: dict[str, Any] = {}
    sim_opts: dict[str, Any] = {}
    harness_opts: dict[str, Any] = {}
    for text in opts:
        k, v = parse_opt(text)
        if k.startswith("workload."):
            wl_opts[k[len("workload."):]] = v
        elif k.startswith("sim."):
            sim_opts[k[len("sim."):]] = v
        elif k.startswith("harness."):   # the local runner's options (runner.HARNESS_OPTIONS)
            harness_opts[k[len("harness."):]] = v
        else:
            sys_opts[k] = v
    if availability is not None:
        wl_opts["availability"] = parse_availability(availability)
    if topology is not None:
        wl_opts["topology"] = topology
    if nemesis_interval is not None:
        harness_opts["nemesis_interval_s"] = float(nemesis_interval)
    if wl_opts:
        try:
            make_workload(workload, wl_opts)
        except ValueError as e:
            raise UserError(f"--opt: {e}") from None
    if system and sys_opts:
        # Either spelling (election-timeout-ms, election_timeout_ms); the core's key is kept.
        from ..systems.registry import option_key, option_label
        unknown = [k for k in sys_opts if option_key(cls.OPTIONS, k) is None]
        if unknown:
            raise UserError(f"--opt {unknown[0]}: {system} has no such option "
                            f"(known: {', '.join(map(option_label, cls.OPTIONS)) or 'none'}; "
                            f"`splitbrain systems {system}` explains them)")
        sys_opts = {option_key(cls.OPTIONS, k): v for k, v in sys_opts.items()}
    if schedule is not None and backend != "sim":
        raise UserError("--schedule is for --backend sim")
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "big") % 1_000_000_000
    test_name = name or f"{system or program_label(bin_path, bin_args)}-{workload}"
    if bin_path and backend != "sim":
        from ..harness.backends.local import resolve_program
        try:
            resolve_program(bin_path)
        except ValueError as e:
            raise UserError(f"--bin {e}") from None
    assert workload in WORKLOADS or workload == "g-counter"
    return {"name": test_name, "backend": backend, "system": system, "bin": bin_path,
            "workload": workload, "nemesis": nem, "time_limit": time_limit, "nodes": nodes,
            "concurrency": concurrency, "rate": rate, "seed": seed, "bugs": list(bugs),
            "opts": sys_opts, "workload_opts": wl_opts, "sim_opts": sim_opts,
            "harness_opts": harness_opts, "schedule": schedule, "store": store,
            "bin_args": list(bin_args), "latency": latency, "log_stderr": bool(log_stderr)}


def run(test: dict):
    """Dispatch to the backend; returns a RunSummary with `replay` filled in."""
    if test["backend"] == "sim":
        from ..harness.sim import SIM_DEFAULTS, run_sim_test
        # Record the values the simulator uses, so that the replay command pins them.
        for k, v in SIM_DEFAULTS.items():
            if test.get(k) is None:
                test[k] = v
        try:
            summary = run_sim_test(test)
        except ValueError as e:
            raise UserError(str(e)) from None
    else:
        try:
            from ..harness.runner import run_test  # issue 6's runner (local and later backends)
        except ImportError as e:
            raise UserError(f"--backend {test['backend']} is not available ({e})") from None
        summary = run_test(test)
    summary.replay = replay_command(summary.test if summary.test else test)
    return summary


COUNTEREXAMPLES_SHOWN_MAX = 20   # counterexample paths printed by the summary


def counterexample_files(results: dict) -> list[str]:
    """The files the checkers wrote (`files` of the composed result and of every child, e.g.
    linearizability/<key>.html per invalid key), each once, in order."""
    out: list[str] = []
    stack = [results]
    while stack:
        r = stack.pop(0)
        if not isinstance(r, dict):
            continue
        out.extend(str(f) for f in r.get("files") or [] if str(f) not in out)
        stack.extend((r.get("children") or {}).values())
    return out


def print_summary(summary) -> None:
    """Verdict, anomalies by checker and name (with where the first one happened: its
    operation, the node that served it, the faults in force, report/context.py; and a link into
    the message diagram at that operation when the run has one), the counterexample files the
    checkers wrote, store path, replay command (everything from
    the history or the nodes is escaped: splitbrain/termsafe.py)."""
    from ..harness.report.context import where_line
    from ..harness.report.messages import diagram_link
    from ..termsafe import echo

    for line in summary.notes:
        echo(line)
    verdict = {True: "VALID", False: "INVALID"}.get(summary.valid, "UNKNOWN")
    incomplete = getattr(summary, "incomplete", None)
    echo(f"{summary.history_ops} history events; verdict: {verdict}"
         + (f", {incomplete}" if incomplete else ""))
    children = summary.results.get("children") or {}
    for cname, child in children.items():
        names: dict[str, list[dict]] = {}
        for a in child.get("anomalies") or []:
            names.setdefault(a["name"], []).append(a)
        status = ({True: "valid", False: "INVALID"}.get(child.get("valid"), "unknown")   # and
                  + "".join(f"\n    {h}" for h in [(child.get("stats") or {}).get("headline")]
                            if h))                             # the checker's key figures
        extra = f" ({child['error']})" if child.get("error") else ""
        echo(f"  {cname}: {status}{extra}")
        for aname, items in names.items():
            echo(f"    {aname} x{len(items)}: {items[0]['message']}")
            where = where_line((items[0].get("details") or {}).get("where"))
            if where:
                echo(f"      where: {where}")
            link = diagram_link(summary.run_dir, items[0].get("ops"))
            if link:
                echo(f"      messages: {link}")
    files = counterexample_files(summary.results)
    if files:
        echo(f"counterexamples ({len(files)} file{'s' if len(files) != 1 else ''}):")
        for path in files[:COUNTEREXAMPLES_SHOWN_MAX]:
            echo(f"  {path}")
        if len(files) > COUNTEREXAMPLES_SHOWN_MAX:
            echo(f"  ... {len(files) - COUNTEREXAMPLES_SHOWN_MAX} more (results.json lists "
                 f"them all)")
    if summary.run_dir:
        echo(f"store: {summary.run_dir}")
    echo(f"replay: {summary.replay}")


def _check_typos(ctx) -> None:
    """Trailing arguments are the node program's (Maelstrom's `--bin PROGRAM ARGS`), so click
    lets unknown options through. None of them may look like an option: an option of ours
    misspelt, or one of Maelstrom's that splitbrain does not take, would otherwise be handed to
    the node silently and the run checked as if it had not been given. A node program that
    takes options gets them in the quoted form: `--bin "python3 node.py --port 5"`."""
    import difflib
    ours = [o for p in ctx.command.params for o in p.opts if o.startswith("--")]
    for a in ctx.args:
        if not a.startswith("-") or a == "-":
            continue
        close = difflib.get_close_matches(a.split("=")[0], ours, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserError(f"no such option {a!r}{hint}; a node program's own options go inside "
                        f"the quoted --bin: --bin \"PROGRAM ARGS...\"")


@click.command("test", context_settings={"ignore_unknown_options": True,
                                         "allow_extra_args": True})
@click.option("--system", help="An in-house system (splitbrain systems).")
@click.option("--bin", "bin_path", help="A Maelstrom node program to test (local, netns or docker "
              "backend): a path or a name on PATH; its arguments follow the options "
              "(`--bin python3 node.py`) or come quoted (`--bin \"python3 node.py\"`).")
@click.option("-w", "--workload", help=f"The workload (splitbrain workloads); default {DEFAULT_WORKLOAD}.")
@click.option("--nemesis", multiple=True, help="Faults, comma-separated or repeated (default "
              "none): " + ", ".join(NEMESES) + "; or all, none. sim: " + ", ".join(SIM_NEMESES)
              + ". `splitbrain nemeses` says what each does.")
@click.option("--time-limit", type=float, help="Seconds of the faulty phase (virtual in sim); "
              "default 30 (sim: 10).")
@click.option("--nodes", "--node-count", "nodes", type=int, help="Cluster size (default 5).")
@click.option("--concurrency", help="Client workers (default 10), or Kn: K times the node count "
              "(Maelstrom's 2n).")
@click.option("--rate", type=float, help="Client ops per second, all workers together; default "
              "200 (sim: 500).")
@click.option("--seed", type=int, help="The seed (random when not given; always printed).")
@click.option("--bug", "bugs", multiple=True, help="Switch a bug on (repeatable).")
@click.option("--opt", "opts", multiple=True, help="k=v: a system option; workload.k=v, sim.k=v, "
              "harness.k=v.")
@click.option("--db", help="A real database (splitbrain dbs): etcd, zookeeper.")
@click.option("--backend", help="local (processes + router; default), sim (simulated), netns "
              "(namespaces, root; default for --db), docker, ssh (remote hosts: --hosts).")
@click.option("--hosts", "hosts_file", help="ssh backend: the hosts file (TOML: [hosts.n1] "
              "address = ..., see the README).")
@click.option("--host", "host_args", multiple=True, help="ssh backend: NODE=[USER@]ADDRESS[:PORT] "
              "(repeat for each node; keys from the agent or ~/.ssh, ~/.ssh/known_hosts).")
@click.option("--store", default="store", show_default=True, help="The store root directory.")
@click.option("--name", help="Test name in the store (default SYSTEM-WORKLOAD).")
@click.option("--schedule", help="sim: an explicit fault schedule, JSON or @FILE (replays a "
              "shrunk schedule).")
@click.option("--nemesis-interval", type=float, help="Seconds between faults (Maelstrom's; = "
              "--opt harness.nemesis_interval_s).")
@click.option("--latency", type=float, help="Network latency in ms added to every message "
              "between servers (Maelstrom's --latency).")
@click.option("--availability", help="Workload availability requirement: total or a fraction "
              "(Maelstrom's).")
@click.option("--topology", help="broadcast: the topology sent to nodes (grid, line, tree2, tree3, "
              "tree4, total).")
@click.option("--log-stderr", is_flag=True, help="Copy the nodes' stderr to the terminal.")
@click.option("--consistency-models", help="txn workloads: the models the history must satisfy, "
              "comma-separated (Maelstrom's; default strict-serializable).")
@click.option("--key-count", type=int, help="Keys in use at a time (Maelstrom's; = --opt "
              "workload.key_count).")
@click.option("--max-txn-length", type=int, help="txn workloads: micro-ops per transaction, at "
              "most (Maelstrom's).")
@click.option("--max-writes-per-key", type=int, help="txn workloads: writes a key receives "
              "before a fresh key replaces it (Maelstrom's).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write JUnit XML (one test case: the anomalies and replay command).")
@click.option("--expect", type=click.Choice(["valid", "invalid"]), help="The expected verdict: "
              "exit 0 when the run's verdict is this one (--expect invalid: a known-bad target "
              "whose bug must be caught), else 1 (3 when undecided).")
@click.pass_context
def command(ctx, system, bin_path, workload, nemesis, time_limit, nodes, concurrency, rate, seed,
            bugs, opts, db, backend, store, name, schedule, nemesis_interval, latency,
            availability, topology, log_stderr, consistency_models, key_count, max_txn_length,
            max_writes_per_key, as_json, hosts_file=None, host_args=(), junit_path=None,
            expect=None) -> int:
    """Run a test: drive clients and faults at a cluster, record and check the history.

    Maelstrom's command lines work as written, with `splitbrain test` in place of
    `maelstrom test`: -w, --bin PROGRAM ARGS..., --node-count, --time-limit, --rate,
    --concurrency 2n, --nemesis, --nemesis-interval, --latency, --availability, --topology,
    --log-stderr.
    """
    _check_typos(ctx)
    bin_path, bin_args = parse_bin(bin_path, ctx.args)
    # Maelstrom's workload options are our workload options under their own names.
    maelstrom_opts = {"consistency_models": consistency_models, "key_count": key_count,
                      "max_txn_length": max_txn_length, "max_writes_per_key": max_writes_per_key}
    opts = (*opts, *(f"workload.{k}={v}" for k, v in maelstrom_opts.items() if v is not None))
    ssh_hosts = parse_ssh_hosts(backend, hosts_file, host_args, nodes)
    if ssh_hosts is not None:
        nodes = len(ssh_hosts)
    test = build_test(system=system, bin_path=bin_path, workload=workload, nemesis=nemesis,
                      time_limit=time_limit, nodes=nodes, concurrency=concurrency, rate=rate,
                      seed=seed, bugs=bugs, opts=opts, backend=backend, store=store, name=name,
                      schedule=parse_schedule(schedule), bin_args=bin_args, latency=latency,
                      availability=availability, topology=topology,
                      nemesis_interval=nemesis_interval, log_stderr=log_stderr, db=db)
    if ssh_hosts is not None:
        test["ssh_hosts"] = {n: h.to_json() for n, h in ssh_hosts.items()}
        if hosts_file:
            test["ssh_hosts_file"] = os.path.abspath(hosts_file)
    import time as _time
    t0 = _time.perf_counter()
    summary = run(test)
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2, default=str))
    else:
        print_summary(summary)
    if junit_path:
        write_junit(junit_path, summary, expect, _time.perf_counter() - t0)
    return expected_exit(summary.valid, expect)


# ---- the CI gate (issue 18): --junit, --expect ------------------------------------------------

def expected_exit(valid, expect: str | None) -> int:
    """The exit code against an expectation: 0 when the verdict is the expected one; 1 when it
    is the other (an anomaly where none was expected, or a known bug not caught); 3 when it is
    undecided. Without --expect, the verdict's own exit code."""
    if expect is None:
        return exitcodes.for_validity(valid)
    if valid not in (True, False):
        return exitcodes.UNKNOWN
    return exitcodes.VALID if valid == (expect == "valid") else exitcodes.INVALID


def write_junit(path: str, summary, expect: str | None, time_s: float) -> None:
    """--junit FILE: one test case for the run (splitbrain/campaign/junit.py)."""
    from ..campaign import junit
    t = summary.test or {}
    target = t.get("system") or t.get("db") or (program_label(t["bin"], t.get("bin_args") or ())
                                                 if t.get("bin") else "test")
    cls = ".".join(x for x in ("splitbrain", str(target), str(t.get("workload") or ""),
                               ",".join(t.get("bugs") or [])) if x)
    case = junit.run_case(name=f"seed {t.get('seed')}", classname=cls,
                          verdict=junit.verdict_of(summary.valid), expect=expect or "valid",
                          results=summary.results, replay=summary.replay, time_s=time_s,
                          run_dir=summary.run_dir)
    try:
        junit.write(path, [junit.Suite(f"splitbrain test {t.get('name') or target}", [case])])
    except OSError as e:
        raise UserError(f"--junit {path}: cannot write: {e.strerror or e}") from None
