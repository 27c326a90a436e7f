"""Offline start: supervisord starts and every started partition runs.

Three ways to start the same 2N processes (N partitions of 2 sleepers):

- plugin: the programs are ``autostart=false`` (as slapgrid writes them);
  the listener, without a master URL, calls ``slapos.startAllPartitions()``
  as soon as supervisord starts it; the plugin spawns them in time slices;
- autostart: plain supervisord, the same programs with ``autostart=true``;
- startAllProcesses: plain supervisord, ``autostart=false``, and a client
  calling ``supervisor.startAllProcesses()`` as soon as supervisord answers.

"Time to all running" goes from the fork of supervisord to the fork of its
last partition process (read from /proc afterwards: nothing polls
supervisord for it; with ``startsecs=0`` a process is RUNNING from its
fork). In a second start of each kind, a thread calls
``supervisor.getState()`` every 20 ms and keeps the longest wait: how long
supervisord leaves its clients without an answer. The two are separate
runs because a polling client wakes supervisord's loop up, which changes
how fast a deferred RPC result (startAllPartitions) progresses.
"""
import threading
import time
import xmlrpc.client

from bench.common import (PROCESSES_PER_PARTITION, Outcome, Row, Target,
                          find_row, raise_fd_limit, running_node, workdir)
from testbed.polling import wait_until
from testbed.proc import process_start_time

NAME = 'offline'
PLUGIN, AUTOSTART, STARTALL = 'plugin', 'autostart', 'startAllProcesses'
TIME = 'time to all running'
LATENCY = 'longest getState() wait'
TIME_TARGET = 1.1
LATENCY_TARGET_MS = 250
POLL_INTERVAL = 0.02


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


def child_count(pid):
    try:
        with open(f'/proc/{pid}/task/{pid}/children') as f:
            return len(f.read().split())
    except OSError:
        return 0


def run_variant(n, variant, timeout, probing):
    processes = n * PROCESSES_PER_PARTITION
    with workdir() as root, running_node(
            root, plugin=(variant == PLUGIN),
            listener=[] if variant == PLUGIN else None) as node:
        node.populate(n, autostart=(variant == AUTOSTART))
        probe = LatencyProbe(node)
        node.start(wait=False)
        if probing:
            probe.start()
        try:
            if variant == STARTALL:
                node.wait_running(timeout)
                results = node.rpc.supervisor.startAllProcesses(True)
                assert len(results) == processes, len(results)
            expected = processes + (1 if variant == PLUGIN else 0)
            supervisord = node.process.pid
            wait_until(lambda: child_count(supervisord) >= expected,
                       timeout, interval=0.1,
                       what=f'{expected} children of supervisord')
        finally:
            if probing:
                # at least one answer, or a fast start would read as 0 ms
                probe.answered.wait(timeout)
            probe.stop.set()
            if probing:
                probe.join(timeout)
        infos = [i for i in node.rpc.supervisor.getAllProcessInfo()
                 if i['group'] != 'slapos']
        assert len(infos) == processes, len(infos)
        not_running = [i for i in infos if i['statename'] != 'RUNNING']
        assert not not_running, not_running[:3]
        launched = process_start_time(supervisord)
        last = max(process_start_time(i['pid']) for i in infos)
        return last - launched, probe.longest


def run(sizes, timeout=600):
    raise_fd_limit()
    outcome = Outcome(NAME)
    for n in sizes:
        times = {variant: run_variant(n, variant, timeout, False)[0]
                 for variant in (AUTOSTART, PLUGIN, STARTALL)}
        waits = {variant: run_variant(n, variant, timeout, True)[1]
                 for variant in (AUTOSTART, PLUGIN, STARTALL)}
        procs = n * PROCESSES_PER_PARTITION
        outcome.rows.append(Row(
            NAME, n, f'{TIME} ({procs} processes)', times[PLUGIN] * 1000,
            times[AUTOSTART] * 1000, kind='relative',
            note=f'baseline: autostart=true; startAllProcesses() after '
            f'the first answer: {times[STARTALL] * 1000:.0f} ms'))
        outcome.rows.append(Row(
            NAME, n, f'{LATENCY} ({procs} processes)', waits[PLUGIN] * 1000,
            waits[STARTALL] * 1000, kind='speedup',
            note=f'baseline: startAllProcesses(); with autostart=true: '
            f'{waits[AUTOSTART] * 1000:.0f} ms'))
    big = max(sizes)
    procs = big * PROCESSES_PER_PARTITION
    time_row = find_row(outcome.rows, big, f'{TIME} ({procs} processes)')
    latency_row = find_row(outcome.rows, big, f'{LATENCY} ({procs} processes)')
    outcome.targets.append(Target(
        f'offline start of {procs} processes <= {TIME_TARGET}x native '
        f'autostart', f'{time_row.ratio:.2f}x', time_row.ratio <= TIME_TARGET))
    outcome.targets.append(Target(
        f'longest getState() wait while {procs} processes start '
        f'< {LATENCY_TARGET_MS} ms',
        f'{latency_row.plugin:.0f} ms (startAllProcesses: '
        f'{latency_row.baseline:.0f} ms)',
        latency_row.plugin < LATENCY_TARGET_MS))
    return outcome
