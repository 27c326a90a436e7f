"""Scoped apply: one partition's change on a node of N partitions.

Plugin: ``slapos.updatePartition(P)`` (P.conf written beforehand, as a
manager or slapgrid would) and ``slapos.startPartition(P)``.

Baseline, what slapgrid does today for the same change
(``Partition.updateSupervisor``): ``supervisor.reloadConfig()``, then
``addProcessGroup`` for every added group; to start, slapgrid first writes
P.conf itself and ends with ``startProcessGroup(P)``. Both starts wait for
the processes (``wait=True``).

The N loaded partitions are started partitions (their P.conf exist) whose
processes are not running, so that the figures measure the configuration
work, not 2N live processes. ``getState()`` (the floor) is supervisord's
own cost for any call on that node: its main loop visits every process
between two requests.

Many entries: one started partition of E ``etc/run`` entries (env
``BENCH_SCOPED_ENTRIES``), loaded, nothing changed. Plugin:
``slapos.updatePartition(P)``, which parses P's files (the listener calls
``startPartition`` at every sync while a process of P is not RUNNING,
which parses them too). Baseline: supervisord's own full
``reloadConfig()`` of the same configuration (plain supervisor's reader).
A scoped call must cost no more than that.
"""

import os

from bench.common import (
    RUN_ENTRIES,
    SPARE_PARTITION,
    Outcome,
    Row,
    Target,
    find_row,
    measure,
    median_ms,
    running_node,
    workdir,
)
from supervisor_slapos.files import atomic_write
from supervisor_slapos.partitionconf import generate_partition_conf
from testbed.polling import wait_until
from testbed.proc import has_execed

NAME = 'scoped'
UPDATE = 'updatePartition(P)'
MANY = 'updatePartition(P), P of E entries'
START = 'startPartition(P)'
FLOOR = 'getState() (floor)'
SPEEDUP_TARGET = 300
GROWTH_TARGET = 3


def slapgrid_update(rpc):
    """``Partition.updateSupervisor`` of slapos.core, for what it meets
    here (added groups; changed or removed ones would cost more)."""
    added, changed, removed = rpc.supervisor.reloadConfig()[0]
    assert not changed and not removed, (changed, removed)
    for name in added:
        rpc.supervisor.addProcessGroup(name)
    return added


def wait_started(rpc, pid, count):
    """Wait until ``pid``'s ``count`` processes run their own command
    (a stop before exec would wait stopwaitsecs), without the cost of
    getAllProcessInfo on a big node."""

    def started():
        processes = rpc.slapos.getPartitionInfo(pid)['processes']
        return len(processes) == count and all(
            p['statename'] == 'RUNNING' and has_execed(p['pid'])
            for p in processes
        )

    wait_until(started, 30, interval=0.01, what=f'{pid} started')


def run_size(n, reps, budget):
    rows = []
    # The baseline is today's way on today's supervisord: its full re-read
    # plain (the plugin's scoped methods never do one).
    with (
        workdir() as root,
        running_node(root, rpc_options='linear_reread = false\n') as node,
    ):
        node.populate(n)
        node.make_partition(SPARE_PARTITION, run=list(RUN_ENTRIES))
        conf = node.include_file(f'{SPARE_PARTITION}.conf')
        text = generate_partition_conf(
            str(node.instance_root), SPARE_PARTITION
        )
        node.start(wait=False)
        node.wait_running(timeout=300)
        rpc = node.rpc
        pid = SPARE_PARTITION

        floor = measure(rpc.supervisor.getState, reps * 2)

        # update: the file is there, apply it
        def plugin_update():
            result = rpc.slapos.updatePartition(pid)
            assert result == [[pid], [], []], result

        def plugin_update_undo():
            os.unlink(conf)
            assert rpc.slapos.updatePartition(pid) == [[], [], [pid]]

        def baseline_update():
            assert slapgrid_update(rpc) == [pid]

        def baseline_update_undo():
            os.unlink(conf)
            rpc.supervisor.removeProcessGroup(pid)

        write = lambda: atomic_write(conf, text)  # noqa: E731
        plugin = measure(
            plugin_update, reps, setup=write, teardown=plugin_update_undo
        )
        baseline = measure(
            baseline_update,
            reps,
            budget,
            setup=write,
            teardown=baseline_update_undo,
        )
        rows.append(
            Row(
                NAME,
                n,
                UPDATE,
                median_ms(plugin),
                median_ms(baseline),
                note='baseline: reloadConfig + addProcessGroup',
            )
        )

        # start: P.conf absent, start the partition
        def plugin_start():
            assert rpc.slapos.startPartition(pid) is True

        def baseline_start():
            atomic_write(
                conf, generate_partition_conf(str(node.instance_root), pid)
            )
            slapgrid_update(rpc)
            rpc.supervisor.startProcessGroup(pid, True)

        def stop():
            # Untimed (teardown): undone with supervisor's own calls, the
            # same after either side's start, so that neither side's round
            # depends on the plugin's stopPartition.
            wait_started(rpc, pid, 2)
            rpc.supervisor.stopProcessGroup(pid, False)
            wait_until(
                lambda: all(
                    rpc.supervisor.getProcessInfo(f'{pid}:{name}')['statename']
                    == 'STOPPED'
                    for name in RUN_ENTRIES
                ),
                30,
                interval=0.01,
                what=f'{pid} stopped',
            )
            rpc.supervisor.removeProcessGroup(pid)
            os.unlink(conf)

        plugin = measure(plugin_start, reps, teardown=stop)
        baseline = measure(baseline_start, reps, budget, teardown=stop)
        rows.append(
            Row(
                NAME,
                n,
                START,
                median_ms(plugin),
                median_ms(baseline),
                note='baseline: write P.conf, reloadConfig + '
                'addProcessGroup + startProcessGroup',
            )
        )
        rows.append(
            Row(
                NAME,
                n,
                FLOOR,
                median_ms(floor),
                note="supervisord's cost for any call",
            )
        )
    return rows


def run_many_entries(entries, reps, budget):
    """The row of MANY: one partition of ``entries`` etc/run entries."""
    with (
        workdir() as root,
        running_node(root, rpc_options='linear_reread = false\n') as node,
    ):
        pid = SPARE_PARTITION
        node.make_partition(pid, run=[f'e{i}' for i in range(entries)])
        node.include_file(f'{pid}.conf').write_text(
            generate_partition_conf(str(node.instance_root), pid)
        )
        node.start(wait=False)
        node.wait_running(timeout=300)
        rpc = node.rpc

        def plugin_update():
            assert rpc.slapos.updatePartition(pid) == [[], [], []]

        def baseline_reload():
            assert rpc.supervisor.reloadConfig() == [[[], [], []]]

        plugin = measure(plugin_update, reps, budget)
        baseline = measure(baseline_reload, reps, budget)
    return Row(
        NAME,
        entries,
        MANY,
        median_ms(plugin),
        median_ms(baseline),
        kind='relative',
        note="E entries (N: E); baseline: supervisord's own "
        'reloadConfig() of the same configuration',
    )


def run(sizes, reps=20, budget=15.0, entries=None):
    outcome = Outcome(NAME)
    for n in sizes:
        outcome.rows.extend(run_size(n, reps, budget))
    if entries is None:
        entries = int(os.environ.get('BENCH_SCOPED_ENTRIES', '300'))
    many = run_many_entries(entries, reps, budget)
    outcome.rows.append(many)
    outcome.targets.append(
        Target(
            f'{MANY} at E={entries}: <= reloadConfig() of the same '
            f'configuration',
            f'{many.ratio:.2f}x',
            many.ratio <= 1,
        )
    )
    small, big = min(sizes), max(sizes)
    for metric in (UPDATE, START):
        row = find_row(outcome.rows, big, metric)
        outcome.targets.append(
            Target(
                f'{metric} at N={big}: >= {SPEEDUP_TARGET}x faster than '
                f'slapgrid',
                f'{row.ratio:.0f}x',
                row.ratio >= SPEEDUP_TARGET,
            )
        )
        if big > small:
            growth = row.plugin / find_row(outcome.rows, small, metric).plugin
            floor = (
                find_row(outcome.rows, big, FLOOR).plugin
                / find_row(outcome.rows, small, FLOOR).plugin
            )
            outcome.targets.append(
                Target(
                    f'{metric}: time at N={big} <= {GROWTH_TARGET}x time at '
                    f'N={small}',
                    f'{growth:.1f}x (getState: {floor:.1f}x)',
                    growth <= GROWTH_TARGET,
                )
            )
    return outcome
