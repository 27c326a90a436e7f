"""The listener in a real supervisord, against a real ``slapos proxy``.

A FaultProxy stands between the listener and the master: it counts the
requests and injects the faults (helpers in tests/listener_node.py).
"""

import time

import pytest

from testbed.node import dedent
from testbed.polling import wait_until
from testbed.proc import is_alive, kill_process_group
from testbed.slapos_master import (
    LIST,
    REPORT_STATE,
    Master,
    server_ssl_context,
)
from tests.listener_node import (
    assert_listener_alive,
    listener_info,
    make_listening_node,
    register,
    reports,
    request,
    restart_listener,
    trigger_sync,
    wait_attempt_after,
)

# How long the offline start may take, with a 2 s request timeout.
OFFLINE_START = 20


def manager_text(pid, autostart='false'):
    return dedent(f"""
        [group:{pid}-mgr]
        programs={pid}-mgr_agent

        [program:{pid}-mgr_agent]
        command=sleep 3600
        autostart={autostart}
        autorestart=false
        startsecs=0
        """)


# online


def test_online_start_applies_the_requested_states(online):
    node, master, instances = online
    (g0, p0), (g1, p1), (g2, p2) = (
        instances[t] for t in ('inst0', 'inst1', 'inst2')
    )
    assert set(node.processes(p0)) == {'a', 'w-on-watch'}
    assert node.processes(p1) == {}
    assert node.rpc.slapos.getPartitionInfo(p1)['state'] == 'stopped'
    state = node.sync_state()
    assert (state['mode'], state['last_error']) == ('online', '')
    assert state['master_url'] == master.url
    assert state['last_success'] >= state['last_attempt'] > 0
    assert [
        reports(master, g0, 'started'),
        reports(master, g1, 'stopped'),
        reports(master, g2, 'started'),
    ] == [1, 1, 1]
    assert master.front.count(REPORT_STATE) == 3
    assert_listener_alive(node)


def test_state_change_is_applied_at_the_next_sync(online):
    node, master, instances = online
    (g0, p0), (g1, p1) = instances['inst0'], instances['inst1']
    node.wait_execed(p0)
    request(master, 'inst0', 'stopped')
    request(master, 'inst1', 'started')
    trigger_sync(node)
    wait_until(
        lambda: not node.processes(p0) and node.group_running(p1),
        30,
        what='the new states',
    )
    assert not node.include_file(f'{p0}.conf').exists()
    wait_until(
        lambda: (
            reports(master, g0, 'stopped') and reports(master, g1, 'started')
        ),
        30,
        what='the reports',
    )


def test_reports_are_sent_once_per_change(online):
    node, master, instances = online
    g2, p2 = instances['inst2']
    lists = master.front.count(LIST)
    trigger_sync(node)
    trigger_sync(node)
    restart_listener(node)
    assert master.front.count(LIST) >= lists + 3
    assert master.front.count(REPORT_STATE) == 3
    # one change, one report, whatever the number of syncs
    node.wait_execed(p2)
    request(master, 'inst2', 'stopped')
    trigger_sync(node)
    wait_until(
        lambda: reports(master, g2, 'stopped'), 30, what='the stopped report'
    )
    trigger_sync(node)
    restart_listener(node)
    assert reports(master, g2, 'stopped') == 1
    assert reports(master, g2, 'started') == 1
    assert master.front.count(REPORT_STATE) == 4


def test_destroyed_instance_destroys_the_partition(online):
    node, master, instances = online
    g0, p0 = instances['inst0']
    node.wait_execed(p0)
    node.rpc.slapos.writeGroupConfig(p0, 'mgr', manager_text(p0, 'true'))
    request(master, 'inst0', 'destroyed')
    trigger_sync(node)
    wait_until(
        lambda: (
            node.rpc.slapos.getPartitionInfo(p0)['files'] == []
            and not node.processes(f'{p0}-mgr')
        ),
        30,
        what='the partition destroyed',
    )
    assert master.front.count(REPORT_STATE, instance_guid=g0) == 1


def test_unlisted_partition_is_left_alone(online):
    node, master, instances = online
    # slappart9 is not known by the master at all
    node.make_partition('slappart9', run=['a'])
    node.rpc.slapos.startPartition('slappart9')
    trigger_sync(node)
    assert node.group_running('slappart9')


# offline


def prepare_offline(node, master, instances):
    """Managers for the stopped and a started partition, then shut down."""
    p0, p1 = instances['inst0'][1], instances['inst1'][1]
    node.rpc.slapos.writeGroupConfig(p1, 'mgr', manager_text(p1))
    node.rpc.slapos.writeGroupConfig(p0, 'mgr', manager_text(p0))
    assert not node.group_running(f'{p1}-mgr')
    for pid in (instances['inst0'][1], instances['inst2'][1]):
        node.wait_execed(pid)
    node.shutdown()


def assert_offline_started(node, instances):
    started = [
        instances['inst0'][1],
        instances['inst2'][1],
        f'{instances["inst0"][1]}-mgr',
        f'{instances["inst1"][1]}-mgr',
    ]
    wait_until(
        lambda: all(node.group_running(g) for g in started),
        OFFLINE_START,
        what='the offline start',
    )
    assert node.processes(instances['inst1'][1]) == {}


def test_offline_start_when_the_master_is_down(online):
    node, master, instances = online
    prepare_offline(node, master, instances)
    master.front.refuse()
    before = time.time()
    node.start()
    assert_offline_started(node, instances)
    state = wait_attempt_after(node, before)
    assert state['mode'] == 'offline'
    assert 'connection failed' in state['last_error']
    assert_listener_alive(node)


def test_online_start_brings_back_the_same_as_offline(online):
    node, master, instances = online
    prepare_offline(node, master, instances)
    node.start()
    # the master answers: the sync starts inst0 and inst2, then the
    # managers' groups start as they would offline
    assert_offline_started(node, instances)
    wait_until(
        lambda: node.sync_state()['mode'] == 'online',
        30,
        what='the start attempt recorded',
    )


def test_offline_start_at_reload(online):
    node, master, instances = online
    prepare_offline(node, master, instances)
    master.front.refuse()
    node.start()
    assert_offline_started(node, instances)
    p0 = instances['inst0'][1]
    node.wait_execed(p0)
    old = {name: info['pid'] for name, info in node.processes(p0).items()}
    for group in (
        instances['inst2'][1],
        f'{p0}-mgr',
        f'{instances["inst1"][1]}-mgr',
    ):
        node.wait_execed(group)
    before = time.time()
    result = node.ctl('reload')
    assert result.returncode == 0, result.stdout + result.stderr
    node.wait_running()
    # every process was stopped by the reload: only the listener
    # (autostart is false everywhere) can have started them again
    assert_offline_started(node, instances)
    assert all(
        info['pid'] not in old.values() for info in node.processes(p0).values()
    )
    assert wait_attempt_after(node, before)['mode'] == 'offline'
    assert_listener_alive(node)


def test_master_back_converges_and_reports(online):
    node, master, instances = online
    (g0, p0), (g1, p1) = instances['inst0'], instances['inst1']
    node.wait_execed(p0)
    master.front.refuse()
    assert trigger_sync(node)['mode'] == 'offline'
    # the master changes its mind while the node cannot hear it
    request(master, 'inst0', 'stopped')
    request(master, 'inst1', 'started')
    assert trigger_sync(node)['mode'] == 'offline'
    assert node.group_running(p0)
    master.front.reopen()
    state = trigger_sync(node)
    assert (state['mode'], state['last_error']) == ('online', '')
    wait_until(
        lambda: not node.processes(p0) and node.group_running(p1),
        30,
        what='convergence',
    )
    wait_until(
        lambda: (
            reports(master, g0, 'stopped') == 1
            and reports(master, g1, 'started') == 1
        ),
        30,
        what='reports',
    )
    assert_listener_alive(node)


# faults


def huge(front):
    front.set_fault('huge', LIST, body='chunked')


FAULTS = {
    'refused': lambda front: front.refuse(),
    'black hole': lambda front: front.set_fault('blackhole', LIST),
    '403': lambda front: front.set_fault('status', LIST, status=403),
    '500': lambda front: front.set_fault('status', LIST, status=500),
    'html': lambda front: front.set_fault('html', LIST),
    'truncated json': lambda front: front.set_fault('truncated', LIST),
    'cut connection': lambda front: front.set_fault('cut', LIST),
    'missing field': lambda front: front.set_fault('missing_field', LIST),
    '50 MB body': huge,
}


@pytest.mark.parametrize('fault', sorted(FAULTS))
def test_master_fault_falls_back_and_keeps_serving(online, fault):
    node, master, instances = online
    prepare_offline(node, master, instances)
    FAULTS[fault](master.front)
    before = time.time()
    node.start()
    assert_offline_started(node, instances)
    state = wait_attempt_after(node, before)
    assert state['mode'] == 'offline'
    assert state['last_error']
    pid = assert_listener_alive(node)
    # it still serves events: another attempt, same process
    assert trigger_sync(node)['mode'] == 'offline'
    assert_listener_alive(node, pid)
    master.front.reopen()
    master.front.set_fault(None)
    state = trigger_sync(node)
    assert (state['mode'], state['last_error']) == ('online', '')
    assert_listener_alive(node, pid)


@pytest.mark.parametrize('partition_id', ['slappart99', '../x', ''])
def test_bad_partition_in_the_list_is_skipped(online, partition_id):
    node, master, instances = online
    g0, p0 = instances['inst0']
    node.wait_execed(p0)
    bogus = {
        'title': 'bogus',
        'instance_guid': 'bogus______0',
        'state': 'started',
        'compute_partition_id': partition_id,
        'software_release_uri': 'x',
    }
    master.front.set_fault(
        'rewrite',
        LIST,
        rewrite=lambda doc: {'result_list': [bogus] + doc['result_list']},
    )
    request(master, 'inst0', 'stopped')
    state = trigger_sync(node)
    assert state['mode'] == 'online'
    assert (
        repr(partition_id) in state['last_error']
        or f'{partition_id}: started failed: NO_PARTITION'
        in state['last_error']
    )
    # the other partitions were synced all the same
    wait_until(lambda: not node.processes(p0), 30, what=f'{p0} stopped')
    wait_until(lambda: reports(master, g0, 'stopped'), 30, what='report')
    assert reports(master, 'bogus______0', 'started') == 0
    assert_listener_alive(node)


def test_supervisord_restarting_under_the_listener(make_node, master):
    register(master)
    g0, p0 = request(master, 'inst0', 'started')
    node = make_listening_node(make_node, master.url)
    # the listener will be inside a report when supervisord dies
    master.front.set_fault('delay', REPORT_STATE, status=3)
    node.start()
    wait_until(
        lambda: master.front.count(REPORT_STATE), 30, what='a report under way'
    )
    old_listener = listener_info(node)['pid']
    children = node.child_pids()
    try:
        node.kill()  # SIGKILL: a crash; the children survive it
        master.front.set_fault(None)
        node.start()
        wait_until(
            lambda: (
                node.group_running(p0)
                and node.sync_state()['mode'] == 'online'
            ),
            30,
            what='the new listener synced',
        )

        # it finishes its report, then sees supervisord gone and exits
        # (its stderr went with supervisord: nothing to read there)
        wait_until(
            lambda: not is_alive(old_listener),
            30,
            what='the old listener to exit',
        )
        assert reports(master, g0, 'started') >= 1
        assert_listener_alive(node)
    finally:
        for pid in children:
            kill_process_group(pid)


# TLS


def test_tls_sync_and_fallback_with_a_wrong_ca(make_node, tmp_path, pki):
    tls = Master(tmp_path / 'tls-master', ssl_context=server_ssl_context(pki))
    try:
        register(tls)
        g0, p0 = request(tls, 'inst0', 'started')
        client = [
            '--cert-file',
            pki['client.pem'],
            '--key-file',
            pki['client.key'],
        ]
        node = make_listening_node(
            make_node, tls.url, *client, '--ca-file', pki['ca.pem']
        )
        node.start()
        wait_until(
            lambda: (
                node.group_running(p0)
                and reports(tls, g0, 'started') == 1
                and node.sync_state()['mode'] == 'online'
            ),
            30,
            what='TLS sync',
        )
        node.wait_execed(p0)
        node.shutdown()
        # (TICK_60 comes at each wall-clock minute: count from here)
        lists = tls.front.count(LIST)
        # same node, a CA that did not sign the master's certificate
        wrong = make_listening_node(
            make_node, tls.url, *client, '--ca-file', pki['other-ca.pem']
        )
        assert wrong.root == node.root
        before = time.time()
        wrong.start()
        wait_until(
            lambda: wrong.group_running(p0),
            OFFLINE_START,
            what='the offline start',
        )
        state = wait_attempt_after(wrong, before)
        assert state['mode'] == 'offline'
        assert 'TLS' in state['last_error']
        assert_listener_alive(wrong)
        assert tls.front.count(LIST) == lists  # the handshake failed first
    finally:
        tls.close()
