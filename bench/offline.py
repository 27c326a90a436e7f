"""Offline start: supervisord starts and every started partition runs.

Three ways to start the same 2N processes (N partitions of 2 sleepers):

- plugin: the programs are ``autostart=false`` (as slapgrid writes them);
  the listener, without a master URL, calls ``slapos.startAllPartitions()``
  as soon as supervisord starts it; the plugin spawns them in time slices;
- autostart: plain supervisord, the same programs with ``autostart=true``;
- startAllProcesses: plain supervisord, ``autostart=false``, and a client
  calling ``supervisor.startAllProcesses()`` as soon as supervisord answers;
- the floor: no supervisord; a small Python parent spawns the same
  scripts as supervisord would (stdin and stdout pipes, a log file per
  child, its own process group, the partition's directory, an
  environment), with ``subprocess.Popen`` (a vfork where it can).

A small node (3, 10 and 50 partitions, ``SMALL_SIZES``, whatever the
sizes asked): the plugin as it is (supervisord's first loop turn woken,
the offline start inside supervisord) against the plugin with
``instant_start = false`` (supervisor's own first poll, which sleeps up
to 1 s, and the listener's offline start: the plugin before issue 28),
the median of ``SMALL_RUNS`` runs of each, back to back.

The plugin's node runs ``supervisor-slapos-supervisord`` (its first
configuration read linear), the others plain supervisord. As root, the
same again with partitions owned by another user (``nobody``): their
programs switch users (``user=``), and so do the floor's children.

Every supervisord runs in the Python of the run's stack
(``SUPERVISOR_SLAPOS_STACK``, or ``python -m bench --stacks``), with the
stack's eggs first on ``sys.path``, as slapgrid runs it. The floor is the
machine's, the same for every stack: its parent runs in the bench's own
Python (3.12: a vfork, and ``close_range`` for the descriptors). In
Python 3.9, ``subprocess`` forks and each child closes the parent's
descriptors one by one: a parent holding three per child makes a floor of
2000 children quadratic (54 s in one loaded run, against 25 s for the
plugin), no floor at all.

Every supervisord starts with the limits cron gives its jobs (a soft
limit of 1024 open files, testbed.cron.cron_limits), as a node's boot
entry starts it: the plugin's rows with nothing more (the plugin raises
the limit itself), the plain supervisord rows (autostart,
startAllProcesses) with ``minfds = 8192`` in ``[supervisord]`` (without,
plain supervisord leaves every process past about 340 FATAL: "too many
open files to spawn"); the floor's parent with the bench's own soft limit
(its hard limit). The times to all running are medians of
``BENCH_OFFLINE_RUNS`` runs (default 3) of floor, plugin, autostart and
startAllProcesses back to back; the getState() waits and the rows of
another user's partitions are single runs.

"Time to all running" goes from the fork of supervisord to the fork of its
last partition process (read from /proc afterwards: nothing polls
supervisord for it; with ``startsecs=0`` a process is RUNNING from its
fork). In a second start of each kind, a thread calls
``supervisor.getState()`` every 20 ms and keeps the longest wait: how long
supervisord leaves its clients without an answer. The two are separate
runs because a polling client wakes supervisord's loop up, which changes
how fast a deferred RPC result (startAllPartitions) progresses.
"""

import json
import os
import pwd
import statistics
import subprocess
import sys
import threading
import time
import xmlrpc.client

from bench.common import (
    PROCESSES_PER_PARTITION,
    Outcome,
    Row,
    Target,
    find_row,
    raise_fd_limit,
    running_node,
    workdir,
)
from testbed import stacks
from testbed.polling import wait_until
from testbed.proc import children_of, kill_tree, process_start_time

NAME = 'offline'
PLUGIN, AUTOSTART, STARTALL = 'plugin', 'autostart', 'startAllProcesses'
FLOOR = 'floor'
TIME = 'time to all running'
FLOOR_TIME = 'time to all running, against the fork/exec floor'
LATENCY = 'longest getState() wait'
TIME_TARGET = 1.1
FLOOR_TARGET = 2.0
FLOOR_TARGET_OTHER_USER = 2.5
OTHER_USER = 'nobody'
LATENCY_TARGET_MS = 250
POLL_INTERVAL = 0.02
# the small node: sizes, runs of each variant, targets (ms) by size
SMALL_SIZES = (3, 10, 50)
SMALL_RUNS = 5
SMALL_TARGETS_MS = {10: 500, 50: 800}
RUNS = int(os.environ.get('BENCH_OFFLINE_RUNS', '3'))
# what the plain supervisord rows get to hold 2000 processes under cron's
# soft limit of 1024 open files
PLAIN_MINFDS = 8192
SMALL_TIME = 'time to all running, small node'
NOT_INSTANT = 'plugin, instant_start = false'


class LatencyProbe(threading.Thread):
    """Calls getState() every 20 ms; keeps the longest answer time."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node = node
        self.stop = threading.Event()
        self.answered = threading.Event()
        self.longest = 0.0
        self.calls = 0

    def run(self):
        rpc = None
        while not self.stop.is_set():
            if rpc is None:
                rpc = self.node.rpc
            start = time.perf_counter()
            try:
                rpc.supervisor.getState()
            except (OSError, xmlrpc.client.Error):
                rpc = None  # not listening yet, or a dropped connection
                time.sleep(POLL_INTERVAL)
                continue
            elapsed = time.perf_counter() - start
            self.calls += 1
            self.longest = max(self.longest, elapsed)
            self.answered.set()
            time.sleep(POLL_INTERVAL)


# Each child in a process group of its own, as supervisor's are:
# process_group= from Python 3.11; before, start_new_session (setsid: a
# new session and process group, one system call in the child as well).
FLOOR_PARENT = """
import json, os, subprocess, sys, time
with open(sys.argv[1]) as f:
    spec = json.load(f)
group = ({'process_group': 0} if sys.version_info >= (3, 11)
         else {'start_new_session': True})
children = []
for cwd, script, log, uid, gid, groups in spec['children']:
    children.append((subprocess.Popen(
        [script], cwd=cwd, env=dict(os.environ, SUPERVISOR_ENABLED='1'),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, user=uid, group=gid,
        extra_groups=groups, **group), open(log, 'ab')))
time.sleep(3600)
"""


def give_to(root, user):
    """Make the partitions of ``root`` ``user``'s, as a SlapOS node's are,
    and the way to them open to that user."""
    record = pwd.getpwnam(user)
    root.chmod(0o755)
    for path in (root, root / 'instance'):
        path.chmod(0o755)
    for partition in (root / 'instance').iterdir():
        for directory, _, files in os.walk(partition):
            os.chown(directory, record.pw_uid, record.pw_gid)
            for name in files:
                os.chown(
                    os.path.join(directory, name), record.pw_uid, record.pw_gid
                )
    return record


def run_floor(n, timeout, user=None):
    """The floor's time to all running: the small parent's fork to its
    last child's (the parent in the bench's own Python, whatever the
    stack)."""
    with workdir() as root, running_node(root, plugin=False) as node:
        node.populate(n)
        record = give_to(root, user) if user else None
        logs = root / 'floorlog'
        logs.mkdir()
        children = []
        for partition in sorted((root / 'instance').iterdir()):
            for script in sorted((partition / 'etc' / 'run').iterdir()):
                children.append(
                    (
                        str(partition),
                        str(script),
                        str(logs / f'{partition.name}-{script.name}.log'),
                        record and record.pw_uid,
                        record and record.pw_gid,
                        record
                        and os.getgrouplist(record.pw_name, record.pw_gid),
                    )
                )
        spec = root / 'floor.json'
        spec.write_text(json.dumps({'children': children}))
        parent = subprocess.Popen(
            [sys.executable, '-c', FLOOR_PARENT, str(spec)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_until(
                lambda: len(children_of(parent.pid)) >= len(children),
                timeout,
                interval=0.1,
                what=f'{len(children)} children of the floor',
            )
            launched = process_start_time(parent.pid)
            return (
                max(map(process_start_time, children_of(parent.pid)))
                - launched
            )
        finally:
            kill_tree(parent.pid)
            parent.wait()


def run_variant(n, variant, timeout, probing, user=None):
    processes = n * PROCESSES_PER_PARTITION
    plugin = variant in (PLUGIN, NOT_INSTANT)
    with (
        workdir() as root,
        running_node(
            root,
            plugin=plugin,
            listener=[] if plugin else None,
            rpc_options='instant_start = false\n'
            if variant == NOT_INSTANT
            else '',
            stack=stacks.current(),
            cron_limit=True,
            supervisord_options='' if plugin else f'minfds = {PLAIN_MINFDS}\n',
        ) as node,
    ):
        node.populate(n, autostart=(variant == AUTOSTART))
        if user:
            give_to(root, user)
        probe = LatencyProbe(node)
        node.start(
            wait=False,
            module='supervisor_slapos.linearstart'
            if plugin
            else 'supervisor.supervisord',
        )
        if probing:
            probe.start()
        try:
            if variant == STARTALL:
                node.wait_running(timeout)
                results = node.rpc.supervisor.startAllProcesses(True)
                assert len(results) == processes, len(results)
            expected = processes + (1 if plugin else 0)
            supervisord = node.process.pid
            wait_until(
                lambda: len(children_of(supervisord)) >= expected,
                timeout,
                interval=0.1,
                what=f'{expected} children of supervisord',
            )
        finally:
            if probing:
                # at least one answer, or a fast start would read as 0 ms
                probe.answered.wait(timeout)
            probe.stop.set()
            if probing:
                probe.join(timeout)
        infos = [
            i
            for i in node.rpc.supervisor.getAllProcessInfo()
            if i['group'] != 'slapos'
        ]
        assert len(infos) == processes, len(infos)
        not_running = [i for i in infos if i['statename'] != 'RUNNING']
        assert not not_running, not_running[:3]
        launched = process_start_time(supervisord)
        last = max(process_start_time(i['pid']) for i in infos)
        return last - launched, probe.longest


def floor_row(outcome, n, timeout, user, times=None, how=''):
    """Plugin and autostart against the floor (``times``: the three,
    measured back to back in this run already; else measured now)."""
    procs = n * PROCESSES_PER_PARTITION
    if times is None:
        times = {FLOOR: run_floor(n, timeout, user)}
        times.update(
            (variant, run_variant(n, variant, timeout, False, user)[0])
            for variant in (PLUGIN, AUTOSTART)
        )
    floor, plugin, autostart = times[FLOOR], times[PLUGIN], times[AUTOSTART]
    whose = f', owned by {user}' if user else ''
    row = Row(
        NAME,
        n,
        f'{FLOOR_TIME} ({procs} processes{whose})',
        plugin * 1000,
        floor * 1000,
        kind='relative',
        note=f'baseline: the floor; autostart: {autostart * 1000:.0f}'
        f' ms ({autostart / floor:.2f}x the floor){how}',
    )
    outcome.rows.append(row)
    return row


def small_node(outcome, timeout, sizes=SMALL_SIZES, runs=SMALL_RUNS):
    """The small node's rows and targets: the plugin against itself with
    ``instant_start = false``, medians of ``runs``, back to back."""
    for n in sizes:
        times = {PLUGIN: [], NOT_INSTANT: []}
        for _ in range(runs):
            for variant, measured in times.items():
                measured.append(run_variant(n, variant, timeout, False)[0])
        plugin = statistics.median(times[PLUGIN]) * 1000
        before = statistics.median(times[NOT_INSTANT]) * 1000
        procs = n * PROCESSES_PER_PARTITION
        outcome.rows.append(
            Row(
                NAME,
                n,
                f'{SMALL_TIME} ({procs} processes)',
                plugin,
                before,
                note=f'baseline: {NOT_INSTANT}; medians of {runs}',
            )
        )
        target = SMALL_TARGETS_MS.get(n)
        if target is not None:
            outcome.targets.append(
                Target(
                    f'small node: {n} partitions all running <= {target} ms '
                    f'from supervisord\'s fork',
                    f'{plugin:.0f} ms (instant_start '
                    f'= false: {before:.0f} ms)',
                    plugin <= target,
                )
            )


def run(
    sizes,
    timeout=600,
    small_sizes=SMALL_SIZES,
    small_runs=SMALL_RUNS,
    runs=RUNS,
):
    raise_fd_limit()
    outcome = Outcome(NAME)
    small_node(outcome, timeout, small_sizes, small_runs)
    floors = {}
    for n in sizes:
        # back to back: the load of a shared machine changes by the minute
        samples = {FLOOR: [], PLUGIN: [], AUTOSTART: [], STARTALL: []}
        for _ in range(runs):
            samples[FLOOR].append(run_floor(n, timeout))
            for variant in (PLUGIN, AUTOSTART, STARTALL):
                samples[variant].append(
                    run_variant(n, variant, timeout, False)[0]
                )
        times = {
            variant: statistics.median(measured)
            for variant, measured in samples.items()
        }
        waits = {
            variant: run_variant(n, variant, timeout, True)[1]
            for variant in (AUTOSTART, PLUGIN, STARTALL)
        }
        procs = n * PROCESSES_PER_PARTITION
        outcome.rows.append(
            Row(
                NAME,
                n,
                f'{TIME} ({procs} processes)',
                times[PLUGIN] * 1000,
                times[AUTOSTART] * 1000,
                kind='relative',
                note=f'baseline: autostart=true; startAllProcesses() after '
                f'the first answer: {times[STARTALL] * 1000:.0f} ms; '
                f'medians of {runs}',
            )
        )
        outcome.rows.append(
            Row(
                NAME,
                n,
                f'{LATENCY} ({procs} processes)',
                waits[PLUGIN] * 1000,
                waits[STARTALL] * 1000,
                kind='speedup',
                note=f'baseline: startAllProcesses(); with autostart=true: '
                f'{waits[AUTOSTART] * 1000:.0f} ms',
            )
        )
        floors[n, None] = floor_row(
            outcome, n, timeout, None, times, f'; medians of {runs}'
        )
        if os.getuid() == 0:
            floors[n, OTHER_USER] = floor_row(outcome, n, timeout, OTHER_USER)
    big = max(sizes)
    procs = big * PROCESSES_PER_PARTITION
    for (n, user), row in floors.items():
        if n != big:
            continue
        target = FLOOR_TARGET_OTHER_USER if user else FLOOR_TARGET
        whose = f' (owned by {user})' if user else ''
        outcome.targets.append(
            Target(
                f'offline start of {procs} processes{whose} <= {target}x the '
                f'fork/exec floor',
                f'{row.ratio:.2f}x',
                row.ratio <= target,
            )
        )
    time_row = find_row(outcome.rows, big, f'{TIME} ({procs} processes)')
    latency_row = find_row(outcome.rows, big, f'{LATENCY} ({procs} processes)')
    outcome.targets.append(
        Target(
            f'offline start of {procs} processes <= {TIME_TARGET}x native '
            f'autostart',
            f'{time_row.ratio:.2f}x',
            time_row.ratio <= TIME_TARGET,
        )
    )
    outcome.targets.append(
        Target(
            f'longest getState() wait while {procs} processes start '
            f'< {LATENCY_TARGET_MS} ms',
            f'{latency_row.plugin:.0f} ms (startAllProcesses: '
            f'{latency_row.baseline:.0f} ms)',
            latency_row.plugin < LATENCY_TARGET_MS,
        )
    )
    return outcome
