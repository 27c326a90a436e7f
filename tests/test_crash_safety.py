"""Crash safety: supervisord killed or reloaded at any moment loses nothing.

A seeded random sequence of startPartition, stopPartition,
destroyPartition, writeGroupConfig and removeGroupConfig calls (those
that have it with ``wait=False`` one time in three) runs against a real
supervisord, which another thread kills with SIGKILL or reloads with
``supervisorctl reload`` at a random moment, often while a call is in
flight. After a kill, as a node's reboot would, the orphaned children are
killed and supervisord is started again (offline, no listener); after
either, ``slapos.startAllPartitions()`` is called, as the listener does
offline. After every restart:

- supervisord starts: no half-written file or stray temporary file breaks
  its configuration;
- the include directory holds exactly the files the answered calls left
  (an answered ``wait=False`` stop or destroy included: it is final),
  each complete (``P.conf`` equal to what ``generate_partition_conf``
  writes, manager files equal to the text written); the partition of the
  call in flight at the kill may be found as before or after that call
  (for destroyPartition, at any point of its ordered file removals);
- the processes running are exactly those of these files, and no process
  of a partition runs twice (checked on the real OS processes, in /proc).

Rounds: ``SUPERVISOR_SLAPOS_CRASH_ROUNDS`` (default sized for CI); seed:
``SUPERVISOR_SLAPOS_CRASH_SEED`` (default random, printed).
"""
import collections
import ctypes
import http.client
import os
import random
import shutil
import signal
import subprocess
import threading
import xmlrpc.client
from dataclasses import dataclass

import pytest
from supervisor.xmlrpc import Faults as SupervisorFaults

from supervisor_slapos.partitionconf import generate_partition_conf
from tests.node import SupervisorNode, has_execed
from tests.polling import wait_until

ROUNDS = int(os.environ.get('SUPERVISOR_SLAPOS_CRASH_ROUNDS', '40'))
SEED = int(os.environ.get('SUPERVISOR_SLAPOS_CRASH_SEED')
           or random.SystemRandom().randrange(2 ** 32))
# The killer (or reloader) is armed right before call number 0 to
# MAX_CALLS_BEFORE_KILL of a round and fires 0 to MAX_KILL_DELAY seconds
# (uniform) later; a reload then takes supervisorctl's own start-up time.
MAX_CALLS_BEFORE_KILL = 4
MAX_KILL_DELAY = 0.012
DISRUPTIONS = ('kill', 'reload')
NO_WAIT_CHANCE = 1 / 3
WAITING_OPERATIONS = ('startPartition', 'stopPartition', 'destroyPartition',
                      'removeGroupConfig')

PARTITIONS = ('slappart0', 'slappart1', 'slappart2', 'slappart3')
SUFFIXES = ('a', 'b')
OPERATIONS = (('startPartition', 3), ('stopPartition', 2),
              ('destroyPartition', 1), ('writeGroupConfig', 3),
              ('removeGroupConfig', 1))
# Anything that means "supervisord went away under this call".
CONNECTION_ERRORS = (OSError, http.client.HTTPException,
                     xmlrpc.client.ProtocolError)
PR_SET_CHILD_SUBREAPER = 36
SLEEP = shutil.which('sleep')

MANAGER_TEMPLATE = """\
[program:{group}]
command={sleep} 3600
startsecs=0
stopwaitsecs=5
environment=CRASH_VERSION="{version}"
"""


# the model: what the completed calls left

@dataclass(frozen=True)
class PartitionState:
    started: bool = False
    managers: tuple = ()  # sorted ((suffix, text), ...)

    def with_manager(self, sfx, text):
        managers = dict(self.managers)
        if text is None:
            managers.pop(sfx, None)
        else:
            managers[sfx] = text
        return PartitionState(self.started, tuple(sorted(managers.items())))


def after(state, pid, operation, args):
    """The state of partition ``pid`` once ``operation`` has completed."""
    if operation == 'startPartition':
        return PartitionState(True, state.managers)
    if operation == 'stopPartition':
        return PartitionState(False, state.managers)
    if operation == 'destroyPartition':
        return PartitionState()
    if operation == 'writeGroupConfig':
        return state.with_manager(args[0], args[1])
    if operation == 'removeGroupConfig':
        return state.with_manager(args[0], None)
    raise AssertionError(operation)


def possible_states(state, pid, operation, args):
    """What a call killed in flight may leave: before, after, and for
    destroyPartition every step of its removals (managers in name order,
    P.conf last)."""
    states = [state, after(state, pid, operation, args)]
    if operation == 'destroyPartition':
        current = state
        for sfx, _ in state.managers:
            current = current.with_manager(sfx, None)
            states.append(current)
    return states


def read_state(node, pid):
    """The state the include directory shows for ``pid``."""
    started = node.include_file(f'{pid}.conf').exists()
    paths = {sfx: node.include_file(f'{pid}-{sfx}.conf') for sfx in SUFFIXES}
    managers = tuple(sorted((sfx, path.read_text())
                            for sfx, path in paths.items() if path.exists()))
    return PartitionState(started, managers)


# processes

def proc_stat(pid):
    """(state, session id) of a process, from /proc/PID/stat."""
    with open(f'/proc/{pid}/stat', 'rb') as f:
        fields = f.read().rsplit(b')', 1)[1].split()
    return fields[0].decode(), int(fields[3])


def node_os_processes(node, session):
    """{pid: (group, process name) or ('?', command line)} of the live OS
    processes of ``node``: those with its server URL in their environment
    (every supervisord child after exec) or in supervisord's session
    ``session`` (children forked but not exec'd yet); supervisord itself
    excluded."""
    url = f'unix://{node.socket}'.encode()
    found = {}
    for entry in os.scandir('/proc'):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == session:
            continue
        try:
            state, sid = proc_stat(pid)
            with open(f'/proc/{pid}/environ', 'rb') as f:
                environ = f.read()
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                cmdline = f.read()
        except OSError:
            continue
        if state in ('Z', 'X'):
            continue
        env = dict(item.split(b'=', 1) for item in environ.split(b'\0')
                   if b'=' in item)
        if env.get(b'SUPERVISOR_SERVER_URL') == url:
            found[pid] = (env.get(b'SUPERVISOR_GROUP_NAME', b'').decode(),
                          env.get(b'SUPERVISOR_PROCESS_NAME', b'').decode())
        elif sid == session:
            found[pid] = ('?', cmdline.replace(b'\0', b' ').decode())
    return found


def kill_orphans(node, session):
    """Kill what a dead supervisord left running, as a reboot would, and
    reap what became our children (we are their subreaper)."""
    def all_gone():
        orphans = node_os_processes(node, session)
        for pid in orphans:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in orphans:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        return not orphans
    wait_until(all_gone, 30, what='orphans killed')


@pytest.fixture
def subreaper():
    """Make this process the subreaper of supervisord's orphans, so that
    they can be reaped here (PID 1 of a container may never reap)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def expected_processes(model, layouts):
    """{(group, process name)} that the model says must run."""
    expected = set()
    for pid, state in model.items():
        if state.started:
            run, service = layouts[pid]
            expected.update((pid, name) for name in run)
            expected.update((pid, f'{name}-on-watch') for name in service)
        for sfx, _ in state.managers:
            expected.add((f'{pid}-{sfx}', f'{pid}-{sfx}'))
    return expected


def running_processes(node):
    """{(group, name): pid} of supervisord's processes, or None when some
    are still between states (or have not exec'd their command yet)."""
    running = {}
    for info in node.rpc.supervisor.getAllProcessInfo():
        if info['group'] not in PARTITIONS and '-' not in info['group']:
            continue
        if info['statename'] in ('STARTING', 'STOPPING', 'BACKOFF'):
            return None
        if info['statename'] == 'RUNNING':
            if not has_execed(info['pid']):
                return None
            running[info['group'], info['name']] = info['pid']
    return running


def settle(node, expected, what, give_up=lambda: False):
    """Wait until exactly ``expected`` runs (or ``give_up()``); return
    {(group, name): pid}."""
    seen = {'running': None}

    def settled():
        if give_up():
            return True
        seen['running'] = running_processes(node)
        return seen['running'] is not None and set(seen['running']) == expected
    try:
        wait_until(settled, 30, what=what)
    except AssertionError:
        raise AssertionError(f'{what}: expected {sorted(expected)}, running '
                             f'{sorted(seen["running"] or ())}') from None
    return seen['running']


def check_os_processes(node, session, running, number):
    """Each running process exists exactly once among the OS processes,
    with the pid supervisord knows, and nothing else of the node runs. A
    process caught inside execve shows no command line nor environment for
    a moment: poll until the picture is stable."""
    seen = {}

    def matches():
        seen['os'] = node_os_processes(node, session)
        return (sorted(seen['os'].values()) == sorted(running)
                and set(seen['os']) == set(running.values()))
    try:
        wait_until(matches, 10, what='OS processes')
    except AssertionError:
        raise AssertionError(
            f'round {number}: OS processes {sorted(seen["os"].items())} != '
            f'supervisord\'s {sorted(running.items())}') from None


# the test

class Disruption:
    """A SIGKILL of supervisord or a ``supervisorctl reload``, ``delay``
    seconds after it is armed, once, before call number ``at``. The
    reload is typed into a supervisorctl started beforehand, so that it
    lands within milliseconds, as the kill does."""

    def __init__(self, node, kind, delay, at):
        self.kind = kind
        self.at = at
        self.armed = False
        self.fired = threading.Event()
        self._ctl = None
        if kind == 'reload':
            self._ctl = subprocess.Popen(
                node.ctl_command(), stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._timer = threading.Timer(delay, self._fire, (node,))

    def _fire(self, node):
        try:
            if self._ctl is None:
                node.process.send_signal(signal.SIGKILL)
            else:
                self._ctl.communicate(b'reload\ny\n', timeout=120)
        finally:
            self.fired.set()

    def arm(self):
        self.armed = True
        self._timer.start()

    def join(self):
        if self.armed:
            self._timer.join()
        elif self._ctl is not None:
            self._ctl.kill()
            self._ctl.wait()


class Round:
    """What happened to the calls of one round."""

    def __init__(self):
        self.completed = 0
        self.no_wait = 0  # answered calls made with wait=False
        self.in_flight = None  # (pid, operation, args, state before)


def random_call(rng, model, versions):
    operation = rng.choices([o for o, _ in OPERATIONS],
                            [w for _, w in OPERATIONS])[0]
    pid = rng.choice(PARTITIONS)
    if operation == 'writeGroupConfig':
        sfx = rng.choice(SUFFIXES)
        versions[pid, sfx] = versions.get((pid, sfx), 0) + rng.randint(0, 1)
        text = MANAGER_TEMPLATE.format(group=f'{pid}-{sfx}', sleep=SLEEP,
                                       version=versions[pid, sfx])
        return pid, operation, (sfx, text)
    args = (rng.choice(SUFFIXES),) if operation == 'removeGroupConfig' else ()
    if operation in WAITING_OPERATIONS:
        args += (rng.random() >= NO_WAIT_CHANCE,)
    return pid, operation, args


def gone(error):
    """Whether ``error`` means the call met the kill or the reload."""
    return (isinstance(error, CONNECTION_ERRORS)
            or (isinstance(error, xmlrpc.client.Fault)
                and error.faultCode == SupervisorFaults.SHUTDOWN_STATE))


def run_calls(node, rng, model, layouts, versions, record, disruption):
    """Call at random until the disruption, armed right before the call
    numbered ``disruption.at``, has hit supervisord."""
    slapos = node.rpc.slapos
    number = 0
    while not disruption.fired.is_set():
        pid, operation, args = random_call(rng, model, versions)
        record.in_flight = (pid, operation, args, model[pid])
        if number == disruption.at:
            disruption.arm()
        number += 1
        try:
            result = getattr(slapos, operation)(pid, *args)
        except Exception as error:
            if gone(error):
                return
            raise
        assert result is True or isinstance(result, list), result
        model[pid] = after(model[pid], pid, operation, args)
        record.in_flight = None
        record.completed += 1
        record.no_wait += args[-1:] == (False,)
        try:
            settle(node, expected_processes(model, layouts),
                   f'after {operation}({pid!r}, ...)',
                   give_up=disruption.fired.is_set)
        except Exception as error:
            if gone(error):
                return
            raise


def check_after_restart(node, model, layouts, in_flight):
    """Compare the include directory with the model; adopt the in-flight
    partition's outcome when it is one the call may leave. Return where
    the call in flight landed: 'before', 'after', 'between' or None."""
    landed = None
    for pid in PARTITIONS:
        observed = read_state(node, pid)
        if in_flight is not None and in_flight[0] == pid:
            _, operation, args, before = in_flight
            allowed = possible_states(before, pid, operation, args)
            assert observed in allowed, (
                f'{pid} after a kill during {operation}{args}: '
                f'{observed} not in {allowed}')
            landed = ('after' if observed == allowed[1] else
                      'before' if observed == allowed[0] else 'between')
            model[pid] = observed
        else:
            assert observed == model[pid], (pid, observed, model[pid])
        if observed.started:
            assert node.include_file(f'{pid}.conf').read_text() == \
                generate_partition_conf(str(node.instance_root), pid), pid
    allowed_files = {f'{pid}.conf' for pid, s in model.items() if s.started}
    allowed_files |= {f'{pid}-{sfx}.conf' for pid, s in model.items()
                      for sfx, _ in s.managers}
    assert set(node.include_listing()) == allowed_files
    stray = [p for p in (node.root / 'etc').rglob('*')
             if p.name.endswith('.tmp')]
    assert not stray, stray
    return landed


def stop_dead(node):
    """Make sure supervisord is dead (killed, or killed now after a
    failure: its children survive, as in a crash) and forget it."""
    node.kill()
    node.process.stderr.close()
    node.process = None


def test_sigkill_or_reload_at_random_moments_loses_nothing(tmp_path, subreaper):
    print(f'crash safety: {ROUNDS} rounds, seed {SEED} '
          f'(SUPERVISOR_SLAPOS_CRASH_SEED={SEED} to replay)')
    rng = random.Random(SEED)
    node = SupervisorNode(tmp_path / 'node')
    layouts = {}
    for pid in PARTITIONS:
        run = [f'r{i}' for i in range(rng.randint(0, 2))]
        service = [f's{i}' for i in range(rng.randint(0, 1))]
        node.make_partition(pid, run=run, service=service)
        layouts[pid] = (run, service)
    model = {pid: PartitionState() for pid in PARTITIONS}
    versions = {}
    stats = collections.Counter()
    session = None
    in_flight = None
    try:
        for number in range(ROUNDS):
            # the node (re)boots or has reloaded: then the offline start
            if node.process is None:
                node.start()
                session = node.process.pid
            landed = check_after_restart(node, model, layouts, in_flight)
            if landed:
                stats[f'call in flight landed {landed}'] += 1
            results = node.rpc.slapos.startAllPartitions()
            assert all(r['status'] == 80 for r in results), results
            running = settle(node, expected_processes(model, layouts),
                             f'round {number}: after startAllPartitions')
            check_os_processes(node, session, running, number)

            # calls until a SIGKILL or a reload from another thread,
            # armed right before a random call, fired a few milliseconds
            # later: inside that call, or a moment after it
            record = Round()
            disruption = Disruption(
                node, rng.choice(DISRUPTIONS), rng.uniform(0, MAX_KILL_DELAY),
                rng.randint(0, MAX_CALLS_BEFORE_KILL))
            try:
                run_calls(node, rng, model, layouts, versions, record,
                          disruption)
            finally:
                disruption.join()
                if disruption.kind == 'kill' or not disruption.armed:
                    stop_dead(node)
            if node.process is None:
                kill_orphans(node, session)
            else:
                # reloaded, the same supervisord: a TERM lost before an
                # exec makes its stop wait stopwaitsecs (60 s), once
                node.wait_running(timeout=120)
            in_flight = record.in_flight
            stats['calls'] += record.completed
            stats['calls with wait=False'] += record.no_wait
            stats[f'{disruption.kind} in a call' if in_flight
                  else f'{disruption.kind} between calls'] += 1
        if node.process is None:
            node.start()
            session = node.process.pid
        check_after_restart(node, model, layouts, in_flight)
        print(f'crash safety: {ROUNDS} rounds, seed {SEED}, 0 failures; '
              f'{dict(sorted(stats.items()))}')
    except BaseException:
        print(f'crash safety FAILED (seed {SEED}):\n{node.log_tail(60)}')
        raise
    finally:
        if node.process is not None and node.process.poll() is None:
            node.process.kill()
            node.process.wait()
        if session is not None:
            kill_orphans(node, session)
