"""Fakes for the listener's collaborators (supervisord's ``slapos`` RPC
namespace, the master client, a clock and a random generator), and
:class:`ListenerHarness`, the one place that wires them to a listener."""

import io
import json
import xmlrpc.client

from supervisor.xmlrpc import Faults as SupervisorFaults

from supervisor_slapos.faults import Faults
from supervisor_slapos.master import Instance, MasterError
from supervisor_slapos.syncstate import read_sync_state

SUCCESS = SupervisorFaults.SUCCESS
# FakeClock's start is this moment of its minute: a harness whose phase is
# PHASE starts on its own moment.
PHASE = 40.0


class FakeClock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class FixedRandom:
    """``uniform(a, b)`` returns the point ``fraction`` of the way."""

    def __init__(self, fraction=1.0):
        self.fraction = fraction

    def uniform(self, a, b):
        return a + (b - a) * self.fraction


class FakeSlapos:
    """The plugin's namespace over a dict of partitions.

    ``partitions`` maps an id to ``{'state', 'files', 'processes'}``;
    ``dirs`` is the set of ids that have an instance directory (needed by
    startPartition only). ``fail`` maps ``(method, pid)`` (or ``method``)
    to an exception to raise.
    """

    def __init__(self, state_dir, partitions=None, dirs=None):
        self.state_dir = str(state_dir)
        self.partitions = partitions or {}
        self.dirs = set(self.partitions) if dirs is None else set(dirs)
        self.calls = []
        self.fail = {}
        # getOfflineStart()'s 'by' (asked once at each listener start,
        # not recorded in calls)
        self.offline_start_by = 'listener'

    def _check(self, method, pid=None):
        self.calls.append((method, pid) if pid is not None else (method,))
        exc = self.fail.get((method, pid)) or self.fail.get(method)
        if exc is not None:
            raise exc

    def getStateDir(self):
        self._check('getStateDir')
        return self.state_dir

    def getOfflineStart(self):
        return {'by': self.offline_start_by, 'state': ''}

    def getPartitionInfo(self, pid):
        self._check('getPartitionInfo', pid)
        return self._info(pid)

    def _info(self, pid):
        part = self.partitions.get(pid, {})
        return {
            'partition_id': pid,
            'state': part.get('state', 'stopped'),
            'files': list(part.get('files', [])),
            'groups': [],
            'processes': [dict(p) for p in part.get('processes', [])],
        }

    def getAllPartitionInfo(self):
        self._check('getAllPartitionInfo')
        return [self._info(pid) for pid in sorted(self.partitions)]

    def startPartition(self, pid, wait=True):
        self._check('startPartition', pid)
        if pid not in self.dirs:
            raise xmlrpc.client.Fault(
                Faults.NO_PARTITION, f'NO_PARTITION: no directory for {pid}'
            )
        self.partitions[pid] = running_partition(pid)
        return True

    def stopPartition(self, pid, wait=True):
        self._check('stopPartition', pid)
        part = self.partitions.setdefault(pid, {})
        part['state'] = 'stopped'
        part['files'] = [
            f for f in part.get('files', []) if f != f'{pid}.conf'
        ]
        part['processes'] = [
            p for p in part.get('processes', []) if p['group'] != pid
        ]
        return True

    def destroyPartition(self, pid, wait=True):
        self._check('destroyPartition', pid)
        self.partitions.pop(pid, None)
        return True

    def startAllPartitions(self):
        self._check('startAllPartitions')
        return [
            {
                'name': 'a',
                'group': 'slappart0',
                'status': SUCCESS,
                'description': 'OK',
            }
        ]

    def actions(self):
        """The calls that change something, in order."""
        return [
            c
            for c in self.calls
            if c[0]
            in (
                'startPartition',
                'stopPartition',
                'destroyPartition',
                'startAllPartitions',
            )
        ]

    def sync_actions(self):
        """The calls a sync makes for the master's requested states (the
        actions without the start of everything that ends a start)."""
        return [c for c in self.actions() if c[0] != 'startAllPartitions']


def running_partition(pid, names=('a',), statename='RUNNING'):
    return {
        'state': 'started',
        'files': [f'{pid}.conf'],
        'processes': [
            {'name': n, 'group': pid, 'statename': statename, 'pid': 1234}
            for n in names
        ],
    }


class FakeRPC:
    def __init__(self, slapos):
        self.slapos = slapos


class FakeMaster:
    """A MasterClient stand-in. ``error`` (an exception) makes every call
    fail; ``report_errors`` maps an instance guid to an exception."""

    computer_id = 'COMP-TEST'
    display_url = 'http://master.invalid'

    def __init__(self, instances=()):
        self.instances = list(instances)
        self.error = None
        self.list_error = None
        self.format_error = None
        self.report_errors = {}
        self.calls = []

    def list_instances(self):
        self.calls.append(('list',))
        if self.error or self.list_error:
            raise self.error or self.list_error
        return list(self.instances)

    def report_state(self, guid, state):
        self.calls.append(('report', guid, state))
        exc = self.error or self.report_errors.get(guid)
        if exc:
            raise exc
        return None

    def report_format(self, partition_list):
        self.calls.append(('format', partition_list))
        if self.error or self.format_error:
            raise self.error or self.format_error

    def reports(self):
        return [c[1:] for c in self.calls if c[0] == 'report']

    def formats(self):
        return [c[1] for c in self.calls if c[0] == 'format']

    def order(self):
        """The kinds of the calls but the reports, in order."""
        return [c[0] for c in self.calls if c[0] != 'report']

    def lists(self):
        return sum(1 for c in self.calls if c[0] == 'list')


class RecordingActions:
    """A ``ListenerActions`` stand-in that records what a policy asks of
    its listener: ``calls``, ``(name, *arguments)`` in order."""

    def __init__(self, repeating=False):
        self.calls = []
        self.repeating = repeating

    def names(self):
        return [c[0] for c in self.calls]

    def begin_attempt(self):
        self.calls.append(('begin_attempt',))

    def master_failed(self, exc):
        self.calls.append(('master_failed', str(exc)))

    def master_answered(self, synced=False):
        self.calls.append(('master_answered', synced))

    def offline_start_repeats(self):
        return self.repeating

    def offline_started(self):
        self.calls.append(('offline_started',))
        self.repeating = True

    def start_all(self):
        self.calls.append(('start_all',))

    def record(self, mode, errors, last_attempt=None):
        self.calls.append(('record', mode, list(errors), last_attempt))


def instance(pid, state, guid=None, title=None):
    return Instance(
        title=title or f'title-{pid}',
        instance_guid=guid or f'guid-{pid}',
        state=state,
        partition_id=pid,
    )


def down(message='connection refused'):
    from supervisor_slapos.master import MasterUnreachable

    return MasterUnreachable(message)


def bad_answer(message='HTTP 500'):
    return MasterError(message)


TICK = {'ver': '3.0', 'eventname': 'TICK_60', 'len': '15'}
RUNNING_EVENT = {
    'ver': '3.0',
    'eventname': 'SUPERVISOR_STATE_CHANGE_RUNNING',
    'len': '0',
}
# ListenerHarness(dump=MISSING): a computer_json that does not exist
MISSING = object()
SYNC_REQUEST = ({'eventname': 'REMOTE_COMMUNICATION'}, 'type:slapos-sync\n')


def event_text(name, payload=''):
    """An event as supervisord writes it on a listener's stdin."""
    return (
        f'ver:3.0 server:supervisor serial:1 pool:slapos poolserial:1 '
        f'eventname:{name} len:{len(payload)}\n{payload}'
    )


class ListenerHarness:
    """A SlaposListener and its fakes, sharing one state directory.

    ``master=False``: no master (always offline). ``dump``: the content
    of a computer_json (a JSON value, or text as it is; MISSING: no file),
    passed to the listener as ``computer_json``.
    """

    def __init__(
        self,
        tmp_path,
        partitions=None,
        dirs=None,
        instances=(),
        master=True,
        fraction=1.0,
        stdin='',
        dump=None,
        phase=PHASE,
    ):
        self.state_dir = tmp_path / 'state'
        self.state_dir.mkdir(exist_ok=True)
        self.dump_path = tmp_path / 'slapos.json'
        self.computer_json = None if dump is None else str(self.dump_path)
        if dump is not None and dump is not MISSING:
            self.write_dump(dump)
        self.slapos = FakeSlapos(self.state_dir, partitions, dirs)
        self.master = FakeMaster(instances) if master else None
        self.clock = FakeClock()
        self.random = FixedRandom(fraction)
        self.phase = phase
        self.stdin = io.StringIO(stdin)
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.sleeps = []
        # the addresses that exist on the fake host (None: every one)
        self.addresses = None
        self.listener = None

    def write_dump(self, dump):
        self.dump_path.write_text(
            dump if isinstance(dump, str) else json.dumps(dump)
        )

    def make(self, **kwargs):
        """A new listener process (not started), same state directory."""
        from supervisor_slapos.listener import SlaposListener

        kwargs.setdefault('computer_json', self.computer_json)
        kwargs.setdefault('phase', self.phase)
        kwargs.setdefault('bindable', self.bindable)
        self.listener = SlaposListener(
            FakeRPC(self.slapos),
            master=self.master,
            state_dir=None,
            stdin=self.stdin,
            stdout=self.stdout,
            stderr=self.stderr,
            clock=self.clock,
            rng=self.random,
            sleep=self.sleeps.append,
            **kwargs,
        )
        return self.listener

    def bindable(self, address):
        return self.addresses is None or address in self.addresses

    def start(self, **kwargs):
        listener = self.make(**kwargs)
        listener.start()
        return listener

    def tick(self, seconds=60.0):
        """``seconds`` later, a TICK_60."""
        self.clock.advance(seconds)
        self.listener.handle_event(TICK, '')

    def sync_state(self):
        return read_sync_state(str(self.state_dir))

    def error(self):
        return self.sync_state().last_error

    def reported_file(self):
        return json.loads(
            (self.state_dir / 'reported-states.json').read_text()
        )

    def log(self):
        return self.stderr.getvalue()
