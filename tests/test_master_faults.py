"""Master-fault matrix: what tests/test_master_sync.py leaves out.

A real supervisord with the listener, a real ``slapos proxy`` behind the
listener helper's fault-injecting FaultProxy. That file already covers a
refused connection, a black hole, 403, 500, HTML, truncated JSON, a cut
connection, a missing field, a 50 MB chunked body and the partition ids
``slappart99``, ``../x`` and ``''``. Here: a slow drip, 404, 503 with
Retry-After, binary garbage, a huge announced body, wrong JSON types, more
unknown and invalid partition ids, and duplicate partitions with
conflicting states. For each:

- the listener stays RUNNING (same process, no traceback);
- supervisord keeps answering;
- the include directory stays consistent (what the valid part of the
  answer asks, nothing else);
- a list that is not valid makes the node fall back to offline behaviour
  (the offline start at supervisord's start, ``mode`` offline) within a
  bound set by the listener's ``--timeout``, and the node syncs again when
  the master is back.
"""

import contextlib
import time

import pytest

from supervisor_slapos import naming
from testbed import slapos_master
from testbed.slapos_master import LIST
from tests.listener_node import (
    assert_listener_alive,
    trigger_sync,
    wait_attempt_after,
)
from tests.test_master_sync import (
    assert_offline_started,
    prepare_offline,
)


class MatrixHandler(slapos_master._Handler):
    """FaultProxy's handler, with the faults of this matrix."""

    def _fault_drip(self, fault, body):
        # A valid-looking answer, one byte at a time, each well within the
        # listener's read timeout: only a deadline on the whole answer
        # stops it.
        payload = b'{"result_list": []}' + b' ' * 400
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        released = self.server.fault_proxy.released
        try:
            for byte in payload:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                if released.wait(0.25):
                    break
        except OSError:
            pass
        self.close_connection = True

    def _fault_retry_after(self, fault, body):
        payload = b'{"status": 503, "title": "maintenance"}'
        self.send_response(503)
        self.send_header('Retry-After', '3600')
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _fault_garbage(self, fault, body):
        self._send(200, bytes(range(256)) * 8 + b'\xff\xfe\x00')

    def _fault_huge_announced(self, fault, body):
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(10**12))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(b'{"result_list": [')
        self.close_connection = True


@pytest.fixture(autouse=True)
def matrix_handler(monkeypatch):
    """FaultProxies made in these tests serve MatrixHandler."""
    monkeypatch.setattr(slapos_master, '_Handler', MatrixHandler)


ENTRY = {
    'title': 'x',
    'instance_guid': 'x',
    'state': 'started',
    'compute_partition_id': 'slappart0',
    'software_release_uri': 'x',
}


def entry(**changes):
    return dict(ENTRY, **changes)


WRONG_TYPES = {
    'array': [],
    'string': 'result_list',
    'null': None,
    'number': 42,
    'result_list object': {'result_list': {'0': ENTRY}},
    'result_list null': {'result_list': None},
    'entry number': {'result_list': [1]},
    'entry list': {'result_list': [list(ENTRY.values())]},
    'title number': {'result_list': [entry(title=1)]},
    'guid null': {'result_list': [entry(instance_guid=None)]},
    'guid empty': {'result_list': [entry(instance_guid='')]},
    'state number': {'result_list': [entry(state=1)]},
    'state unknown': {'result_list': [entry(state='exploded')]},
    'state capitalised': {'result_list': [entry(state='Started')]},
    'partition number': {'result_list': [entry(compute_partition_id=0)]},
    'partition list': {
        'result_list': [entry(compute_partition_id=['slappart0'])]
    },
    'release number': {'result_list': [entry(software_release_uri=1)]},
}

LIST_FAULTS = {
    'slow drip': dict(kind='drip'),
    '404': dict(kind='status', status=404),
    '503 retry-after': dict(kind='retry_after'),
    'garbage': dict(kind='garbage'),
    'huge announced': dict(kind='huge_announced'),
    **{
        f'wrong types: {name}': dict(kind='json', body=body)
        for name, body in WRONG_TYPES.items()
    },
}
# These take a full start of the node each; the rest run on one node.
AT_START = (
    'slow drip',
    '404',
    '503 retry-after',
    'garbage',
    'huge announced',
    'wrong types: result_list object',
)


@pytest.mark.parametrize('fault', AT_START)
def test_list_fault_at_start_falls_back_to_the_offline_start(online, fault):
    node, master, instances = online
    prepare_offline(node, master, instances)
    listing = node.include_listing()
    master.front.set_fault(endpoints=LIST, **LIST_FAULTS[fault])
    before = time.time()
    node.start()
    # within a bound set by the listener's 2 s timeout, not by the master
    assert_offline_started(node, instances)
    state = wait_attempt_after(node, before)
    assert state['mode'] == 'offline', state
    assert state['last_error'], state
    assert node.include_listing() == listing
    pid = assert_listener_alive(node)
    master.front.set_fault(None)
    state = trigger_sync(node)
    assert (state['mode'], state['last_error']) == ('online', ''), state
    assert_listener_alive(node, pid)


def snapshot(node, instances):
    """Once the started partitions run: the include directory, every
    process and the listener's pid, to compare after a fault."""
    for _, pid in (instances['inst0'], instances['inst2']):
        node.wait_execed(pid)
    return (
        node.include_listing(),
        node.process_table(),
        assert_listener_alive(node),
    )


@pytest.mark.parametrize('fault', sorted(LIST_FAULTS))
def test_list_fault_while_online_keeps_everything(online, fault):
    """A bad answer on a tick: offline, nothing touched, then online."""
    node, master, instances = online
    listing, processes, pid = snapshot(node, instances)
    master.front.set_fault(endpoints=LIST, **LIST_FAULTS[fault])
    state = trigger_sync(node)
    assert state['mode'] == 'offline', state
    assert node.include_listing() == listing
    assert node.process_table() == processes
    assert_listener_alive(node, pid)
    master.front.set_fault(None)
    state = trigger_sync(node)
    assert (state['mode'], state['last_error']) == ('online', ''), state
    assert_listener_alive(node, pid)


# entries that are valid JSON but name a partition that is not there or
# not a partition at all

BAD_IDS = [
    'SLAPPART0',
    'slappart0 ',
    ' slappart0',
    'slappart0\n',
    'slappart0/../slappart2',
    'slappart0.conf',
    'slappart0-x',
    'slappart0_x',
    '..',
    '.',
    '/',
    'a' * 65,
    'ｓｌａｐｐａｒｔ０',
    'slappart0\u200b',
    '*',
    'slappart?',
    '%(here)s',
    'slappart0\x00',
]


@pytest.mark.parametrize('state', ['started', 'stopped', 'destroyed'])
def test_unknown_and_invalid_partition_ids_touch_nothing(online, state):
    node, master, instances = online
    listing, processes, pid = snapshot(node, instances)
    bogus = [
        entry(
            title=f'bogus{i}',
            instance_guid=f'bogus-{i}',
            state=state,
            compute_partition_id=value,
        )
        for i, value in enumerate(BAD_IDS)
    ]
    master.front.set_fault(
        'rewrite',
        LIST,
        rewrite=lambda doc: {'result_list': bogus + doc['result_list']},
    )
    result = trigger_sync(node)
    assert result['mode'] == 'online', result
    assert node.include_listing() == listing
    assert node.process_table() == processes
    assert_listener_alive(node, pid)
    # an invalid id is never reported; a valid one without a partition
    # (SLAPPART0) is stopped, and may say so
    reported = {
        i
        for i, value in enumerate(BAD_IDS)
        if master.front.calls(
            slapos_master.REPORT_STATE, instance_guid=f'bogus-{i}'
        )
    }
    assert all(
        naming.PARTITION_ID_RE.fullmatch(BAD_IDS[i]) and state == 'stopped'
        for i in reported
    ), reported


@pytest.mark.parametrize(
    'states',
    [
        ('started', 'destroyed'),
        ('stopped', 'destroyed'),
        ('started', 'stopped'),
    ],
)
@pytest.mark.parametrize('which', ['inst0', 'inst1'])
def test_duplicate_partition_with_conflicting_states_is_left_alone(
    online, states, which
):
    """Two instances on one partition that disagree: no guess is safe."""
    node, master, instances = online
    for _, pid in (instances['inst0'], instances['inst2']):
        node.wait_execed(pid)
    guid, partition = instances[which]
    listing = node.include_listing()
    processes = node.process_table()
    listener_pid = assert_listener_alive(node)

    def conflicting(doc):
        entries = [
            e
            for e in doc['result_list']
            if e['compute_partition_id'] != partition
        ]
        mine = [
            e
            for e in doc['result_list']
            if e['compute_partition_id'] == partition
        ][0]
        return {
            'result_list': entries
            + [
                dict(mine, state=states[0]),
                dict(mine, instance_guid=guid + '-twin', state=states[1]),
            ]
        }

    master.front.set_fault('rewrite', LIST, rewrite=conflicting)
    result = trigger_sync(node)
    assert result['mode'] == 'online', result
    assert 'conflicting states' in result['last_error'], result
    assert node.include_listing() == listing
    assert node.process_table() == processes
    assert_listener_alive(node, listener_pid)
