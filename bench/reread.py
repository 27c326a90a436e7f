"""supervisord's full re-read, with the plugin's linear parser and without.

- ``reloadConfig()`` on a node of N started partitions (2 programs each,
  not running), with the plugin (``linear_reread`` on, the default) and in
  a plain supervisord (no plugin) on the same files, median of repeats;
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

from bench.common import (PROCESSES_PER_PARTITION, Outcome, Row, Target,
                          find_row, measure, median_ms, raise_fd_limit,
                          running_node, workdir)
from supervisor_slapos.files import atomic_write
from testbed.polling import wait_until
from testbed.proc import children_of, process_start_time

NAME = 'reread'
RELOAD = 'reloadConfig()'
PASS = 'slapgrid pass'
RESTART = 'reload to all running'
SPEEDUP_TARGET = 20
GROWTH_TARGET = 12
PASS_SIZE = int(os.environ.get('BENCH_REREAD_PASS', '100'))
LINEAR_OFF = 'linear_reread = false\n'


def reload_config(rpc):
    return rpc.supervisor.reloadConfig()[0]


def reload_config_rows(n, reps, budget):
    medians = {}
    for plugin in (True, False):
        with workdir() as root, running_node(root, plugin=plugin) as node:
            node.start_populated(n, timeout=600)
            rpc = node.rpc
            assert reload_config(rpc) == [[], [], []]
            medians[plugin] = median_ms(measure(
                lambda: reload_config(rpc), reps, budget))
    return Row(NAME, n, RELOAD, medians[True], medians[False],
               note='baseline: plain supervisord, same files')


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
            seconds[plugin] = measure(lambda: slapgrid_pass(node, pids), 1)[0]
    return Row(NAME, n, f'{PASS}: {count} partitions changed',
               seconds[True] * 1000, seconds[False] * 1000,
               note='reloadConfig + removeProcessGroup + addProcessGroup '
               'each; baseline: plain supervisord')


def restart_seconds(n, linear, timeout):
    """supervisor.restart() to the fork of the last partition process."""
    expected = n * PROCESSES_PER_PARTITION + 1  # and the listener
    with workdir() as root, running_node(
            root, listener=[],
            rpc_options='' if linear else LINEAR_OFF) as node:
        node.populate(n)
        node.start(wait=False)
        supervisord = node.process.pid
        wait_until(lambda: len(children_of(supervisord)) >= expected,
                   timeout, interval=0.1, what=f'{expected} children')
        before = children_of(supervisord)
        asked = time.clock_gettime(time.CLOCK_BOOTTIME)
        node.rpc.supervisor.restart()
        wait_until(lambda: len(children_of(supervisord) - before)
                   >= expected,
                   timeout, interval=0.1,
                   what=f'{expected} children after the reload')
        last = max(process_start_time(child)
                   for child in children_of(supervisord) - before)
        return last - asked


def restart_row(n, timeout):
    linear = restart_seconds(n, True, timeout)
    plain = restart_seconds(n, False, timeout)
    return Row(NAME, n, f'{RESTART} ({n * PROCESSES_PER_PARTITION} '
               'processes)', linear * 1000, plain * 1000,
               note='baseline: the plugin with linear_reread = false')


def run(sizes, reps=10, budget=20.0, timeout=900, pass_size=PASS_SIZE):
    raise_fd_limit()
    outcome = Outcome(NAME)
    for n in sizes:
        outcome.rows.append(reload_config_rows(n, reps, budget))
    big = max(sizes)
    count = min(pass_size, big)
    outcome.rows.append(pass_row(big, count))
    outcome.rows.append(restart_row(big, timeout))
    row = find_row(outcome.rows, big, RELOAD)
    outcome.targets.append(Target(
        f'reloadConfig() at N={big}: >= {SPEEDUP_TARGET}x faster than plain '
        'supervisord', f'{row.ratio:.1f}x', row.ratio >= SPEEDUP_TARGET))
    smaller = [n for n in sizes if n * 10 == big]
    if smaller:
        growth = row.plugin / find_row(outcome.rows, smaller[0], RELOAD).plugin
        outcome.targets.append(Target(
            f'reloadConfig(): time at N={big} <= {GROWTH_TARGET}x time at '
            f'N={smaller[0]}', f'{growth:.1f}x', growth <= GROWTH_TARGET))
    outcome.notes.append(
        "supervisord's first read at start is plain (the plugin is not "
        'imported yet); the linear parser serves every later read '
        '(reloadConfig, update, reread, reload)')
    return outcome
