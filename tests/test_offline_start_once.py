"""The offline start inside supervisord (``offlinestart``), in real
supervisords: done once (by the plugin where the states are the node's
own, else by the listener), at every start and reload, never before a
master sync where the listener owns the states.
"""

import xmlrpc.client

import pytest

from supervisor_slapos.listeneractions import PLUGIN_STARTED
from supervisor_slapos.partitionconf import generate_partition_conf
from testbed.polling import wait_until
from testbed.slapos_master import free_port, write_dump
from tests.listener_node import (
    EVENTS,
    PARTITIONS,
    listener_args,
    register,
    request,
)

OFFLINE_START = 'slapos: startAllPartitions:'  # supervisord's log, per pass
REFUSED = f'http://127.0.0.1:{free_port()}'  # nothing listens there
LISTENER_LOG = 'listener.log'


def beside_slapgrid(tmp_path):
    """--slapgrid, a computer_json whose addresses exist here, a master
    that refuses connections (the format report fails)."""
    dump = write_dump(
        tmp_path / 'slapos.json', {pid: '127.0.0.1' for pid in PARTITIONS}
    )
    return [
        '--slapgrid',
        '--master-url',
        REFUSED,
        '--computer-id',
        'COMP-1',
        '--computer-json',
        str(dump),
        '--timeout',
        '2',
    ]


def standalone(tmp_path):
    """An offline-only node: no master at all."""
    return []


def all_running(node):
    return all(node.group_running(pid) for pid in PARTITIONS)


def started_node(make_node, listener):
    """A node whose partitions are started, and whose listener has made
    its start attempt."""
    node = make_node(listener=listener, listener_events=EVENTS)
    for pid in PARTITIONS:
        node.make_partition(pid, run=['a'], service=['w'])
        node.include_file(f'{pid}.conf').write_text(
            generate_partition_conf(str(node.instance_root), pid)
        )
    return node


def wait_started_by_plugin(node, starts):
    """Wait until the node's ``starts``-th start (or reload) is over: the
    plugin's offline start done, every partition running, and the
    listener's start attempt past the point where it would have run it."""

    def over():
        try:
            return (
                node.rpc.slapos.getOfflineStart()['state'] == 'done'
                and all_running(node)
                and node.log_count(PLUGIN_STARTED, LISTENER_LOG) == starts
            )
        except (OSError, xmlrpc.client.Fault):
            return False  # still reloading

    wait_until(over, 60, what=f'start {starts} over')


@pytest.mark.parametrize('listener', [beside_slapgrid, standalone])
def test_offline_start_by_the_plugin_once_at_start_and_each_reload(
    make_node, tmp_path, listener
):
    """The plugin runs it, and the listener does not run it again. After a
    reload (a new supervisord object, whatever its id()) the plugin runs
    it again."""
    node = started_node(make_node, listener(tmp_path)).start()
    wait_started_by_plugin(node, 1)
    assert node.rpc.slapos.getOfflineStart() == {
        'by': 'plugin',
        'state': 'done',
    }
    assert node.log_count(OFFLINE_START) == 1
    for starts in (2, 3):
        node.rpc.supervisor.restart()
        wait_started_by_plugin(node, starts)
        assert node.log_count(OFFLINE_START) == starts
    node.shutdown()
    node.start()
    wait_started_by_plugin(node, 4)
    assert node.log_count(OFFLINE_START) == 4


def test_reloads_leave_supervisord_sound(make_node, tmp_path):
    """The loop driver's pipe (closed by supervisord's cleanup at a
    reload, never by asyncore's close(), which would shutdown() it) and
    its socket map entry: reloads keep the same supervisord answering,
    with nothing in its log about an fd it could not poll."""
    node = started_node(make_node, beside_slapgrid(tmp_path)).start()
    wait_started_by_plugin(node, 1)
    pid = node.rpc.supervisor.getPID()
    for starts in (2, 3):
        node.rpc.supervisor.restart()
        wait_started_by_plugin(node, starts)
    assert node.rpc.supervisor.getPID() == pid
    assert node.process.poll() is None
    for trouble in (
        'Traceback',
        'uncaptured python exception',
        'unexpected write event',
        'unexpected read event',
        'slapos: loop driver',
        'offline start failed',
    ):
        assert node.log_count(trouble) == 0, trouble


def test_listener_owned_offline_start_runs_once(make_node):
    """A master URL without --slapgrid: the listener owns the states; with
    the master refusing it runs the offline start itself, once."""
    node = started_node(make_node, listener_args(REFUSED)).start()
    wait_until(lambda: all_running(node), 30, what='the offline start')
    assert node.rpc.slapos.getOfflineStart() == {'by': 'listener', 'state': ''}
    wait_until(lambda: node.log_count(OFFLINE_START) == 1, 30)
    node.rpc.supervisor.restart()
    wait_until(lambda: node.log_count(OFFLINE_START) == 2, 30)
    node.wait_running()
    wait_until(lambda: all_running(node), 30, what='the offline start')
    assert node.log_count(PLUGIN_STARTED, LISTENER_LOG) == 0


def test_listener_owned_node_starts_nothing_before_its_sync(
    make_node, master, tmp_path
):
    """The master wants a partition stopped that the node last knew
    started: the listener's sync stops it, and its services never ran."""
    register(master)
    _, pid = request(master, 'inst', 'started')
    request(master, 'inst', 'stopped')
    node = make_node(
        listener=listener_args(master.url), listener_events=EVENTS
    )
    ran = tmp_path / 'ran'
    node.make_partition(
        pid, run={'a': f'#!/bin/sh\necho >> {ran}\nexec sleep 3600\n'}
    )
    node.include_file(f'{pid}.conf').write_text(
        generate_partition_conf(str(node.instance_root), pid)
    )
    node.start()
    wait_until(
        lambda: (
            not node.include_file(f'{pid}.conf').exists()
            and node.sync_state()['mode'] == 'online'
        ),
        30,
        what='the sync',
    )
    assert not ran.exists()
    assert node.processes(pid) == {}
    assert node.rpc.slapos.getOfflineStart()['by'] == 'listener'
