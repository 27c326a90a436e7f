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
(``SUPERVISOR_SLAPOS_STACK``, or ``python -m bench --stack``).

Measured: the time from +0 s to every process of every started partition
RUNNING (supervisord polled over its socket every 0.1 s; also, to see
where the time goes, when supervisord first answered and when the first
and the last of those processes were forked), with the master
up, refusing connections (nothing listening on its port), and accepting
connections without ever answering (slapgrid's own timeout, 60 s a
request, then applies). Both sides on the same node in the same run; each
reboot lasts until the cron run has ended, and the stopped partition's
processes must never run meanwhile.
"""
import contextlib
import os
import subprocess
import time
import xmlrpc.client
from dataclasses import dataclass

from bench.common import Outcome, Row, Target, find_row
from testbed.cron import cron_limits
from testbed.proc import process_start_time
from testbed.slapgrid_node import fresh_node

NAME = 'reboot'
UP, REFUSING, HANGING = 'up', 'refusing', 'hanging'
CONDITIONS = (UP, REFUSING, HANGING)
CONDITION_TEXT = {UP: 'master up', REFUSING: 'master refusing',
                  HANGING: 'master not answering'}
SLAPGRID, PLUGIN = 'slapgrid alone', 'plugin'
RUN_ENTRIES = ('web', 'worker')
TARGET_SECONDS = 5.0
POLL_INTERVAL = 0.1
CRON_DELAY = float(os.environ.get('BENCH_REBOOT_CRON_DELAY', '30'))
BUILDOUT_SECONDS = float(os.environ.get('BENCH_REBOOT_BUILDOUT_SECONDS', '2'))
# slapgrid against a master that never answers: two requests of 60 s
SLAPGRID_HANG = 150
# a process of the stopped partition in one of these states was revived
ALIVE_STATES = {'STARTING', 'RUNNING', 'BACKOFF', 'STOPPING'}


def metric(condition, n):
    return (f'reboot to all RUNNING, {CONDITION_TEXT[condition]} '
            f'({n} partitions)')


@contextlib.contextmanager
def reboot_node(n, buildout_seconds):
    """A slapgrid node of ``n`` started partitions and one stopped, all
    deployed by slapgrid; yields ``(node, started, stopped)``."""
    partitions = tuple(f'slappart{i}' for i in range(n + 1))
    # no firewall/dbus: here they would respawn without end (no
    # /opt/slapos), a load no real node has
    with fresh_node(partitions=partitions, address_prefix='127.0.0.',
                    node_programs=False) as node:
        node.prepare()
        node.set_buildout(0, RUN_ENTRIES)  # a quick first deployment
        answers = [node.request('started', title=f'inst{i}')
                   for i in range(n + 1)]
        node.instance()
        stopped = answers[-1]['compute_partition_id']
        node.request('stopped', title=f'inst{n}')
        node.instance()
        node.set_buildout(buildout_seconds, RUN_ENTRIES)
        started = sorted(a['compute_partition_id'] for a in answers[:-1])
        yield node, started, stopped


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
        forks = [process_start_time(info['pid']) - since for info in infos
                 if info['group'] in started]
    except OSError:
        return None, None
    return min(forks), max(forks)


def revived(infos, stopped):
    return {f"{info['group']}:{info['name']}" for info in infos
            if (info['group'] == stopped
                or info['group'].startswith(stopped + '-'))
            and info['statename'] in ALIVE_STATES}


def reboot(node, side, started, stopped, cron_delay, timeout, log):
    """Kill the node, boot it as ``side`` does; returns a ``Boot``."""
    node.kill()
    booted = time.monotonic()
    booted_since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    node.remove_timestamps()
    entry = node.start_boot_entry(log) if side == PLUGIN else None
    cron, seconds, answering, seen = None, None, None, set()
    forks = None, None
    deadline = booted + timeout
    try:
        while True:
            if cron is None and time.monotonic() - booted >= cron_delay:
                cron = subprocess.Popen(
                    node.slapos_command('node', 'instance', '--now'),
                    stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, preexec_fn=cron_limits)
            infos = process_infos(node)
            if infos is not None:
                if answering is None:
                    answering = time.monotonic() - booted
                if seconds is None and all_running(infos, started):
                    seconds = time.monotonic() - booted
                    forks = fork_times(infos, set(started),
                                       booted_since_boot)
                seen |= revived(infos, stopped)
            if (seconds is not None and cron is not None
                    and cron.poll() is not None
                    and (entry is None or entry.poll() is not None)):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_INTERVAL)
    finally:
        # None: not run, or still running (then killed)
        statuses = [None if process is None else process.poll()
                    for process in (cron, entry)]
        for process in (cron, entry):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(30)
    return Boot(seconds, answering, *forks, seen, *statuses)


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


def side_setup(node, side):
    """Install (plugin) or remove (slapgrid alone) the plugin's files;
    they take effect at the next supervisord start: the reboot."""
    if side == PLUGIN:
        node.setup()
    else:
        node.setup('--remove')


def measure_condition(node, started, stopped, condition, cron_delay,
                      timeout):
    """Reboot the node under ``condition``, slapgrid alone then with the
    plugin; returns ``({side: Boot}, [what went wrong])``."""
    boots, failed = {}, []
    log_path = node.root / 'boot.log'
    for side in (SLAPGRID, PLUGIN):
        side_setup(node, side)
        set_master(node.master, condition)
        try:
            with open(log_path, 'ab') as log:
                boot = boots[side] = reboot(node, side, started, stopped,
                                            cron_delay, timeout, log)
        finally:
            set_master(node.master, UP)
        if boot.seconds is None:
            failed.append(f'{side}: not all RUNNING within {timeout:.0f} s')
        if boot.cron_status is None:
            failed.append(f'{side}: the cron run did not end within '
                          f'{timeout:.0f} s')
        if side == PLUGIN and boot.entry_status != 0:
            failed.append(f'{side}: the boot entry failed (exit status '
                          f'{boot.entry_status})')
    return boots, failed


def seconds_text(value):
    return '-' if value is None else f'{value:.1f} s'


def steps_text(boot):
    return ', '.join(seconds_text(value) for value in (
        boot.answering, boot.first_fork, boot.last_fork))


def stopped_text(boots):
    revived = [f'{side}: {name}' for side, boot in boots.items()
               for name in sorted(boot.revived)]
    return 'revived: ' + ', '.join(revived) if revived else 'stayed stopped'


def run(sizes, conditions=CONDITIONS, cron_delay=None,
        buildout_seconds=None):
    cron_delay = CRON_DELAY if cron_delay is None else cron_delay
    buildout_seconds = (BUILDOUT_SECONDS if buildout_seconds is None
                        else buildout_seconds)
    outcome = Outcome(NAME)
    table = ['| master | partitions | slapgrid alone | plugin | ratio | '
             'slapgrid alone: supervisord answering, first, last service '
             'forked | plugin: the same | stopped partition |',
             '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |']
    revivals = []
    for n in sizes:
        timeout = (cron_delay + (n + 1) * (buildout_seconds + 5)
                   + SLAPGRID_HANG + 120)
        with reboot_node(n, buildout_seconds) as (node, started, stopped):
            for condition in conditions:
                boots, failed = measure_condition(
                    node, started, stopped, condition, cron_delay, timeout)
                outcome.notes.extend(f'{metric(condition, n)}: {text}'
                                     for text in failed)
                row = Row(
                    NAME, n, metric(condition, n),
                    milliseconds(boots[PLUGIN].seconds),
                    milliseconds(boots[SLAPGRID].seconds),
                    kind='speedup',
                    note=f'baseline: slapgrid alone (node boot, cron run at '
                    f'+{cron_delay:g} s); buildout {buildout_seconds:g} s')
                outcome.rows.append(row)
                ratio = '-' if row.ratio is None else f'{row.ratio:.1f}x'
                if any(boot.revived for boot in boots.values()):
                    revivals.append(f'{n} partitions, '
                                    f'{CONDITION_TEXT[condition]}: '
                                    f'{stopped_text(boots)}')
                table.append(
                    f'| {CONDITION_TEXT[condition]} | {n} | '
                    f'{seconds_text(boots[SLAPGRID].seconds)} | '
                    f'{seconds_text(boots[PLUGIN].seconds)} | {ratio} | '
                    f'{steps_text(boots[SLAPGRID])} | '
                    f'{steps_text(boots[PLUGIN])} | '
                    f'{stopped_text(boots)} |')
    big = max(sizes)
    for condition in conditions:
        row = find_row(outcome.rows, big, metric(condition, big))
        plugin = None if row.plugin is None else row.plugin / 1000
        ratio = '' if row.ratio is None else f', {row.ratio:.1f}x faster'
        outcome.targets.append(Target(
            f'reboot of {big} partitions, {CONDITION_TEXT[condition]}: every '
            f'started service RUNNING within {TARGET_SECONDS:g} s of the '
            f'boot entry', f'{seconds_text(plugin)}{ratio}',
            plugin is not None and plugin <= TARGET_SECONDS))
    outcome.targets.append(Target(
        'reboot: the stopped partition stays stopped',
        '; '.join(revivals) or 'stayed stopped', not revivals))
    outcome.sections.append(('Reboot', '\n'.join(table) + (
        f'\n\nSeconds from the reboot (SIGKILL of supervisord and every '
        f'process it started) to every process of every started partition '
        f'RUNNING. Slapgrid alone: `node boot`\'s timestamp removal, then '
        f'cron\'s `slapos node instance` at +{cron_delay:g} s; plugin: the '
        f'same, and its boot entry at +0 s. Each partition\'s buildout '
        f'takes {buildout_seconds:g} s; the partitions\' addresses are '
        f'127.0.0.x (the host has them); no firewall or dbus program.')))
    return outcome


def milliseconds(seconds):
    return None if seconds is None else seconds * 1000
