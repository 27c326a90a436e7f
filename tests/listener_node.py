"""Helpers for tests of the listener in a real supervisord (testbed/node.py)
against a real ``slapos proxy`` behind a FaultProxy (testbed/slapos_master.py).

A sync is triggered without waiting for the listener's moment by
``supervisor.sendRemoteCommEvent('slapos-sync', '')`` (the listener is
subscribed to REMOTE_COMMUNICATION here), or by restarting the listener
process, which syncs when it starts.
"""

import time
from pathlib import Path

from supervisor_slapos.syncstate import SYNC_STATE_FILE
from testbed.polling import wait_until
from testbed.slapos_master import COMPUTER_ID, REPORT_STATE

PARTITIONS = ('slappart0', 'slappart1', 'slappart2')
EVENTS = 'SUPERVISOR_STATE_CHANGE_RUNNING,TICK_60,REMOTE_COMMUNICATION'
# How long the offline start may take, with a 2 s request timeout.
OFFLINE_START = 20


def listener_args(url, *extra):
    return [
        '--master-url',
        url,
        '--computer-id',
        COMPUTER_ID,
        '--timeout',
        '2',
        *extra,
    ]


def make_listening_node(make_node, url, *extra, partitions=PARTITIONS):
    node = make_node(
        listener=listener_args(url, *extra), listener_events=EVENTS
    )
    for pid in partitions:
        node.make_partition(pid, run=['a'], service=['w'])
    return node


def register(master, partitions=PARTITIONS):
    master.proxy.supply()
    master.proxy.format({pid: [] for pid in partitions})


def request(master, title, state):
    """Request ``title`` in ``state``; return (guid, partition id)."""
    answer = master.proxy.request(title, state=state)
    return answer['instance_guid'], answer['compute_partition_id']


def listener_info(node):
    return node.rpc.supervisor.getProcessInfo('slapos')


def wait_attempt_after(node, moment, timeout=30):
    """Wait for a listener attempt that started after ``moment``."""
    return wait_until(
        lambda: (
            node.sync_state()['last_attempt'] > moment and node.sync_state()
        ),
        timeout,
        what='a listener attempt',
    )


def trigger_sync(node):
    """Ask the listener for a sync now, and wait until it made it."""
    before = time.time()
    node.rpc.supervisor.sendRemoteCommEvent('slapos-sync', '')
    return wait_attempt_after(node, before)


# File times come from the kernel's coarse clock, up to a tick behind
# time.time().
FILE_CLOCK_LAG = 0.05


def state_file(node):
    return Path(node.rpc.slapos.getStateDir()) / SYNC_STATE_FILE


def recorded_since(node, since):
    """True once the listener has recorded an attempt (written its sync
    state) after ``since`` (wall clock; seconds before the record, as
    before a reload or a restart). Beside slapgrid, where ``last_attempt``
    moves only with a contact with the master, this is how to know that an
    attempt is over."""
    try:
        return state_file(node).stat().st_mtime >= since - FILE_CLOCK_LAG
    except FileNotFoundError:
        return False


def record_mark(node):
    """The sync state file's identity now (it is replaced at every
    record), for ``wait_recorded``."""
    return state_file(node).stat().st_ino


def wait_recorded(node, mark, timeout=30):
    """Wait until the listener recorded an attempt after ``mark`` (the
    state file replaced: a new inode, whatever the clocks); return the
    sync state."""
    path = state_file(node)
    wait_until(
        lambda: path.exists() and path.stat().st_ino != mark,
        timeout,
        what='a listener attempt recorded',
    )
    return node.sync_state()


def trigger_recorded(node):
    """Ask the listener for a sync now; wait until it recorded it."""
    mark = record_mark(node)
    node.rpc.supervisor.sendRemoteCommEvent('slapos-sync', '')
    return wait_recorded(node, mark)


def restart_listener(node):
    """Another way to trigger a sync: the listener syncs at start."""
    before = time.time()
    node.rpc.supervisor.stopProcess('slapos')
    node.rpc.supervisor.startProcess('slapos')
    return wait_attempt_after(node, before)


def reports(master, guid, state):
    return master.front.count(
        REPORT_STATE, instance_guid=guid, reported_state=state
    )


def assert_listener_alive(node, pid=None):
    info = listener_info(node)
    assert info['statename'] == 'RUNNING'
    if pid is not None:
        assert info['pid'] == pid
    log = (node.root / 'listener.log').read_text()
    assert 'Traceback' not in log, log
    return info['pid']
