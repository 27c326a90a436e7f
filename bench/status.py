"""Status of one partition on a node of N partitions.

Plugin: ``slapos.getPartitionInfo(P)``. Baseline: what a client does
today, ``supervisor.getAllProcessInfo()`` filtered on the group. The
node is shaped as in scoped (N started partitions of 2 programs, not
running); ``getState()`` is the floor of any call on it.
"""

from bench.common import (
    Outcome,
    Row,
    Target,
    find_row,
    measure,
    median_ms,
    running_node,
    workdir,
)

NAME = 'status'
INFO = 'getPartitionInfo(P)'
FLOOR = 'getState() (floor)'
FLAT_TARGET = 2.0
NOISE_MS = 0.05


def run_size(n, reps, budget):
    with workdir() as root, running_node(root) as node:
        pids = node.start_populated(n)
        rpc = node.rpc
        pid = pids[len(pids) // 2]

        def plugin():
            info = rpc.slapos.getPartitionInfo(pid)
            assert len(info['processes']) == 2, info

        def baseline():
            infos = [
                i
                for i in rpc.supervisor.getAllProcessInfo()
                if i['group'] == pid
            ]
            assert len(infos) == 2, infos

        floor = measure(rpc.supervisor.getState, reps)
        plugin_samples = measure(plugin, reps)
        baseline_samples = measure(baseline, reps, budget)
    return [
        Row(
            NAME,
            n,
            INFO,
            median_ms(plugin_samples),
            median_ms(baseline_samples),
            note='baseline: getAllProcessInfo, filtered by the client',
        ),
        Row(
            NAME,
            n,
            FLOOR,
            median_ms(floor),
            note="supervisord's cost for any call",
        ),
    ]


def run(sizes, reps=50, budget=10.0):
    outcome = Outcome(NAME)
    for n in sizes:
        outcome.rows.extend(run_size(n, reps, budget))
    small, big = min(sizes), max(sizes)
    if big > small:
        plugin = [find_row(outcome.rows, n, INFO).plugin for n in (small, big)]
        floor = [find_row(outcome.rows, n, FLOOR).plugin for n in (small, big)]
        # the plugin's own cost: above the floor that any call on this
        # supervisord pays (which grows with N: supervisord's own loop);
        # below NOISE_MS a difference is the measure's noise
        own = [max(p - f, NOISE_MS) for p, f in zip(plugin, floor)]
        growth = own[1] / own[0]
        outcome.targets.append(
            Target(
                f'{INFO} flat in N above the getState() floor: at N={big} '
                f'<= {FLAT_TARGET}x N={small}',
                f'{growth:.1f}x ({own[0]:.2f} -> {own[1]:.2f} ms above the '
                f'floor; in all {plugin[0]:.2f} -> {plugin[1]:.2f} ms)',
                growth <= FLAT_TARGET,
            )
        )
    return outcome
