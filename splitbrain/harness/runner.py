"""The runner: one real test from start to verdict (`splitbrain test --backend local`).

    summary = run_test(test)       # test: the plain dict built by commands/test.py

Phases (Jepsen's, then TigerBeetle's liveness phase):
  1. set up: the store's run directory, the backend (node processes + router), the init handshake;
  2. the safety phase: `concurrency` client workers run the workload's generator (rate-limited,
     time-limited) while the nemesis thread runs its fault schedule; every op is recorded as it
     happens (history.jsonl is appended and flushed op by op, so a crash leaves a usable prefix);
  3. heal: every fault still in force is ended (and recorded); then the cluster must recover:
     in-house nodes are polled for status until every node answers with the same applied index
     and state digest (the `recovery` result: invalid with `no-convergence` when that does not
     happen within RECOVERY_TIMEOUT_S); a third-party (--bin) node is never probed: it gets
     `recovery_s` of quiet;
  4. the final phase (bounded: `_final_phase`): the workload's final reads, each retried on the
     next node, all within `final_deadline_s`;
  then the `nodes` result for every kind of node: a node that exited by itself is `node-crashed`
  (INVALID), and so is a run that ends with every node down (node_crash_result);
  5. teardown in `finally` — no node process outlives the run, even on Ctrl-C or an exception;
  6. the workload's checkers, results.json (with `net`: Maelstrom's network statistics from
     the message log, messages.jsonl, msglog.py), the reports (timeline, plots) and test.json
     with the outcome.

Bookkeeping for runs that are cut short (analyze.py reads it): test.json's `phase` is rewritten
at each step (setup, safety, heal, final, check, done); a run stopped by Ctrl-C or SIGTERM
records `"interrupted": true` and `interrupted_at` (the phase) and Ctrl-C prints where its files
are; the run marker `running.json` (ownership.py) is written at the start and removed at the
end, so a run directory that keeps it after its harness died (SIGKILL) was cut short too. Node
processes are recorded in `pids.jsonl` for `splitbrain cleanup`. A file of the run that cannot
be written (a full disk) stops the run: exit 4 naming the file and what was kept.

Defaults (recorded in test.json): LOCAL_DEFAULTS; the nemesis interval is a sixth of the time limit
(at most 5 s), the client timeout 1 s. `--opt harness.NAME=VALUE` (test["harness_opts"]) sets
HARNESS_OPTIONS.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import click

from ..checkers.result import Anomaly, Result
from ..exitcodes import HARNESS_ERROR
from .client import ClientPool
from .generators import GenOp, Fn, rate as rate_gen, time_limit as time_limit_gen
from .nemesis import (CRASH_POINT_BEFORE_P, CRASH_POINT_P, FAULTS, CrashPointSettings, Nemesis,
                      overlapping_schedules, parse_faults, schedule)
from ..history.op import NEMESIS
from .msglog import MESSAGE_LOG_MAX, MessageLog
from .store import RunStore, RunSummary
from .workloads import check_history, make_workload

LOCAL_DEFAULTS = {"time_limit": 30.0, "rate": 200.0, "nodes": 5, "concurrency": 10}
CLIENT_TIMEOUT_S = 1.0
NEMESIS_INTERVAL_MAX_S = 5.0
RECOVERY_S = 2.0                 # quiet time after the heal before the final phase
RECOVERY_TIMEOUT_S = 20.0        # in-house: wait at most this long for equal applied indexes
FINAL_TIMEOUT_S = 5.0            # client timeout of the final reads
FINAL_DEADLINE_S = 10.0          # the whole final phase ends this long after it starts
SETUP_TIMEOUT_S = 5.0            # wait for the workload's setup replies (broadcast's topology)
HARNESS_OPTIONS = {
    "nemesis_interval_s": "seconds between faults and how long each lasts (default time limit / 6, "
                          "at most 5)",
    "client_timeout_s": f"client request timeout (default {CLIENT_TIMEOUT_S})",
    "recovery_s": f"quiet seconds after the heal before the final phase (default {RECOVERY_S})",
    "reports": "write timeline.html, the plots and messages.html (default true)",
    "nemesis_overlap": "one fault schedule per fault family, overlapping (default false: one "
                       "fault at a time)",
    "crash_point_types": "message types the crash-point nemesis crashes a sender at, comma-"
                         "separated (default: the system's CRASH_POINTS; every type for --bin)",
    "crash_point_p": "chance that a crash-point message is its sender's last (default 0.2)",
    "crash_point_down_ms": "how long a node crashed at a crash point stays down before its "
                           "restart: MS or LO-HI (default 10-50)",
    "crash_point_before_p": "share of crash-point crashes in which the message is dropped (the "
                            "node crashed before sending it; default 0.5)",
    "crash_point_down_max": "most nodes down for crash points at once (default a minority)",
    "partition_shapes": "shapes the partition nemesis draws from, comma-separated (default all: "
                        "halves, random-halves, one, bridge, majorities-ring, leader, "
                        "bridge-leader)",
    "docker_memory": "docker backend: each container's memory limit (default 512m)",
    "docker_pids_max": "docker backend: each container's process/thread limit (default 256)",
    "message_log_max": "most lines in messages.jsonl (default 2000000; past it one truncation "
                       "line, the counts go on)",
    "checker_workers": "processes the linearizability checker may use across keys (default: "
                       "every core; also read by the sim backend)",
    "final_deadline_s": f"the final phase's overall deadline in seconds (default "
                        f"{FINAL_DEADLINE_S:g})",
}
FINAL_ATTEMPTS_MAX = 20          # re-invocations of a final read through the protocol that failed


class ClusterError(click.ClickException):
    """The cluster could not be started or driven (a node that dies at start, ...): exit 4."""

    exit_code = HARNESS_ERROR


class HarnessInterrupted(KeyboardInterrupt):
    """SIGTERM during a run: handled like Ctrl-C (teardown, then exit 130)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run after its teardown; `message` says where its files are
    (cli.main prints it; exit 130)."""

    def __init__(self, message: str, run_dir: str | None = None):
        super().__init__(message)
        self.message = message
        self.run_dir = run_dir


PHASES = ("setup", "safety", "heal", "final", "check", "done")


def workload_machine(workload) -> str | None:
    """The state machine an in-house system runs for this workload (lin-kv: the kv machine)."""
    if workload.machine is not None:
        return workload.machine
    return "kv" if workload.name == "lin-kv" else None


def _system_class(system: str | None):
    """The in-house system's Core class, None for a --bin node or a `module:Class` core the
    harness cannot import (its node processes may have another PYTHONPATH)."""
    if not system:
        return None
    from ..cli import UserError
    from ..systems.node import load_system
    try:
        return load_system(system)
    except ValueError as e:
        raise UserError(f"--system: {e}") from None
    except (ImportError, AttributeError):
        return None


def _crash_point_types(spec, cls) -> dict[str, float | None]:
    """The crash-point nemesis's message types, each with its own chance or None (the default
    chance): `harness.crash_point_types` (a comma-separated string or a list of TYPE, TYPE.FIELD
    or TYPE@P; "all" for every type), else the system's CRASH_POINTS (every type when there is
    no class: a --bin node, whose messages we do not know)."""
    from ..cli import UserError
    if spec is None:
        return dict.fromkeys(getattr(cls, "CRASH_POINTS", {}))
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: dict[str, float | None] = {}
    for item in (str(t).strip() for t in items):
        if not item:
            continue
        name, at, chance = item.partition("@")
        try:
            p = float(chance) if at else None
        except ValueError:
            p = -1.0
        if not name or (p is not None and not 0.0 < p <= 1.0):
            raise UserError(f"--opt harness.crash_point_types: {item!r} is not TYPE or TYPE@P "
                            f"with 0 < P <= 1")
        out[name] = p
    if not out:
        raise UserError("--opt harness.crash_point_types: give message types, or 'all'")
    return {} if set(out) == {"all"} else out


def _crash_point_settings(hopts: dict, system: str | None, n_nodes: int) -> CrashPointSettings:
    """The crash-point fault's settings from the harness options (UserError naming a bad one)."""
    from ..cli import UserError
    try:
        p = float(hopts.get("crash_point_p", CRASH_POINT_P))
        before_p = float(hopts.get("crash_point_before_p", CRASH_POINT_BEFORE_P))
        down_max = hopts.get("crash_point_down_max")
        down_max = int(down_max) if down_max is not None else None
        lo, _, hi = str(hopts.get("crash_point_down_ms", "10-50")).partition("-")
        down_ms = (int(lo), int(hi or lo))
    except (TypeError, ValueError) as e:
        raise UserError(f"--opt harness.*: {e}") from None
    for ok, what in ((0.0 < p <= 1.0, f"crash_point_p={p}: must be in (0, 1]"),
                     (0.0 <= before_p <= 1.0, f"crash_point_before_p={before_p}: need 0 <= P <= 1"),
                     (down_max is None or 1 <= down_max <= n_nodes,
                      f"crash_point_down_max={down_max}: need 1 to {n_nodes}"),
                     (0 <= down_ms[0] <= down_ms[1],
                      f"crash_point_down_ms={lo}-{hi}: need 0 <= LO <= HI")):
        if not ok:
            raise UserError(f"--opt harness.{what}")
    cls = _system_class(system)
    return CrashPointSettings(types=_crash_point_types(hopts.get("crash_point_types"), cls),
                              p=p, before_p=before_p, down_ms=down_ms, down_max=down_max,
                              names=getattr(cls, "crash_point_names", None))


def _partition_shapes(spec) -> tuple[str, ...]:
    """`harness.partition_shapes` (comma-separated or a list), else every shape."""
    from ..cli import UserError
    from .grudges import SHAPES
    if spec is None:
        return SHAPES
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    shapes = tuple(str(s).strip() for s in items if str(s).strip())
    bad = [s for s in shapes if s not in SHAPES] or ([] if shapes else [""])
    if bad:
        raise UserError(f"--opt harness.partition_shapes: unknown shape {bad[0]!r} (choose from "
                        f"{', '.join(SHAPES)})")
    return shapes


def _gen_for(workload, test: dict):
    def next_op(rng):
        inv = workload.next_invocation(rng)
        return GenOp(inv.f, inv.value, inv.key)
    gen = Fn(next_op, seed=int(test["seed"]))
    gen = rate_gen(float(test["rate"]), gen, seed=int(test["seed"]) + 1)
    return time_limit_gen(float(test["time_limit"]), gen)


def node_crash_result(backend, all_down: bool) -> Result:
    """The `nodes` check, for in-house and --bin nodes alike: a node process that exited by
    itself (not killed by the nemesis or a crash point; e.g. a protocol invariant failed, or a
    Maelstrom library met a message type it has no handler for) is a `node-crashed` anomaly
    with its exit code and the last lines of its log, and makes the run INVALID. Only the
    nemesis restarts nodes. `all_down`: no node process was running when the run ended (also
    INVALID node-crashed: no run ends VALID with every node down)."""
    anomalies = [Anomaly("node-crashed", f"{c['node']} exited by itself (code {c['code']}): "
                         f"{c['last_log']}", details=dict(c))
                 for c in getattr(backend, "crashes", [])]
    if all_down:
        anomalies.append(Anomaly("node-crashed", "every node was down at the end of the run",
                                 details={"nodes": list(backend.nodes)}))
    return Result(valid=not anomalies, checker="nodes", anomalies=anomalies,
                  stats={"crashes": len(anomalies)})


def _running_nodes(backend) -> int | None:
    """How many node processes run now (None when the backend cannot tell)."""
    alive = getattr(backend, "alive", None)
    if alive is None:
        return None
    try:
        return len(alive())
    except Exception:  # noqa: BLE001 - a check that cannot run says nothing
        return None


def _wait_recovery(backend, log: Callable[[str], None], timeout_s: float) -> Result:
    """Liveness after the heal: poll every node's status until all answer with one applied_index
    and one state digest, twice in a row. Not within `timeout_s`: invalid, `no-convergence`
    (the simulator's liveness rule). (Nodes that crashed by themselves: node_crash_result.)"""
    anomalies: list[Anomaly] = []
    deadline = time.monotonic() + timeout_s
    last: Any = None
    seen: dict = {}
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        seen = {n: backend.status(n, 1.0) for n in backend.nodes}
        states = {n: None if s is None else (s.get("applied_index"), s.get("state_digest"))
                  for n, s in seen.items()}
        if all(v is not None for v in states.values()) and len(set(states.values())) == 1:
            if states == last:
                index = next(iter(states.values()))[0]
                log(f"recovered: every node at applied index {index}")
                return Result(valid=not anomalies, checker="recovery", anomalies=anomalies,
                              stats={"applied_index": index,
                                     "converged_after_s": round(time.monotonic() - t0, 2)})
            last = states
        else:
            last = None
        time.sleep(0.25)
    msg = (f"after the cluster healed, the nodes did not reach the same applied_index and state "
           f"digest within {timeout_s:.0f} s: applied indexes "
           f"{({n: (s or {}).get('applied_index') for n, s in seen.items()})}")
    log(msg)
    anomalies.append(Anomaly("no-convergence", msg, details={"nodes": seen}))
    return Result(valid=False, checker="recovery", anomalies=anomalies)


def run_test(test: dict, *, log: Callable[[str], None] | None = None,
             progress: bool | None = None) -> RunSummary:
    """Run one test on a real-process backend; see the module docstring.

    Raises UserError (exit 2) for options this backend cannot honour, ClusterError (exit 4) when
    the cluster cannot be started or faulted, KeyboardInterrupt on Ctrl-C or SIGTERM (after the
    teardown). Returns the RunSummary; `replay` is filled in by the command."""
    from ..cli import UserError
    test = dict(test)
    for k, v in LOCAL_DEFAULTS.items():
        if test.get(k) is None:
            test[k] = v
    backend_name = test.get("backend") or "local"
    from .backends.factory import REAL_BACKENDS, make_backend
    if backend_name not in REAL_BACKENDS:
        raise UserError(f"--backend {backend_name}: this runner drives {', '.join(REAL_BACKENDS)}")
    try:
        if test.get("db"):     # a real database (splitbrain/dbs): its own reply decoding
            from ..dbs.workloads import make_db_workload
            workload = make_db_workload(test["db"], test["workload"], test.get("workload_opts"))
        else:
            workload = make_workload(test["workload"], test.get("workload_opts") or {})
        faults = parse_faults(test.get("nemesis") or [])
    except ValueError as e:
        raise UserError(str(e)) from None
    in_house = bool(test.get("system"))
    if in_house and workload_machine(workload) is None:
        raise UserError(f"--workload {workload.name} is for third-party Maelstrom nodes (--bin)")
    for f in faults:
        if FAULTS[f][2] in ("clock", "lose-unsynced") and not in_house:
            raise UserError(f"--nemesis {f} needs an in-house system (the runtime's clock and "
                            f"records file); a --bin node cannot honour it")
    if test.get("bin"):
        from .backends.local import resolve_program
        try:
            resolve_program(test["bin"])
        except ValueError as e:
            raise UserError(f"--bin {e}") from None
    n_nodes = int(test["nodes"])
    nodes = [f"n{i}" for i in range(1, n_nodes + 1)]
    seed = int(test["seed"])
    test["node_ids"] = nodes
    test["nemesis"] = faults
    hopts = dict(test.get("harness_opts") or {})
    unknown = set(hopts) - set(HARNESS_OPTIONS)
    if unknown:
        raise UserError(f"--opt harness.{sorted(unknown)[0]}: no such harness option (known: "
                        f"{', '.join(HARNESS_OPTIONS)})")
    try:
        interval_s = float(hopts.get("nemesis_interval_s") or
                           min(NEMESIS_INTERVAL_MAX_S, max(0.5, float(test["time_limit"]) / 6)))
        client_timeout_s = float(hopts.get("client_timeout_s") or CLIENT_TIMEOUT_S)
        # An eventually consistent workload asks for Maelstrom's longer quiet period.
        recovery_s = float(hopts.get("recovery_s", test.get("recovery_s",
                                                            workload.recovery_s or RECOVERY_S)))
        overlap = hopts.get("nemesis_overlap", False) in (True, "true", 1)
        docker_limits = {"memory": hopts.get("docker_memory"),
                         "pids_max": (int(hopts["docker_pids_max"])
                                      if hopts.get("docker_pids_max") is not None else None)}
        message_log_max = int(hopts.get("message_log_max", MESSAGE_LOG_MAX))
        final_deadline_s = float(hopts.get("final_deadline_s", FINAL_DEADLINE_S))
        latency_ms = float(test.get("latency") or 0.0)
        with_checker_workers(test)  # validates --opt harness.checker_workers before the run
    except (TypeError, ValueError) as e:
        raise UserError(f"--opt harness.*: {e}") from None
    import re
    if docker_limits["memory"] is not None and not re.fullmatch(r"[1-9][0-9]*[bkmgBKMG]?",
                                                                str(docker_limits["memory"])):
        raise UserError(f"--opt harness.docker_memory={docker_limits['memory']}: give a size "
                        f"like 512m or 1g")
    if docker_limits["pids_max"] is not None and docker_limits["pids_max"] < 1:
        raise UserError(f"--opt harness.docker_pids_max={docker_limits['pids_max']}: need >= 1")
    crash_points = (_crash_point_settings(hopts, test.get("system"), n_nodes)
                    if "crash-point" in faults else None)
    partition_shapes = _partition_shapes(hopts.get("partition_shapes"))
    test["local"] = {"nemesis_interval_s": interval_s, "client_timeout_s": client_timeout_s,
                     "recovery_s": recovery_s, "nemesis_overlap": overlap}
    if hopts.get("partition_shapes") is not None:
        test["local"]["partition_shapes"] = list(partition_shapes)
    if crash_points is not None:
        test["local"].update(crash_points.to_json())

    tmp = None
    if test.get("store"):
        store = RunStore.create(test["store"], test.get("name") or
                                f"{test.get('system') or _program_label(test)}-{workload.name}")
        run_dir = store.run_dir
    else:
        store = None
        tmp = tempfile.TemporaryDirectory(prefix="splitbrain-")
        run_dir = Path(tmp.name)
    test["out_dir"] = str(run_dir)
    say = log or (lambda m: None)
    from .ownership import RUN_MARKER, RunRegistration
    from .store import StoreWriteError
    try:
        registration = RunRegistration(run_dir)
    except OSError as e:
        if store is not None:
            store.finish()
        if tmp is not None:
            tmp.cleanup()
        raise StoreWriteError(run_dir / RUN_MARKER, e, "the run did not start") from None
    stop_run = threading.Event()      # set when a file of the run cannot be written
    if store is not None:
        store.on_write_error = lambda e: stop_run.set()

    def enter(phase: str) -> None:
        """Record the phase reached in test.json (what analyze reports for a cut-short run)."""
        test["phase"] = phase
        if store is not None:
            store.write_test(test)

    def check_writes() -> None:
        if store is not None and store.write_error is not None:
            raise store.write_error_final()

    def note(m: str) -> None:
        if store is not None:
            store.log(m)
        say(m)

    try:
        enter("setup")
    except BaseException:
        registration.close()
        if store is not None:
            store.finish()
        raise
    try:
        if test.get("db"):
            from ..dbs.cluster import make_db_backend
            backend = make_db_backend(backend_name, test["db"], nodes, run_dir,
                                      options=test.get("opts") or {}, workload=workload.name,
                                      logger=note, hosts=test.get("ssh_hosts"))
            backend.client_timeout_s = client_timeout_s
        else:
            backend = make_backend(backend_name, nodes, run_dir, system=test.get("system"),
                                   machine=workload_machine(workload), bin_path=test.get("bin"),
                                   bugs=test.get("bugs") or (), options=test.get("opts") or {},
                                   seed=seed, logger=note, bin_args=test.get("bin_args") or (),
                                   log_stderr=bool(test.get("log_stderr")),
                                   latency_ms=latency_ms, limits=docker_limits,
                                   hosts=test.get("ssh_hosts"))
    except RuntimeError as e:
        registration.close()
        if store is not None:
            store.finish()
        if tmp is not None:
            tmp.cleanup()
        raise UserError(f"--backend {backend_name}: {e}") from None
    missing = [f for f in faults if not backend.supports(FAULTS[f][2])]
    if missing:
        registration.close()
        if store is not None:
            store.finish()
        if tmp is not None:
            tmp.cleanup()
        raise UserError(f"--nemesis {missing[0]}: the {backend_name} backend cannot do it "
                        f"({FAULTS[missing[0]][2]})")
    recorder = store.recorder() if store is not None else None
    if recorder is None:
        from .store import Recorder
        recorder = Recorder(None)
    if test.get("log_stderr") and backend_name != "local":
        note(f"--log-stderr: the {backend_name} backend writes the nodes' stderr to "
             f"nodes/<node>/node.log only")
    msglog = MessageLog(run_dir / "messages.jsonl" if store is not None else None,
                        max_lines=message_log_max)
    if store is not None:
        msglog.on_write_error = lambda e: store.write_failed(msglog.path, e)
    if hasattr(backend, "attach_message_log"):
        backend.attach_message_log(msglog)
    if hasattr(backend, "on_fatal"):      # ssh: a lost session stops the run (exit 4)
        backend.on_fatal = stop_run.set
    prog = _progress(test, progress)
    on_op = prog.record if prog is not None else None
    nemesis = None
    recovery: Result | None = None
    old_term = None
    if threading.current_thread() is threading.main_thread():
        def on_term(signum, frame):
            raise HarnessInterrupted()
        old_term = signal.signal(signal.SIGTERM, on_term)
    t0 = time.monotonic_ns()
    finished = False
    interrupted: str | None = None
    all_down = False
    prog_entered = False
    try:
        note(f"seed {seed}: {n_nodes} nodes, {test['concurrency']} workers, rate "
             f"{test['rate']}/s, {test['time_limit']} s, nemesis {','.join(faults) or 'none'} "
             f"every {interval_s:.1f} s")
        try:
            backend.start()
        except RuntimeError as e:
            raise ClusterError(f"the cluster did not start: {e}") from None
        note(f"cluster up: {', '.join(nodes)}")
        t0 = time.monotonic_ns()
        backend.loop.call(lambda: msglog.set_t0(t0))
        pool = ClientPool(backend, workload, recorder, int(test["concurrency"]), t0_ns=t0,
                          timeout_s=client_timeout_s, on_op=on_op,
                          local_reads=in_house or bool(test.get("db")))
        setup = workload.setup_requests(nodes)
        if setup:
            problems = pool.setup(setup, SETUP_TIMEOUT_S)
            if problems:
                # Sorted: the replies arrive in any order, the message names the same nodes first.
                raise ClusterError(f"the workload's setup failed: {'; '.join(sorted(problems)[:5])}")
            note(f"setup: {len(setup)} {setup[0][1].get('type')} requests answered")
        nemesis = Nemesis(backend, recorder, seed=seed, t0_ns=t0, on_op=on_op, log=note,
                          crash_points=crash_points, partition_shapes=partition_shapes,
                          fault_log=store.log if store is not None else None)
        enter("safety")
        if prog is not None:
            prog.__enter__()
            prog_entered = True
        if faults and overlap:
            for sched in overlapping_schedules(faults, interval_s, seed):
                nemesis.start(time_limit_gen(float(test["time_limit"]), sched))
        elif faults:
            nemesis.start(time_limit_gen(float(test["time_limit"]), schedule(faults, interval_s, seed)))
        pool.run(_gen_for(workload, test), stop_run)
        check_writes()
        if getattr(backend, "fatal", None):
            raise ClusterError(backend.fatal)
        enter("heal")
        nemesis.stop()
        if nemesis.error is not None:
            raise ClusterError(f"the nemesis failed: {type(nemesis.error).__name__}: "
                               f"{nemesis.error}")
        nemesis.heal_all()
        note(f"healed; {pool.completed} ops completed")
        time.sleep(recovery_s)
        if in_house:
            recovery = _wait_recovery(backend, note, RECOVERY_TIMEOUT_S)
        check_writes()
        enter("final")
        _final_phase(pool, workload, nodes, recorder, final_deadline_s, on_op, note)
        note(f"final phase done; {len(recorder.ops)} history events"
             + _router_note(backend))
        running = _running_nodes(backend)
        all_down = running == 0
        if all_down:
            note("every node is down at the end of the run")
        check_writes()
        finished = True
    except KeyboardInterrupt as e:
        interrupted = "SIGTERM" if isinstance(e, HarnessInterrupted) else "SIGINT"
        raise
    finally:
        if prog_entered:
            try:
                prog.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - the progress line never masks teardown
                pass
        if nemesis is not None:
            nemesis.stop_event.set()
        backend.teardown()
        msglog.close()
        recorder.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if not finished and not interrupted and store is not None and \
                store.write_error is not None:
            # Stopped by a failed write: say what the files hold now that the history is closed.
            store.log(f"run aborted at phase {test.get('phase')}: {store.write_error}")
            store.finish()
            registration.close()
            raise store.write_error_final()
        if not finished:
            # Interrupted or failed: the history prefix and the node logs stay in the store,
            # and test.json says how far the run got (analyze reports it as incomplete).
            test["interrupted"] = True
            test["interrupted_at"] = test.get("phase")
            if interrupted:
                test["interrupted_by"] = interrupted
            if store is not None:
                store.log(f"run aborted at phase {test.get('phase')}; nodes torn down")
                if store.write_error is None:
                    try:
                        store.write_test(test)
                    except click.ClickException:
                        pass    # a full disk: the error that stopped the run is reported
                store.finish()
            registration.close()
            if tmp is not None:
                tmp.cleanup()
            if interrupted:
                where = (f"; the run so far is in {run_dir} (splitbrain analyze {run_dir})"
                         if store is not None else "")
                raise RunInterrupted(f"interrupted ({interrupted}) at phase "
                                     f"{test.get('phase')}{where}",
                                     str(run_dir) if store is not None else None)
    try:
        check_writes()
        enter("check")
        history = list(recorder.ops)
        extra = [recovery] if recovery else []
        extra.append(node_crash_result(backend, all_down))
        result = check_history(workload, history, with_checker_workers(test), extra=extra)
        op_count = sum(1 for o in history if o.type == "invoke" and o.process != NEMESIS)
        net = msglog.stats(op_count)
        net["unknown_dest"] = getattr(backend, "stats", {}).get("unknown_dest", 0)
        net["malformed"] = getattr(backend, "stats", {}).get("malformed", 0)
        results_json = result.to_json()
        results_json["net"] = net
        summary = RunSummary(valid=result.valid, results=result.to_json(), test=test, replay="",
                             run_dir=str(run_dir) if store else None, history_ops=len(history),
                             notes=[f"seed {seed}; nemesis {','.join(faults) or 'none'} every "
                                    f"{interval_s:.1f} s" + _router_note(backend)],
                             stats={"router": getattr(backend, "stats", {}), "net": net,
                                    "output": backend.output_stats()
                                    if hasattr(backend, "output_stats") else {}})
        summary.results = results_json
        summary.notes.append(_net_line(net))
        if store is not None:
            store.write_results(results_json)
            test["valid"] = result.valid
            test["stats"] = summary.stats
            if hopts.get("reports", True) not in (False, "false", 0):
                store.write_reports(history, test)
            test["phase"] = "done"
            test["interrupted"] = False
            store.write_test(test)
            check_writes()
    except KeyboardInterrupt:
        # Ctrl-C while checking: the history is whole; analyze re-checks it.
        test["interrupted"], test["interrupted_at"], test["interrupted_by"] = True, "check", "SIGINT"
        if store is not None and store.write_error is None:
            try:
                store.write_test(test)
            except click.ClickException:
                pass
        raise RunInterrupted("interrupted (SIGINT) while checking" + (
            f"; the whole history is in {run_dir} (splitbrain analyze {run_dir})"
            if store is not None else ""), str(run_dir) if store is not None else None) from None
    finally:
        registration.close()
        if store is not None:
            store.finish()
        if tmp is not None:
            tmp.cleanup()
    return summary


def _program_label(test: dict) -> str:
    from ..commands.test import program_label
    return program_label(test.get("bin") or "node", test.get("bin_args") or ())


def _net_line(net: dict) -> str:
    """Maelstrom's network statistics in one line for the summary."""
    def part(k: str) -> str:
        d = net[k]
        mpo = f", {d['msgs-per-op']:.2f} msgs/op" if "msgs-per-op" in d else ""
        return f"{k} {d['msg-count']} msgs ({d['recv-count']} delivered{mpo})"
    extra = ""
    if net.get("unknown_dest"):
        extra += f"; {net['unknown_dest']} to unknown destinations"
    if net.get("malformed"):
        extra += f"; {net['malformed']} malformed lines from nodes"
    return f"net: {part('all')}; {part('servers')}; {part('clients')}{extra}"


class _FinalOps:
    """The final phase's ops as a generator that remembers what it handed out (so that the
    ones the deadline left unstarted are recorded, never lost)."""

    def __init__(self, ops: list[GenOp]):
        self.ops = ops
        self.next = 0

    def op(self, ctx):
        if self.next >= len(self.ops):
            return None
        o = self.ops[self.next]
        self.next += 1
        return o, self

    def unstarted(self) -> list[GenOp]:
        return self.ops[self.next:]


def _final_phase(pool, workload, nodes: list[str], recorder, deadline_s: float, on_op,
                 note: Callable[[str], None]) -> None:
    """The final reads, bounded: each request waits at most FINAL_TIMEOUT_S, a failed unpinned
    read is retried on the next node, and the whole phase ends `deadline_s` after it starts.
    Reads still outstanding then end as `info` (timed out); reads never started are recorded
    as invoked and `fail`ed with error "final-deadline". Either way a checker that needs them
    sees them missing (unknown), never valid by omission."""
    gen = _FinalOps([GenOp(f.inv.f, f.inv.value, f.inv.key, node=f.node)
                     for f in workload.final_invocations(nodes)])
    if not gen.ops:
        return
    pool.timeout_s = FINAL_TIMEOUT_S
    pool.retries_max = FINAL_ATTEMPTS_MAX
    pool.deadline_ns = pool.now_ns() + int(deadline_s * 1e9)
    stop = threading.Event()
    timer = threading.Timer(deadline_s, stop.set)
    timer.daemon = True
    timer.start()
    try:
        pool.run(gen, stop_event=stop)
    finally:
        timer.cancel()
    left = gen.unstarted()
    if stop.is_set():
        note(f"final phase: deadline of {deadline_s:g} s reached; {len(left)} final op(s) never "
             f"started")
    process = pool.workers[0].process
    for o in left:
        t = pool.now_ns()
        op = recorder.invoke(process, o.f, o.value, time_ns=t, key=o.key, node=o.node)
        if on_op:
            on_op(op)
        op = recorder.complete(process, "fail", o.value, time_ns=t, error="final-deadline")
        if on_op:
            on_op(op)


def _router_note(backend) -> str:
    """"; router {...}" on a backend whose messages between nodes pass through the harness's
    router (local: its stats count delivered messages); "" on one without a router (netns,
    docker, databases: peers talk over a real network, where the count would be meaningless)."""
    stats = getattr(backend, "stats", None) or {}
    return f"; router {stats}" if "delivered" in stats else ""


def _progress(test: dict, enabled: bool | None):
    """The live progress line (splitbrain.harness.report.Progress) when that module exists."""
    try:
        from .report import Progress
    except ImportError:
        return None
    title = f"{test.get('system') or test.get('db') or _program_label(test)} {test['workload']}"
    return Progress(title, enabled=True if enabled is None else enabled)


def with_checker_workers(test: dict) -> dict:
    """`test` with --opt harness.checker_workers=N as the linearizability checker's `workers`
    (test["checker_options"], which check_history hands to the checkers)."""
    n = (test.get("harness_opts") or {}).get("checker_workers")
    if n is None:
        return test
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise ValueError(f"--opt harness.checker_workers={n}: give a number of processes"
                         ) from None
    if n < 1:
        raise ValueError(f"--opt harness.checker_workers={n}: need at least 1")
    opts = {k: dict(v) for k, v in (test.get("checker_options") or {}).items()}
    opts.setdefault("linearizable", {})["workers"] = n
    return dict(test, checker_options=opts)
