"""The listener in a real supervisord where things are not as they should
be (issues 17 and 18): a master answering anything, an unreadable
computer_json, the listener loaded before its RPC interface, a removed
state_dir, beside slapgrid with no reason to contact the master.

Masters here are FaultProxies with no upstream (testbed/slapos_master.py) or
a closed loopback port: no ``slapos proxy`` is needed to be hostile.
"""

import os
import shutil
import sys

import pytest

from supervisor_slapos.syncstate import SYNC_STATE_FILE
from testbed.node import LISTENER_TEMPLATE
from testbed.polling import wait_until
from testbed.slapos_master import FaultProxy, free_port
from tests.listener_node import (
    EVENTS,
    OFFLINE_START,
    assert_listener_alive,
    listener_args,
    listener_info,
    record_mark,
    trigger_sync,
    wait_recorded,
)

PID = 'slappart0'


@pytest.fixture
def front():
    """A hostile master: a FaultProxy with nothing behind it."""
    proxy = FaultProxy()
    yield proxy
    proxy.close()


def closed_url():
    return f'http://127.0.0.1:{free_port()}'


def started_partition_node(make_node, **kwargs):
    """A node whose ``slappart0`` is started (its P.conf written) but not
    running, as after a reboot: only the offline start runs it. ``kwargs``
    configure the node as it is then started (the listener...)."""
    setup = make_node('node')
    setup.make_partition(PID, run=['a'])
    setup.start()
    setup.rpc.slapos.startPartition(PID)
    setup.wait_execed(PID)
    setup.shutdown()
    return make_node('node', **kwargs)


def wait_offline_started(node, what='the offline start'):
    """Wait until the partition's services run (the offline start)."""
    wait_until(lambda: node.group_running(PID), OFFLINE_START, what=what)


def offline_recorded(node):
    """The sync state, once the listener has recorded the master as
    unreachable."""
    return wait_until(
        lambda: node.sync_state()['mode'] == 'offline' and node.sync_state(),
        20,
        what='offline recorded',
    )


def listener_log(node):
    path = node.root / 'listener.log'
    return path.read_text() if path.exists() else ''


# 18.1: whatever the master sends


@pytest.mark.parametrize(
    'status, body',
    [(200, b'[' * 100000), (500, b'[' * 4000)],
    ids=['200 nested', '500 nested'],
)
def test_deeply_nested_answer_is_an_unreachable_master(
    make_node, front, status, body
):
    front.set_fault('status', status=status, body=body)
    node = started_partition_node(
        make_node, listener=listener_args(front.url), listener_events=EVENTS
    )
    node.start()
    wait_offline_started(node)
    state = offline_recorded(node)
    assert (
        f'HTTP {status}' in state['last_error']
        or 'nested too deeply' in state['last_error']
    ), state
    assert_listener_alive(node)


# 18.2: a computer_json that cannot be read


def test_deeply_nested_computer_json_is_a_local_error(make_node, tmp_path):
    dump = tmp_path / 'slapos.json'
    dump.write_text('[' * 100000)
    node = started_partition_node(
        make_node,
        listener=listener_args(closed_url(), '--computer-json', str(dump)),
        listener_events=EVENTS,
    )
    node.start()
    wait_offline_started(node)
    state = offline_recorded(node)
    assert (
        f'computer_json {dump}: not valid JSON: nested too deeply'
        in state['last_error']
    ), state
    assert 'connection failed' in state['last_error'], state
    assert_listener_alive(node)


# 17.4: the listener loaded before its RPC interface


def without_slapos_interface(node):
    """Take ``[rpcinterface:slapos]`` out of the node's main configuration;
    return its text."""
    text = node.config.read_text()
    section = text[
        text.index('[rpcinterface:slapos]') : text.index('[ctlplugin:slapos]')
    ]
    node.config.write_text(text.replace(section, ''))
    return section


def test_listener_loaded_before_its_interface_waits_for_it(make_node):
    node = started_partition_node(make_node)
    section = without_slapos_interface(node)
    node.start()
    # as the setup writes it, then loaded as slapgrid loads a new group
    command = f'{sys.executable} -m supervisor_slapos.listener'
    node.include_file('supervisor_slapos.conf').write_text(
        section
        + LISTENER_TEMPLATE.format(
            command=command, root=node.root, events=EVENTS
        )
    )
    added, changed, removed = node.rpc.supervisor.reloadConfig()[0]
    assert added == ['slapos'], (added, changed, removed)
    node.rpc.supervisor.addProcessGroup('slapos')
    wait_until(
        lambda: 'waiting for the slapos RPC interface' in listener_log(node),
        30,
        what='the waiting line',
    )
    pid = listener_info(node)['pid']
    # it answers its events, and still waits
    node.rpc.supervisor.sendRemoteCommEvent('slapos-sync', '')
    wait_until(
        lambda: 'still waiting' in listener_log(node),
        30,
        what='the answer to a sync request',
    )
    assert_listener_alive(node, pid)
    assert listener_log(node).count('waiting for the slapos RPC') == 2
    assert not node.group_running(PID)
    # a reload loads the interface and restarts the listener: it works
    result = node.ctl('reload')
    assert result.returncode == 0, result.stdout + result.stderr
    node.wait_running()
    wait_offline_started(node)
    assert listener_info(node)['pid'] != pid
    assert_listener_alive(node)


# 17.5: honest sync state beside slapgrid, state_dir made again


def test_sync_beside_slapgrid_without_computer_json(make_node):
    node = make_node(listener=['--slapgrid'], listener_events=EVENTS)
    node.start()
    wait_until(
        lambda: node.sync_state()['last_error'], 20, what='the start recorded'
    )
    result = node.ctl('slapos', 'sync')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        'mode: unknown (beside slapgrid without computer_json'
    ), lines
    assert 'never contacts the master' in lines[0]
    assert lines[-1] == 'last_error: -'


def test_sync_beside_slapgrid_says_how_old_the_contact_is(
    make_node, front, tmp_path
):
    from tests.test_formatreport import write_dump

    front.set_fault('json', body={})  # the format report is accepted
    dump = tmp_path / 'slapos.json'
    write_dump(dump, {PID: '10.0.0.1'})
    state_dir = tmp_path / 'state'
    node = make_node(
        listener=listener_args(
            front.url,
            '--slapgrid',
            '--computer-json',
            str(dump),
            '--address-wait',
            '0',
        ),
        listener_events=EVENTS,
        rpc_options=f'state_dir = {state_dir}\n',
    )
    node.start()
    first = wait_until(
        lambda: node.sync_state()['mode'] == 'online' and node.sync_state(),
        20,
        what='the format report',
    )
    assert 0 < first['last_attempt'] <= first['last_success']
    # the listener starts again: nothing to report, no contact
    mark = record_mark(node)
    node.rpc.supervisor.stopProcess('slapos')
    node.rpc.supervisor.startProcess('slapos')
    assert wait_recorded(node, mark) == first
    assert front.count('slapos.put.v0.compute_node_format') == 1
    result = node.ctl('slapos', 'sync')
    assert result.stdout.startswith(
        'mode: online (as of the last contact with the master, '
    ), result.stdout


def test_removed_state_dir_is_made_again(make_node, tmp_path):
    state_dir = tmp_path / 'state'
    node = make_node(
        listener=listener_args(closed_url()),
        listener_events=EVENTS,
        rpc_options=f'state_dir = {state_dir}\n',
    )
    node.start()
    wait_until(
        lambda: node.sync_state()['mode'] == 'offline',
        20,
        what='the start recorded',
    )
    shutil.rmtree(state_dir)
    state = trigger_sync(node)
    assert state['mode'] == 'offline'
    assert os.path.isfile(state_dir / SYNC_STATE_FILE)
    assert 'cannot write' not in listener_log(node)
    assert_listener_alive(node)
