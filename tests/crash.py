"""The model and the checks of the crash loops (test_crash_safety.py,
test_power_loss.py): what the answered calls of the ``slapos`` namespace
left in the include directory, the processes a node must run, and those a
killed supervisord left behind.
"""

import contextlib
import ctypes
import http.client
import os
import shutil
import signal
import threading
import xmlrpc.client
from dataclasses import dataclass

from supervisor.xmlrpc import Faults as SupervisorFaults

from supervisor_slapos.partitionconf import generate_partition_conf
from testbed.polling import wait_until
from testbed.proc import cmdline, environ, has_execed, kill, processes

NO_WAIT_CHANCE = 1 / 3
WAITING_OPERATIONS = (
    'startPartition',
    'stopPartition',
    'destroyPartition',
    'removeGroupConfig',
)
SUFFIXES = ('a', 'b')
OPERATIONS = (
    ('startPartition', 3),
    ('stopPartition', 2),
    ('destroyPartition', 1),
    ('writeGroupConfig', 3),
    ('removeGroupConfig', 1),
)
# Anything that means "supervisord went away under this call".
CONNECTION_ERRORS = (
    OSError,
    http.client.HTTPException,
    xmlrpc.client.ProtocolError,
)
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
    managers = tuple(
        sorted(
            (sfx, path.read_text())
            for sfx, path in paths.items()
            if path.exists()
        )
    )
    return PartitionState(started, managers)


# processes


def node_os_processes(node, session):
    """{pid: (group, process name) or ('?', command line)} of the live OS
    processes of ``node``: those with its server URL in their environment
    (every supervisord child after exec) or in supervisord's session
    ``session`` (children forked but not exec'd yet); supervisord itself
    excluded."""
    url = f'unix://{node.socket}'.encode()
    found = {}
    for pid, st in processes():
        if pid == session or st.state in ('Z', 'X'):
            continue
        try:
            env, command = environ(pid), cmdline(pid)
        except OSError:
            continue
        if env.get(b'SUPERVISOR_SERVER_URL') == url:
            found[pid] = (
                env.get(b'SUPERVISOR_GROUP_NAME', b'').decode(),
                env.get(b'SUPERVISOR_PROCESS_NAME', b'').decode(),
            )
        elif st.session == session:
            found[pid] = ('?', command.replace(b'\0', b' ').decode())
    return found


def kill_orphans(node, session):
    """Kill what a dead supervisord left running, as a reboot would, and
    reap what became our children (we are their subreaper)."""

    def all_gone():
        orphans = node_os_processes(node, session)
        for pid in orphans:
            kill(pid)
        for pid in orphans:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        return not orphans

    wait_until(all_gone, 30, what='orphans killed')


def child_subreaper():
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


def running_processes(node, partitions):
    """{(group, name): pid} of the processes of ``partitions`` (their own
    groups and managers'), or None when some are still between states (or
    have not exec'd their command yet)."""
    running = {}
    for info in node.rpc.supervisor.getAllProcessInfo():
        if info['group'].split('-')[0] not in partitions:
            continue
        if info['statename'] in ('STARTING', 'STOPPING', 'BACKOFF'):
            return None
        if info['statename'] == 'RUNNING':
            if not has_execed(info['pid']):
                return None
            running[info['group'], info['name']] = info['pid']
    return running


def settle(node, expected, what, partitions, give_up=lambda: False):
    """Wait until exactly ``expected`` runs (or ``give_up()``); return
    {(group, name): pid}."""
    seen = {'running': None}

    def settled():
        if give_up():
            return True
        seen['running'] = running_processes(node, partitions)
        return seen['running'] is not None and set(seen['running']) == expected

    try:
        wait_until(settled, 30, what=what)
    except AssertionError:
        raise AssertionError(
            f'{what}: expected {sorted(expected)}, running '
            f'{sorted(seen["running"] or ())}'
        ) from None
    return seen['running']


def check_os_processes(node, session, running, number, others=()):
    """Each running process exists exactly once among the OS processes,
    with the pid supervisord knows, and nothing else of the node runs. A
    process caught inside execve shows no command line nor environment for
    a moment: poll until the picture is stable. Processes of the groups
    ``others`` (such as the listener's) are left out."""
    seen = {}

    def matches():
        seen['os'] = {
            pid: name
            for pid, name in node_os_processes(node, session).items()
            if name[0] not in others
        }
        return sorted(seen['os'].values()) == sorted(running) and set(
            seen['os']
        ) == set(running.values())

    try:
        wait_until(matches, 10, what='OS processes')
    except AssertionError:
        raise AssertionError(
            f'round {number}: OS processes {sorted(seen["os"].items())} != '
            f'supervisord\'s {sorted(running.items())}'
        ) from None


# the calls


class Round:
    """What happened to the calls of one round."""

    def __init__(self):
        self.completed = 0
        self.no_wait = 0  # answered calls made with wait=False
        self.in_flight = None  # (pid, operation, args, state before)


def random_call(rng, partitions, versions):
    """A random call on one of ``partitions``: (pid, operation, args)."""
    operation = rng.choices(
        [o for o, _ in OPERATIONS], [w for _, w in OPERATIONS]
    )[0]
    pid = rng.choice(partitions)
    if operation == 'writeGroupConfig':
        sfx = rng.choice(SUFFIXES)
        versions[pid, sfx] = versions.get((pid, sfx), 0) + rng.randint(0, 1)
        text = MANAGER_TEMPLATE.format(
            group=f'{pid}-{sfx}', sleep=SLEEP, version=versions[pid, sfx]
        )
        return pid, operation, (sfx, text)
    args = (rng.choice(SUFFIXES),) if operation == 'removeGroupConfig' else ()
    if operation in WAITING_OPERATIONS:
        args += (rng.random() >= NO_WAIT_CHANCE,)
    return pid, operation, args


def gone(error):
    """Whether ``error`` means the call met the kill or the reload."""
    return isinstance(error, CONNECTION_ERRORS) or (
        isinstance(error, xmlrpc.client.Fault)
        and error.faultCode == SupervisorFaults.SHUTDOWN_STATE
    )


def run_calls(
    node, rng, model, layouts, versions, record, disruption, partitions=None
):
    """Call at random on ``partitions`` (default: all of ``model``) until
    the disruption, armed right before the call numbered
    ``disruption.at``, has hit supervisord."""
    partitions = sorted(model) if partitions is None else partitions
    number = 0
    while not disruption.fired.is_set():
        if number == disruption.at:
            disruption.arm()
        number += 1
        if not one_call(
            node, rng, model, layouts, versions, record, disruption, partitions
        ):
            return


def one_call(
    node, rng, model, layouts, versions, record, disruption, partitions
):
    """One random call on one of ``partitions``, and the wait for the
    processes the model then expects; False when the disruption met it."""
    pid, operation, args = random_call(rng, partitions, versions)
    record.in_flight = (pid, operation, args, model[pid])
    try:
        result = getattr(node.rpc.slapos, operation)(pid, *args)
    except Exception as error:
        if gone(error):
            return False
        raise
    assert result is True or isinstance(result, list), result
    model[pid] = after(model[pid], pid, operation, args)
    record.in_flight = None
    record.completed += 1
    record.no_wait += args[-1:] == (False,)
    try:
        settle(
            node,
            expected_processes(model, layouts),
            f'after {operation}({pid!r}, ...)',
            set(model),
            give_up=disruption.fired.is_set,
        )
    except Exception as error:
        if gone(error):
            return False
        raise
    return True


def check_after_restart(node, model, in_flight, uncertain=None):
    """Compare the include directory with the model; adopt the in-flight
    partition's outcome when it is one the call may leave, and that of a
    partition of ``uncertain`` ({pid: allowed states}) when it is one of
    its states. Return where the call in flight landed: 'before',
    'after', 'between' or None."""
    landed = None
    uncertain = uncertain or {}
    for pid in model:
        observed = read_state(node, pid)
        if pid in uncertain:
            assert observed in uncertain[pid], (
                f'{pid}: the include directory shows {observed}, not one of '
                f'{uncertain[pid]}'
            )
            model[pid] = observed
        elif in_flight is not None and in_flight[0] == pid:
            _, operation, args, before = in_flight
            allowed = possible_states(before, pid, operation, args)
            assert observed in allowed, (
                f'{pid} after a kill during {operation}{args}: '
                f'{observed} not in {allowed}'
            )
            landed = (
                'after'
                if observed == allowed[1]
                else 'before'
                if observed == allowed[0]
                else 'between'
            )
            model[pid] = observed
        else:
            assert observed == model[pid], (
                f'{pid}: the include directory shows {observed}, the '
                f'answered calls left {model[pid]}'
            )
        if observed.started:
            text = node.include_file(f'{pid}.conf').read_text()
            assert text == generate_partition_conf(
                str(node.instance_root), pid
            ), f'{pid}.conf is not what startPartition writes: {text!r}'
    allowed_files = {f'{pid}.conf' for pid, s in model.items() if s.started}
    allowed_files |= {
        f'{pid}-{sfx}.conf'
        for pid, s in model.items()
        for sfx, _ in s.managers
    }
    assert set(node.include_listing()) == allowed_files
    stray = [
        p
        for p in node.include_dir.parent.rglob('*')
        if p.name.endswith('.tmp')
    ]
    assert not stray, stray
    return landed


# disruptions


def power_off(node, session):
    """Stop supervisord and every process of the node at one moment, as a
    power loss does: supervisord is frozen first (it forks no more), then
    its children, until none is left running; then all are killed and
    reaped."""
    frozen = {session}
    os.kill(session, signal.SIGSTOP)
    while True:
        found = set(node_os_processes(node, session)) - frozen
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        frozen |= found
    for pid in frozen:
        kill(pid)
    node.process.wait(timeout=30)
    kill_orphans(node, session)


class TimedDisruption:
    """``fire()`` once, from another thread, ``delay`` seconds after
    ``arm()``, which the loop calls right before its step number ``at``;
    ``fired`` is set once it is done."""

    def __init__(self, delay, at):
        self.at = at
        self.armed = False
        self.fired = threading.Event()
        self._timer = threading.Timer(delay, self._fire)

    def fire(self):
        raise NotImplementedError

    def _fire(self):
        try:
            self.fire()
        finally:
            self.fired.set()

    def arm(self):
        self.armed = True
        self._timer.start()

    def join(self):
        if self.armed:
            self._timer.join()


# partitions


def make_layouts(node, rng, partitions):
    """Make ``partitions`` with 0 to 2 etc/run and 0 or 1 etc/service
    entries, at random; return {pid: (run names, service names)}."""
    layouts = {}
    for pid in partitions:
        run = [f'r{i}' for i in range(rng.randint(0, 2))]
        service = [f's{i}' for i in range(rng.randint(0, 1))]
        node.make_partition(pid, run=run, service=service)
        layouts[pid] = (run, service)
    return layouts
