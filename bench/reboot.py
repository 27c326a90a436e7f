"""Reboot: after a power cut, how long until every started partition runs.

A real slapgrid node (testbed/slapgrid_node.py: slapos.core's own
supervisord, real ``slapos node instance`` runs against a ``slapos proxy``
master) holds N started partitions (two services each) and one stopped
(started once, then stopped), of a software whose instance buildout takes
``BENCH_REBOOT_BUILDOUT_SECONDS`` (default 2 s; real ones take longer).
The partitions' addresses are 127.0.0.x: the host has them, so nothing
waits for them. slapos.cfg has no ``[firewall]`` (no firewall or dbus
program: slapgrid's run in ``/opt/slapos``, which a test host lacks, and
would respawn without end).

A reboot is a SIGKILL of supervisord and of every process it started
(``SlapgridNode.kill``), then, from +0 s, what the node does at boot:

- slapgrid alone: ``slapos node boot``'s timestamp removal at +0 s (so
  that slapgrid builds every partition out again), then cron's
  ``slapos node instance`` at +``BENCH_REBOOT_CRON_DELAY`` s (default 30:
  the mean wait for an every-minute cron run after a boot);
- plugin (``supervisor-slapos-setup --cfg F``): the same, and its boot
  entry at +0 s (``slapos node supervisord --cfg F``, run with an empty
  environment, as cron runs it).

Both run as cron runs them, with cron's soft limit of 1024 open files
(``testbed.cron.cron_limits``), on the run's stack
(``SUPERVISOR_SLAPOS_STACK``, or ``python -m bench --stacks``).

A big node (``--reboot-big-sizes``, default 1000 partitions), with the
master refusing only: its partitions deployed as slapgrid leaves them
(testbed's ``deploy_locally``: their ``etc/run`` and ``P.conf``, no
buildout: slapgrid's would take an hour), no stopped partition. Its
baseline is slapgrid's offline pass (the cron run finds the master
unreachable and calls ``startAllProcesses``), given ``minfds = 8192`` by
an include file (``[supervisord]``): under cron's limit, slapgrid's
supervisord leaves every process past about 340 FATAL and never gets
there. The plugin's side has no such file (it raises the limit itself).
When every process has settled (none STARTING or BACKOFF) with some
FATAL after the cron run and the boot entry ended, the reboot ends there
(not all RUNNING; the FATAL count is in the table).

Measured: the time from +0 s to every process of every started partition
RUNNING (supervisord polled over its socket every 0.1 s; also, to see
where the time goes, when supervisord was forked, when it first answered
and when the first and the last of those processes were forked), with
the master
up, refusing connections (nothing listening on its port), and accepting
connections without ever answering (slapgrid's own timeout, 60 s a
request, then applies). Both sides on the same node in the same run; each
reboot lasts until the cron run has ended, and the stopped partition's
processes must never run meanwhile.
"""

import contextlib
import os
import statistics
import subprocess
import time
import xmlrpc.client
from dataclasses import dataclass

from bench.common import Outcome, Row, Target, find_row
from testbed import stacks
from testbed.cron import cron_limits
from testbed.proc import process_start_time
from testbed.slapgrid_node import fresh_node

NAME = 'reboot'
UP, REFUSING, HANGING = 'up', 'refusing', 'hanging'
CONDITIONS = (UP, REFUSING, HANGING)
CONDITION_TEXT = {
    UP: 'master up',
    REFUSING: 'master refusing',
    HANGING: 'master not answering',
}
SLAPGRID, PLUGIN = 'slapgrid alone', 'plugin'
RUN_ENTRIES = ('web', 'worker')
# issue 24: at 50 partitions, every service within 2 s of the boot entry
TARGET_SECONDS = 2.0
TARGET_SIZE = 50
# issue 28: the plugin's side within 1 s at 3 and 50, every condition
INSTANT_SECONDS = 1.0
INSTANT_SIZES = (3, 50)
# the big node's baseline: slapgrid's supervisord able to hold every process
BASELINE_MINFDS = 8192
MINFDS_FILE = 'bench-minfds.conf'
SETTLING = {'STARTING', 'BACKOFF'}
POLL_INTERVAL = 0.1
CRON_DELAY = float(os.environ.get('BENCH_REBOOT_CRON_DELAY', '30'))
BUILDOUT_SECONDS = float(os.environ.get('BENCH_REBOOT_BUILDOUT_SECONDS', '2'))
# slapgrid against a master that never answers: two requests of 60 s
SLAPGRID_HANG = 150
# a process of the stopped partition in one of these states was revived
ALIVE_STATES = {'STARTING', 'RUNNING', 'BACKOFF', 'STOPPING'}


def metric(condition, n):
    return (
        f'reboot to all RUNNING, {CONDITION_TEXT[condition]} ({n} partitions)'
    )


@contextlib.contextmanager
def reboot_node(n, buildout_seconds):
    """A slapgrid node of ``n`` started partitions and one stopped, all
    deployed by slapgrid; yields ``(node, started, stopped)``."""
    partitions = tuple(f'slappart{i}' for i in range(n + 1))
    # no firewall/dbus: here they would respawn without end (no
    # /opt/slapos), a load no real node has
    with fresh_node(
        partitions=partitions, address_prefix='127.0.0.', node_programs=False
    ) as node:
        node.prepare()
        node.set_buildout(0, RUN_ENTRIES)  # a quick first deployment
        answers = [
            node.request('started', title=f'inst{i}') for i in range(n + 1)
        ]
        node.instance()
        stopped = answers[-1]['compute_partition_id']
        node.request('stopped', title=f'inst{n}')
        node.instance()
        node.set_buildout(buildout_seconds, RUN_ENTRIES)
        started = sorted(a['compute_partition_id'] for a in answers[:-1])
        yield node, started, stopped


@contextlib.contextmanager
def big_node(n):
    """A slapgrid node of ``n`` started partitions deployed without
    slapgrid (testbed's ``deploy_locally``), no stopped one; yields
    ``(node, started, None)``."""
    partitions = tuple(f'slappart{i}' for i in range(n))
    with fresh_node(
        partitions=partitions, address_prefix='127.1.', node_programs=False
    ) as node:
        node.prepare()
        node.deploy_locally(partitions, RUN_ENTRIES)
        yield node, list(partitions), None


def set_master(master, condition):
    front = master.front
    if condition == UP:
        front.reopen()
    elif condition == REFUSING:
        front.refuse()
    else:
        front.hang()


def process_infos(node):
    """supervisord's processes; None while it does not answer."""
    try:
        return node.rpc.supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return None  # not started yet, or a stale socket file


def all_running(infos, started):
    running = {}
    for info in infos:
        if info['statename'] == 'RUNNING':
            running.setdefault(info['group'], set()).add(info['name'])
    return all(running.get(pid) == set(RUN_ENTRIES) for pid in started)


def fork_times(infos, started, since):
    """(first, last) fork of the started partitions' processes, in
    seconds after ``since`` (CLOCK_BOOTTIME, as /proc counts); (None,
    None) if one is gone already."""
    try:
        forks = [
            process_start_time(info['pid']) - since
            for info in infos
            if info['group'] in started
        ]
    except OSError:
        return None, None
    return min(forks), max(forks)


def settled_with_fatal(infos, started):
    """How many of the started partitions' processes are FATAL, once none
    of them is still starting (else 0)."""
    states = [info['statename'] for info in infos if info['group'] in started]
    if SETTLING & set(states):
        return 0
    return states.count('FATAL')


def revived(infos, stopped):
    if stopped is None:
        return set()
    return {
        f"{info['group']}:{info['name']}"
        for info in infos
        if (
            info['group'] == stopped or info['group'].startswith(stopped + '-')
        )
        and info['statename'] in ALIVE_STATES
    }


def reboot(node, side, started, stopped, cron_delay, timeout, log):
    """Kill the node, boot it as ``side`` does; returns a ``Boot``."""
    node.kill()
    booted = time.monotonic()
    booted_since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    node.remove_timestamps()
    entry = node.start_boot_entry(log) if side == PLUGIN else None
    cron, seconds, answering, seen = None, None, None, set()
    forks, forked, fatal = (None, None), None, 0
    started_set = set(started)
    deadline = booted + timeout
    try:
        while True:
            if cron is None and time.monotonic() - booted >= cron_delay:
                cron = subprocess.Popen(
                    node.slapos_command('node', 'instance', '--now'),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=cron_limits,
                )
            infos = process_infos(node)
            if infos is not None:
                if answering is None:
                    answering = time.monotonic() - booted
                    forked = supervisord_fork(node, booted_since_boot)
                if seconds is None and all_running(infos, started):
                    seconds = time.monotonic() - booted
                    forks = fork_times(infos, started_set, booted_since_boot)
                seen |= revived(infos, stopped)
            ended = (
                cron is not None
                and cron.poll() is not None
                and (entry is None or entry.poll() is not None)
            )
            if ended and seconds is not None:
                break
            if ended and infos is not None:
                fatal = settled_with_fatal(infos, started_set)
                if fatal:
                    break
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_INTERVAL)
    finally:
        # None: not run, or still running (then killed)
        statuses = [
            None if process is None else process.poll()
            for process in (cron, entry)
        ]
        for process in (cron, entry):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(30)
    return Boot(seconds, answering, *forks, seen, *statuses, forked, fatal)


def supervisord_fork(node, since):
    """When the node's supervisord was forked, in seconds after ``since``
    (CLOCK_BOOTTIME); None if unknown."""
    try:
        return process_start_time(node.supervisord_pid()) - since
    except (OSError, ValueError):
        return None


@dataclass
class Boot:
    """One reboot: seconds from the boot to every started partition's
    processes RUNNING (seen by polling), to supervisord's first answer,
    to the first and the last fork of those processes (None: never); the
    stopped partition's processes seen running; the exit status of the
    cron run and of the boot entry (None: none, or it did not end)."""

    seconds: float
    answering: float
    first_fork: float
    last_fork: float
    revived: set
    cron_status: int
    entry_status: int
    # when supervisord (the last one, pidfile's) was forked; how many of
    # the started partitions' processes ended FATAL
    forked: float = None
    fatal: int = 0


def side_setup(node, side, minfds=False):
    """Install (plugin) or remove (slapgrid alone) the plugin's files;
    they take effect at the next supervisord start: the reboot. With
    ``minfds``, slapgrid alone gets ``minfds`` in an include file."""
    minfds_file = node.include_dir / MINFDS_FILE
    if side == PLUGIN:
        minfds_file.unlink(missing_ok=True)
        node.setup()
    else:
        node.setup('--remove')
        if minfds:
            minfds_file.write_text(
                f'[supervisord]\nminfds = {BASELINE_MINFDS}\n'
            )


def measure_condition(
    node, started, stopped, condition, cron_delay, timeout, minfds=False
):
    """Reboot the node under ``condition``, slapgrid alone then with the
    plugin; returns ``({side: Boot}, [what went wrong])``."""
    boots, failed = {}, []
    log_path = node.root / 'boot.log'
    for side in (SLAPGRID, PLUGIN):
        side_setup(node, side, minfds)
        set_master(node.master, condition)
        try:
            with open(log_path, 'ab') as log:
                boot = boots[side] = reboot(
                    node, side, started, stopped, cron_delay, timeout, log
                )
        finally:
            set_master(node.master, UP)
        if boot.fatal:
            failed.append(f'{side}: {boot.fatal} processes FATAL')
        elif boot.seconds is None:
            failed.append(f'{side}: not all RUNNING within {timeout:.0f} s')
        if boot.cron_status is None:
            failed.append(
                f'{side}: the cron run did not end within {timeout:.0f} s'
            )
        if side == PLUGIN and boot.entry_status != 0:
            failed.append(
                f'{side}: the boot entry failed (exit status '
                f'{boot.entry_status})'
            )
    return boots, failed


def seconds_text(value):
    return '-' if value is None else f'{value:.1f} s'


def steps_text(boot):
    text = ', '.join(
        seconds_text(value)
        for value in (
            boot.forked,
            boot.answering,
            boot.first_fork,
            boot.last_fork,
        )
    )
    return text + (f' ({boot.fatal} FATAL)' if boot.fatal else '')


def stopped_text(boots):
    revived = [
        f'{side}: {name}'
        for side, boot in boots.items()
        for name in sorted(boot.revived)
    ]
    return 'revived: ' + ', '.join(revived) if revived else 'stayed stopped'


# What the boot entry's launcher imports before supervisord's fork
# (supervisor_slapos.linearstart --slapos-cfg: the slapos script's own
# imports, slapgrid's supervisord.conf writer), then supervisord's own
# interpreter before its first loop turn; each timed in a fresh
# interpreter of the stack, after the previous ones (cumulative).
LAUNCHER_IMPORTS = (
    'slapos.cli.entry',
    'slapos.grid.svcbackend',
    'supervisor.supervisord',
    'supervisor_slapos.linearread',
)
_TIME_IMPORTS = """\
import sys, time
for name in sys.argv[1:]:
    begun = time.perf_counter()
    __import__(name)
    print(name, time.perf_counter() - begun)
"""
PROFILE_RUNS = 3


def launcher_profile(stack, runs=PROFILE_RUNS):
    """A note: the median time of the boot launcher's imports in
    ``stack``'s Python (a fresh interpreter each run; slapgrid's modules
    with the stack's eggs first, as the launcher runs them)."""
    times = {}
    for _ in range(runs):
        for first, second in ((0, 2), (2, 4)):
            result = subprocess.run(
                stack.code_command(
                    _TIME_IMPORTS, *LAUNCHER_IMPORTS[first:second]
                ),
                capture_output=True,
                text=True,
                timeout=120,
            )
            for line in result.stdout.splitlines():
                name, seconds = line.split()
                times.setdefault(name, []).append(float(seconds))
    parts = ', '.join(
        f'{name} {statistics.median(values):.2f} s'
        for name, values in times.items()
    )
    return (
        f'where the plugin\'s reboot time goes before supervisord '
        f'runs ({stack.name}): the boot launcher imports, each in a '
        f'fresh interpreter of the stack (median of {runs}): {parts}; '
        f'the first two in the launcher before supervisord\'s fork, the '
        f'last two in supervisord\'s interpreter, which the launcher '
        f'starts ahead so that they run beside the first two'
    )


TABLE_HEAD = [
    '| master | partitions | slapgrid alone | plugin | ratio | '
    'slapgrid alone: supervisord (its pidfile\'s process) forked, '
    'answering, first, last service forked | plugin: the same | '
    'stopped partition |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
]


def run(
    sizes,
    conditions=CONDITIONS,
    cron_delay=None,
    buildout_seconds=None,
    big_sizes=(),
):
    cron_delay = CRON_DELAY if cron_delay is None else cron_delay
    buildout_seconds = (
        BUILDOUT_SECONDS if buildout_seconds is None else buildout_seconds
    )
    outcome = Outcome(NAME)
    table = list(TABLE_HEAD)
    revivals = []
    # (n, conditions, the node, timeout, minfds for slapgrid alone, note)
    plans = [
        (
            n,
            conditions,
            lambda n=n: reboot_node(n, buildout_seconds),
            cron_delay
            + (n + 1) * (buildout_seconds + 5)
            + SLAPGRID_HANG
            + 120,
            False,
            f'baseline: slapgrid alone (node boot, cron run at '
            f'+{cron_delay:g} s); buildout {buildout_seconds:g} s',
        )
        for n in sizes
    ]
    plans += [
        (
            n,
            (REFUSING,),
            lambda n=n: big_node(n),
            cron_delay + 600 + n * 0.5,
            True,
            f'baseline: slapgrid\'s offline pass (node boot, cron run at '
            f'+{cron_delay:g} s), given minfds = {BASELINE_MINFDS}; '
            f'deployed without buildout',
        )
        for n in big_sizes
    ]
    for n, plan_conditions, make_node, timeout, minfds, note in plans:
        with make_node() as (node, started, stopped):
            for condition in plan_conditions:
                boots, failed = measure_condition(
                    node,
                    started,
                    stopped,
                    condition,
                    cron_delay,
                    timeout,
                    minfds,
                )
                outcome.notes.extend(
                    f'{metric(condition, n)}: {text}' for text in failed
                )
                row = Row(
                    NAME,
                    n,
                    metric(condition, n),
                    milliseconds(boots[PLUGIN].seconds),
                    milliseconds(boots[SLAPGRID].seconds),
                    kind='speedup',
                    note=note,
                )
                outcome.rows.append(row)
                ratio = '-' if row.ratio is None else f'{row.ratio:.1f}x'
                if any(boot.revived for boot in boots.values()):
                    revivals.append(
                        f'{n} partitions, '
                        f'{CONDITION_TEXT[condition]}: '
                        f'{stopped_text(boots)}'
                    )
                table.append(
                    f'| {CONDITION_TEXT[condition]} | {n} | '
                    f'{seconds_text(boots[SLAPGRID].seconds)} | '
                    f'{seconds_text(boots[PLUGIN].seconds)} | {ratio} | '
                    f'{steps_text(boots[SLAPGRID])} | '
                    f'{steps_text(boots[PLUGIN])} | '
                    f'{stopped_text(boots) if stopped else "(none)"} |'
                )
    targets(outcome, sizes, conditions, big_sizes, revivals)
    outcome.notes.append(launcher_profile(stacks.current()))
    outcome.sections.append(
        (
            'Reboot',
            '\n'.join(table)
            + (
                f'\n\nSeconds from the reboot (SIGKILL of supervisord and '
                f'every process it started) to every process of every '
                f'started partition RUNNING. Slapgrid alone: `node boot`\'s '
                f'timestamp removal, then cron\'s `slapos node instance` at '
                f'+{cron_delay:g} s; plugin: the same, and its boot entry at '
                f'+0 s. Each partition\'s buildout takes '
                f'{buildout_seconds:g} s; the partitions\' addresses are '
                f'127.0.0.x (the host has them); no firewall or dbus '
                f'program. At {", ".join(map(str, big_sizes)) or "-"} '
                f'partitions (127.1.x.y), deployed without buildout and no '
                f'stopped partition; slapgrid alone given minfds = '
                f'{BASELINE_MINFDS} (an include file). Under cron\'s soft '
                f'limit of 1024 open files.'
            ),
        )
    )
    return outcome


def targets(outcome, sizes, conditions, big_sizes, revivals):
    def plugin_seconds(n, condition):
        row = find_row(outcome.rows, n, metric(condition, n))
        seconds = None if row.plugin is None else row.plugin / 1000
        ratio = '' if row.ratio is None else f', {row.ratio:.1f}x faster'
        return seconds, f'{seconds_text(seconds)}{ratio}'

    for n, limit, what in (
        *(
            (n, TARGET_SECONDS, 'every started service')
            for n in sizes
            if n == TARGET_SIZE
        ),
        *(
            (n, INSTANT_SECONDS, 'plugin: every started service')
            for n in sizes
            if n in INSTANT_SIZES
        ),
    ):
        for condition in conditions:
            seconds, figure = plugin_seconds(n, condition)
            outcome.targets.append(
                Target(
                    f'reboot of {n} partitions, {CONDITION_TEXT[condition]}: '
                    f'{what} RUNNING within {limit:g} s of the boot entry',
                    figure,
                    seconds is not None and seconds <= limit,
                )
            )
    for n in big_sizes:
        seconds, figure = plugin_seconds(n, REFUSING)
        outcome.targets.append(
            Target(
                f'reboot of {n} partitions under cron\'s limit, '
                f'{CONDITION_TEXT[REFUSING]}: every started service RUNNING',
                figure,
                seconds is not None,
            )
        )
    outcome.targets.append(
        Target(
            'reboot: the stopped partition stays stopped',
            '; '.join(revivals) or 'stayed stopped',
            not revivals,
        )
    )


def milliseconds(seconds):
    return None if seconds is None else seconds * 1000
