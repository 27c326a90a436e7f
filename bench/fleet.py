"""A fleet of nodes and one master: when do the requests arrive?

Simulated (virtual clock, no sleeping): N nodes, each a real
``SlaposListener`` (its schedule and its sync pass) whose collaborators are
fakes: supervisord's ``slapos`` namespace (testbed/listener_fakes.py, one
started partition, running) and a master that records the arrival time of
every request. supervisord's ``TICK_60`` comes to every node within the
second after each wall-clock minute (its main loop wakes at least once a
second), and each listener also wakes at its own moments, as its event
loop does. The nodes start within the first minute; the steady state is
measured over minutes 5 to 15, then the master is down for 10 minutes
(connections refused) and the recovery is measured.

The baseline is a model of the listener before the schedule (commit
6e371f6): an attempt on a ``TICK_60`` when its backoff allows it, three
connects on a refused connection (urllib3's two retries, the last 1.5 s
after the first), backoff ``min(60 * 2^(n-1), 900)`` times a random factor
in [0.5, 1].

Optionally (``BENCH_FLEET_REAL`` seconds, e.g. 180), a real run: 16 real
supervisord nodes, each with its own computer id, against one recording
server on loopback answering an empty instance list; the per-second
histogram of the list requests is in the fleet section.
"""

import contextlib
import heapq
import math
import os
import random
import statistics
import tempfile
import time

from bench.common import Outcome, Row, Target, running_node, workdir
from supervisor_slapos.listener import SlaposListener
from supervisor_slapos.master import Instance, MasterUnreachable
from testbed.listener_fakes import (
    TICK,
    FakeClock,
    FakeRPC,
    FakeSlapos,
    running_partition,
)
from testbed.slapos_master import LIST, FaultProxy

NAME = 'fleet'
STEADY = (300.0, 900.0)
OUTAGE = (900.0, 1500.0)
RECOVERY = 300.0  # every node back within this, after the return
END = OUTAGE[1] + 600.0
TICK_LAG = 1.0
PARTITION = 'slappart0'
# the baseline's model
OLD_BASE, OLD_CAP = 60.0, 900.0
OLD_CONNECTS = (0.0, 0.5, 1.5)
REAL_NODES = 16


class Arrivals:
    """What the master saw: ``(time, node, ok)`` per list request."""

    def __init__(self, clock):
        self.clock = clock
        self.lists = []
        self.other = 0

    @property
    def down(self):
        return OUTAGE[0] <= self.clock.now < OUTAGE[1]


class NodeMaster:
    """One node's MasterClient: records, and refuses during the outage."""

    display_url = 'http://master.fleet'

    def __init__(self, index, computer_id, arrivals):
        self.index = index
        self.computer_id = computer_id
        self.arrivals = arrivals
        self.instances = [
            Instance(
                title=f'inst-{index}',
                instance_guid=f'guid-{index}',
                state='started',
                partition_id=PARTITION,
            )
        ]

    def list_instances(self):
        down = self.arrivals.down
        self.arrivals.lists.append(
            (self.arrivals.clock.now, self.index, not down)
        )
        if down:
            raise MasterUnreachable('connection refused')
        return self.instances

    def report_state(self, guid, state):
        self.arrivals.other += 1
        if self.arrivals.down:
            raise MasterUnreachable('connection refused')

    def report_format(self, partition_list):
        self.report_state(None, None)


# the new behaviour: the real listener


def simulate_listeners(count, seed, state_root):
    """Run ``count`` real listeners through the scenario; the master's
    Arrivals."""
    clock = FakeClock(0.0)
    arrivals = Arrivals(clock)
    rng = random.Random(seed)
    devnull = open(os.devnull, 'w')  # noqa: SIM115 (closed below)
    events = [(rng.uniform(0, 60), index, 'start') for index in range(count)]
    heapq.heapify(events)
    listeners, wakes = [None] * count, [None] * count
    try:
        while events:
            moment, index, kind = heapq.heappop(events)
            if moment >= END:
                break
            clock.now = moment
            if kind == 'start':
                listeners[index] = make_listener(
                    index, seed, clock, arrivals, state_root, devnull
                )
                listeners[index].start()
            elif kind == 'tick':
                listeners[index].handle_event(TICK, '')
            elif moment == wakes[index]:
                listeners[index].due()
            else:
                continue  # a wake that a later one replaced
            schedule_next(
                events, listeners[index], index, kind, moment, wakes, rng
            )
    finally:
        devnull.close()
    return arrivals


def make_listener(index, seed, clock, arrivals, state_root, stream):
    state_dir = os.path.join(state_root, str(index))
    os.mkdir(state_dir)
    slapos = FakeSlapos(state_dir, {PARTITION: running_partition(PARTITION)})
    master = NodeMaster(index, f'COMP-{seed}-{index}', arrivals)
    return SlaposListener(
        FakeRPC(slapos),
        master=master,
        state_dir=state_dir,
        stdout=stream,
        stderr=stream,
        clock=clock,
        rng=random.Random(f'{seed}-{index}'),
    )


def schedule_next(events, listener, index, kind, moment, wakes, rng):
    if kind in ('start', 'tick'):
        minute = math.floor(moment / 60) + 1
        heapq.heappush(
            events, (minute * 60 + rng.uniform(0, TICK_LAG), index, 'tick')
        )
    seconds = listener.seconds_until_due()
    if seconds is None:
        return
    wake = moment + max(0.0, seconds)
    if wake != wakes[index]:
        wakes[index] = wake
        heapq.heappush(events, (wake, index, 'wake'))


# the baseline: a model of the listener on TICK_60


def simulate_aligned(count, seed):
    clock = FakeClock(0.0)
    arrivals = Arrivals(clock)
    rng = random.Random(seed)
    for index in range(count):
        node_rng = random.Random(f'{seed}-{index}')
        start = rng.uniform(0, 60)
        failures, next_attempt = 0, 0.0
        moments = [start] + [
            m * 60 + rng.uniform(0, TICK_LAG) for m in range(1, int(END // 60))
        ]
        for number, moment in enumerate(moments):
            if moment < next_attempt:
                continue
            clock.now = moment
            if not arrivals.down:
                arrivals.lists.append((moment, index, True))
                failures, next_attempt = 0, 0.0
                continue
            connects = OLD_CONNECTS if number else OLD_CONNECTS[:1]
            arrivals.lists.extend((moment + c, index, False) for c in connects)
            failures += 1
            delay = min(OLD_CAP, OLD_BASE * 2 ** (failures - 1))
            next_attempt = moment + delay * node_rng.uniform(0.5, 1.0)
    arrivals.lists.sort()
    return arrivals


# figures


def busiest_second(times):
    """The most arrivals in any window of 1 s (``times`` sorted)."""
    best, first = 0, 0
    for last, moment in enumerate(times):
        while moment - times[first] >= 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


def figures(arrivals, count):
    """The figures of one run. The average is the fleet's own rate, one
    list request per node per minute: the load the master is sized for.
    After the outage, the busiest second is looked for in the first
    RECOVERY seconds after the return."""
    lists = sorted(arrivals.lists)
    steady = [t for t, _, _ in lists if STEADY[0] <= t < STEADY[1]]
    after = [t for t, _, _ in lists if OUTAGE[1] <= t < OUTAGE[1] + RECOVERY]
    outage = [t for t, _, _ in lists if OUTAGE[0] <= t < OUTAGE[1]]
    back = {}
    for moment, index, ok in lists:
        if ok and moment >= OUTAGE[1] and index not in back:
            back[index] = moment - OUTAGE[1]
    times = sorted(back.values())
    minutes = (STEADY[1] - STEADY[0]) / 60
    average = count / 60  # the fleet's rate: a request per node per minute
    return {
        'per node per minute': len(steady) / count / minutes,
        'per node per minute, master down': len(outage)
        / count
        / ((OUTAGE[1] - OUTAGE[0]) / 60),
        'busiest second / average, steady': busiest_second(steady) / average,
        'busiest second / average, after the outage': busiest_second(after)
        / average,
        'half back after (s)': times[len(times) // 2]
        if len(times) == count
        else math.inf,
        'all back after (s)': times[-1] if len(times) == count else math.inf,
    }


def median_figures(runs):
    return {
        key: statistics.median(run[key] for run in runs) for key in runs[0]
    }


def run_size(count, seeds):
    new_runs, old_runs = [], []
    for seed in range(seeds):
        with tempfile.TemporaryDirectory(
            prefix='fleet', dir=shm_or_tmp()
        ) as root:
            new_runs.append(
                figures(simulate_listeners(count, seed, root), count)
            )
        old_runs.append(figures(simulate_aligned(count, seed), count))
    return median_figures(new_runs), median_figures(old_runs)


def shm_or_tmp():
    """tmpfs when there is one: thousands of small state files."""
    return '/dev/shm' if os.path.isdir('/dev/shm') else None


UNITS = {
    'per node per minute': 'req',
    'per node per minute, master down': 'req',
    'half back after (s)': 's',
    'all back after (s)': 's',
}


def run(sizes=None, seeds=None, real_seconds=None):
    sizes = sizes or [
        int(v)
        for v in os.environ.get('BENCH_FLEET_SIZES', '1000,10000').split(',')
    ]
    seeds = seeds or int(os.environ.get('BENCH_FLEET_SEEDS', '5'))
    if real_seconds is None:
        real_seconds = float(os.environ.get('BENCH_FLEET_REAL', '0'))
    outcome = Outcome(NAME)
    lines = [
        '| N | seeds | measure | schedule (new) | on the tick (before) |',
        '| ---: | ---: | --- | ---: | ---: |',
    ]
    for count in sizes:
        used = seeds if count <= 1000 else 1  # 10000 nodes take minutes
        new, old = run_size(count, used)
        for key in new:
            outcome.rows.append(
                Row(
                    NAME,
                    count,
                    key,
                    round(new[key], 2),
                    round(old[key], 2),
                    unit=UNITS.get(key, 'x'),
                    kind='relative',
                    note=f'the tick (median of {used})',
                )
            )
            lines.append(
                f'| {count} | {used} | {key} | {new[key]:.2f} | '
                f'{old[key]:.2f} |'
            )
        outcome.targets.extend(targets(count, used, new))
    text = '\n'.join(lines)
    if real_seconds > 0:
        text += '\n\n' + real_run(real_seconds)
    outcome.sections.append(('Fleet', text))
    return outcome


def targets(count, seeds, new):
    limit = 1.5 if count >= 10000 else 2.0  # busiest second / average
    found = []
    for key in (
        'busiest second / average, steady',
        'busiest second / average, after the outage',
    ):
        found.append(
            Target(
                f'fleet N={count}: {key} <= {limit:g} (median of {seeds})',
                f'{new[key]:.2f}',
                new[key] <= limit,
            )
        )
    found.append(
        Target(
            f'fleet N={count}: all back within {RECOVERY:.0f} s of the '
            f"master's return",
            f"{new['all back after (s)']:.0f} s",
            new['all back after (s)'] <= RECOVERY,
        )
    )
    return found


# a real run


def real_run(seconds, nodes=REAL_NODES):
    """``nodes`` real supervisords against one recording server for
    ``seconds``; a markdown histogram of the list requests per second of
    the minute."""
    server = FaultProxy()
    server.set_fault('json', body={'result_list': []})
    begun = time.time()
    try:
        with workdir('fl') as root, contextlib.ExitStack() as stack:
            for index in range(nodes):
                node = stack.enter_context(
                    running_node(
                        root / f'n{index}',
                        listener=[
                            '--master-url',
                            server.url,
                            '--computer-id',
                            f'COMP-REAL-{index}',
                            '--timeout',
                            '5',
                        ],
                    )
                )
                node.start()
            time.sleep(seconds)
    finally:
        server.close()
    by_node = {}
    for (moment, name), (_, body) in zip(server.arrivals, server.requests):
        if name == LIST:
            by_node.setdefault(body['computer_guid'], []).append(moment)
    # each node's first request is its start attempt, not on its phase
    scheduled = {node: times[1:] for node, times in by_node.items()}
    return histogram(scheduled, nodes, time.time() - begun)


def off_phase(times):
    """How far from the first of ``times``, within its minute, the
    others are (seconds)."""
    offsets = [(moment - times[0]) % 60 for moment in times]
    return max(min(offset, 60 - offset) for offset in offsets)


def histogram(scheduled, nodes, seconds):
    """The scheduled list requests (``{node: [time, ...]}``) per second
    of the minute, as markdown."""
    per_second = [0] * 60
    for times in scheduled.values():
        for moment in times:
            per_second[int(moment % 60)] += 1
    total = sum(per_second)
    spread = max((off_phase(t) for t in scheduled.values() if t), default=0.0)
    seconds_used = len({int(t[0] % 60) for t in scheduled.values() if t})
    lines = [
        f'Real run: {nodes} supervisord nodes (their own computer ids), '
        f'one recording server on loopback, {seconds:.0f} s: {total} '
        f'scheduled list requests (the start attempts left out), by '
        f'second of the minute. Each node asks within {spread:.2f} s of '
        f'the same moment of every minute; the nodes use '
        f'{seconds_used} different seconds (on the tick, every request '
        f'would arrive in second 0 or 1).',
        '',
        '| second | ' + ' | '.join(f'+{n}' for n in range(10)) + ' |',
        '| --- |' + ' ---: |' * 10,
    ]
    for tens in range(0, 60, 10):
        counts = ' | '.join(str(n) for n in per_second[tens : tens + 10])
        lines.append(f'| {tens:02d} | {counts} |')
    return '\n'.join(lines)
