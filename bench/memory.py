"""Memory: supervisord's resident size with N partitions loaded, with and
without the plugin (same include files, processes not running; both serve
the same calls first, and the plugin's node also one call of each kind of
its own)."""

from bench.common import Outcome, Row, Target, find_row, running_node, workdir
from testbed.proc import rss_kib

NAME = 'memory'
RSS = 'supervisord RSS'
ADDED_TARGET_MIB = 10


def rss_of(n, plugin):
    with workdir() as root, running_node(root, plugin=plugin) as node:
        pids = node.start_populated(n)
        rpc = node.rpc
        rpc.supervisor.getAllProcessInfo()
        if plugin:
            rpc.slapos.getAllPartitionInfo()
            rpc.slapos.getPartitionInfo(pids[0])
            rpc.slapos.updatePartition(pids[0])
        return rss_kib(node.process.pid) / 1024


def run(sizes):
    outcome = Outcome(NAME)
    for n in sizes:
        outcome.rows.append(
            Row(
                NAME,
                n,
                RSS,
                rss_of(n, True),
                rss_of(n, False),
                unit='MiB',
                kind='relative',
                note='baseline: the same node without the plugin',
            )
        )
    big = max(sizes)
    row = find_row(outcome.rows, big, RSS)
    added = row.plugin - row.baseline
    outcome.targets.append(
        Target(
            f'RSS added by the plugin at N={big} < {ADDED_TARGET_MIB} MiB',
            f'{added:+.1f} MiB',
            added < ADDED_TARGET_MIB,
        )
    )
    return outcome
