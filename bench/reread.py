"""supervisord's re-read, with the plugin's incremental and linear reads
and without.

- ``reloadConfig()`` on a node of N started partitions (2 programs each,
  not running) after 0, 1 or 10 of their files changed (``startsecs``
  toggled, untimed, before each call): with the plugin (incremental and
  linear re-read, the defaults), with the plugin and
  ``incremental_reread = false`` (the linear read alone), and in a plain
  supervisord (no plugin) on the same files, median of repeats, in the
  same run (plain reads everything whatever changed: measured once per N,
  with nothing changed);
- a slapgrid-shaped pass at the biggest N: ``BENCH_REREAD_PASS``
  partitions (default 100) changed one after the other, each followed by
  what slapgrid's ``Partition.updateSupervisor`` does (``reloadConfig()``,
  then remove and add the changed group);
- reload to all running: ``supervisor.restart()`` on a node whose listener
  starts every partition offline, until the last of the 2N processes is
  forked again, with ``linear_reread`` on and off. The read at
  supervisord's first start happens before the plugin is imported and is
  plain either way; a reload's read uses the parser installed at the
  previous start.
"""

import os
import time

from bench.common import (
    PROCESSES_PER_PARTITION,
    Outcome,
    Row,
    Target,
    find_row,
    measure,
    median_ms,
    raise_fd_limit,
    running_node,
    workdir,
)
from supervisor_slapos.files import atomic_write
from supervisor_slapos.incrementalread import RECENT_NS
from testbed.configread import wait_files_older_than
from testbed.polling import wait_until
from testbed.proc import children_of, process_start_time

NAME = 'reread'
RELOAD = 'reloadConfig()'
PASS = 'slapgrid pass'
RESTART = 'reload to all running'
CHANGED = (0, 1, 10)
MARGIN_S = RECENT_NS / 1e9 + 0.1
SPEEDUP_TARGET = 300  # at the biggest N, <= 10 files changed
BIG_TARGET_MS = 50  # the same
SMALL_N, SMALL_TARGET_MS = 100, 15
GROWTH_TARGET = 12
PASS_SIZE = int(os.environ.get('BENCH_REREAD_PASS', '100'))
LINEAR_OFF = 'linear_reread = false\n'
INCREMENTAL_OFF = 'incremental_reread = false\n'
READS = {
    'incremental': dict(plugin=True),
    'linear': dict(plugin=True, rpc_options=INCREMENTAL_OFF),
    'plain': dict(plugin=False),
}


def reload_config(rpc):
    return rpc.supervisor.reloadConfig()[0]


def toggle_startsecs(node, pids):
    """Change the files of ``pids`` (startsecs 0 <-> 1), as a new
    software release would."""
    for pid in pids:
        path = node.include_file(f'{pid}.conf')
        text = path.read_text()
        if 'startsecs=0' in text:
            text = text.replace('startsecs=0', 'startsecs=1')
        else:
            text = text.replace('startsecs=1', 'startsecs=0')
        atomic_write(path, text)


def reload_config_medians(n, reps, budget):
    """{(read, files changed): median ms} for ``n`` partitions."""
    medians = {}
    for read, kwargs in READS.items():
        with workdir() as root, running_node(root, **kwargs) as node:
            pids = node.start_populated(n, timeout=900)
            rpc = node.rpc
            wait_files_older_than(node.include_dir, MARGIN_S)
            assert reload_config(rpc) == [[], [], []]  # the cache is made
            for count in CHANGED if read != 'plain' else (0,):
                changed = pids[: min(count, n)]
                medians[read, count] = median_ms(
                    measure(
                        lambda rpc=rpc: reload_config(rpc),
                        reps,
                        budget,
                        setup=lambda changed=changed: toggle_startsecs(
                            node, changed
                        ),
                    )
                )
    return medians


def reload_config_rows(n, medians):
    rows = []
    for count in CHANGED:
        incremental = medians['incremental', count]
        linear = medians['linear', count]
        rows.append(
            Row(
                NAME,
                n,
                reload_metric(count),
                incremental,
                medians['plain', 0],
                note=f'linear read alone: {linear:.1f} ms '
                f'({linear / incremental:.1f}x); baseline: plain supervisord, '
                'same files',
            )
        )
    return rows


def reload_metric(count):
    return f'{RELOAD}, {count} files changed'


def reload_config_table(sizes, all_medians):
    lines = [
        '| N | files changed | incremental | linear alone | plain |',
        '| ---: | ---: | ---: | ---: | ---: |',
    ]
    for n in sizes:
        medians = all_medians[n]
        for count in CHANGED:
            lines.append(
                f'| {n} | {count} | {medians["incremental", count]:.1f} ms |'
                f' {medians["linear", count]:.1f} ms |'
                f' {medians["plain", 0]:.0f} ms |'
            )
    return '\n'.join(lines)


def changed_conf(node, pid):
    """P.conf with one more option, as a new software release would."""
    path = node.include_file(f'{pid}.conf')
    return path, path.read_text().replace('startsecs=0', 'startsecs=1')


def slapgrid_pass(node, pids):
    rpc = node.rpc.supervisor
    for pid in pids:
        atomic_write(*changed_conf(node, pid))
        added, changed, removed = rpc.reloadConfig()[0]
        assert changed == [pid] and not added and not removed, changed
        rpc.removeProcessGroup(pid)
        rpc.addProcessGroup(pid)


def pass_row(n, count):
    seconds = {}
    for plugin in (True, False):
        with workdir() as root, running_node(root, plugin=plugin) as node:
            pids = node.start_populated(n, timeout=600)[:count]
            seconds[plugin] = measure(
                lambda node=node, pids=pids: slapgrid_pass(node, pids), 1
            )[0]
    return Row(
        NAME,
        n,
        f'{PASS}: {count} partitions changed',
        seconds[True] * 1000,
        seconds[False] * 1000,
        note='reloadConfig + removeProcessGroup + addProcessGroup '
        'each; baseline: plain supervisord',
    )


def restart_seconds(n, linear, timeout):
    """supervisor.restart() to the fork of the last partition process."""
    expected = n * PROCESSES_PER_PARTITION + 1  # and the listener
    with (
        workdir() as root,
        running_node(
            root, listener=[], rpc_options='' if linear else LINEAR_OFF
        ) as node,
    ):
        node.populate(n)
        node.start(wait=False)
        supervisord = node.process.pid
        wait_until(
            lambda: len(children_of(supervisord)) >= expected,
            timeout,
            interval=0.1,
            what=f'{expected} children',
        )
        before = children_of(supervisord)
        asked = time.clock_gettime(time.CLOCK_BOOTTIME)
        node.rpc.supervisor.restart()
        wait_until(
            lambda: len(children_of(supervisord) - before) >= expected,
            timeout,
            interval=0.1,
            what=f'{expected} children after the reload',
        )
        last = max(
            process_start_time(child)
            for child in children_of(supervisord) - before
        )
        return last - asked


def restart_row(n, timeout):
    linear = restart_seconds(n, True, timeout)
    plain = restart_seconds(n, False, timeout)
    return Row(
        NAME,
        n,
        f'{RESTART} ({n * PROCESSES_PER_PARTITION} processes)',
        linear * 1000,
        plain * 1000,
        note='baseline: the plugin with linear_reread = false',
    )


def slowest_reload(rows, n):
    """The row of ``reloadConfig()`` at ``n`` partitions that the plugin
    took longest on, over the numbers of files changed (``CHANGED``)."""
    return max(
        (find_row(rows, n, reload_metric(changed)) for changed in CHANGED),
        key=lambda row: row.plugin,
    )


def run(sizes, reps=10, budget=20.0, timeout=900, pass_size=PASS_SIZE):
    raise_fd_limit()
    outcome = Outcome(NAME)
    all_medians = {}
    for n in sizes:
        all_medians[n] = reload_config_medians(n, reps, budget)
        outcome.rows.extend(reload_config_rows(n, all_medians[n]))
    outcome.sections.append(
        (
            'reloadConfig(): incremental, linear alone, plain',
            reload_config_table(sizes, all_medians),
        )
    )
    big = max(sizes)
    count = min(pass_size, big)
    outcome.rows.append(pass_row(big, count))
    outcome.rows.append(restart_row(big, timeout))
    worst = slowest_reload(outcome.rows, big)
    outcome.targets.append(
        Target(
            f'reloadConfig() at N={big}, <= {max(CHANGED)} files changed: '
            f'<= {BIG_TARGET_MS} ms and >= {SPEEDUP_TARGET}x faster than '
            'plain supervisord',
            f'{worst.plugin:.1f} ms, {worst.ratio:.0f}x',
            worst.plugin <= BIG_TARGET_MS and worst.ratio >= SPEEDUP_TARGET,
        )
    )
    if SMALL_N in sizes:
        small = slowest_reload(outcome.rows, SMALL_N)
        outcome.targets.append(
            Target(
                f'reloadConfig() at N={SMALL_N}, <= {max(CHANGED)} files '
                f'changed: <= {SMALL_TARGET_MS} ms',
                f'{small.plugin:.1f} ms',
                small.plugin <= SMALL_TARGET_MS,
            )
        )
    smaller = [n for n in sizes if n * 10 == big]
    if smaller:
        row = find_row(outcome.rows, big, reload_metric(0))
        growth = (
            row.plugin
            / find_row(outcome.rows, smaller[0], reload_metric(0)).plugin
        )
        outcome.targets.append(
            Target(
                f'reloadConfig(), nothing changed: time at N={big} <= '
                f'{GROWTH_TARGET}x time at N={smaller[0]}',
                f'{growth:.1f}x',
                growth <= GROWTH_TARGET,
            )
        )
    outcome.notes.append(
        "supervisord's first read at start is plain (the plugin is not "
        'imported yet); the incremental read serves every later read '
        '(reloadConfig, update, reread) but the first after a reload, '
        'which is a full linear one; a file changed less than 2 s before '
        'a read is read again by the next one'
    )
    return outcome
