"""The listener beside slapgrid (``--slapgrid``), in a real supervisord,
against a real ``slapos proxy``: the offline start at every start and
reload, the format report, and nothing else, whatever the master lists.
"""

import time

import pytest

from testbed.polling import wait_until
from testbed.slapos_master import COMPUTER_ID, FORMAT, LIST, REPORT_STATE
from tests.listener_node import (
    EVENTS,
    PARTITIONS,
    assert_listener_alive,
    record_mark,
    register,
    request,
    trigger_recorded,
    trigger_sync,
    wait_attempt_after,
    wait_recorded,
)
from tests.test_formatreport import write_dump


def write_cfg(path, master_url, dump):
    path.write_text(
        f'[slapos]\nmaster_url = {master_url}\n'
        f'computer_id = {COMPUTER_ID}\n'
        f'\n[slapformat]\ncomputer_json = {dump}\n'
    )
    return path


@pytest.fixture
def beside_slapgrid(make_node, master, tmp_path):
    """A node where the master wants the opposite of what runs: the
    partition it wants started is stopped, the ones it wants stopped and
    destroyed are started. Returns (node, master, {state: pid})."""
    register(master)
    wanted = {
        state: request(master, f'inst-{state}', 'started')[1]
        for state in ('started', 'stopped', 'destroyed')
    }
    request(master, 'inst-stopped', 'stopped')
    request(master, 'inst-destroyed', 'destroyed')
    setup = make_node('node')
    for pid in PARTITIONS:
        setup.make_partition(pid, run=['a'])
    setup.start()
    for state in ('stopped', 'destroyed'):
        setup.rpc.slapos.startPartition(wanted[state])
        setup.wait_execed(wanted[state])
    setup.shutdown()
    dump = tmp_path / 'slapos.json'
    write_dump(dump, {pid: f'10.0.0.{n}' for n, pid in enumerate(PARTITIONS)})
    cfg = write_cfg(tmp_path / 'slapos.cfg', master.url, dump)
    # the dump's addresses do not exist here: no address wait
    node = make_node(
        'node',
        listener=[
            '--cfg',
            str(cfg),
            '--slapgrid',
            '--address-wait',
            '0',
            '--timeout',
            '2',
        ],
        listener_events=EVENTS,
    )
    return node, master, wanted


def assert_untouched(node, master, wanted):
    """The master's wishes were neither applied nor reported."""
    for state in ('stopped', 'destroyed'):
        assert node.group_running(wanted[state]), state
        assert node.include_file(f'{wanted[state]}.conf').exists()
    assert node.processes(wanted['started']) == {}
    assert not node.include_file(f'{wanted["started"]}.conf').exists()
    assert master.front.count(LIST) == 0
    assert master.front.count(REPORT_STATE) == 0


def wait_offline_started(node, wanted, what='the offline start'):
    wait_until(
        lambda: (
            node.group_running(wanted['stopped'])
            and node.group_running(wanted['destroyed'])
        ),
        20,
        what=what,
    )


def start(node, wanted):
    """Start the node; its listener's start attempt, once the offline
    start is done."""
    before = time.time()
    node.start()
    wait_offline_started(node, wanted)
    return wait_attempt_after(node, before)


def test_slapgrid_mode_only_starts_offline_and_reports_the_format(
    beside_slapgrid,
):
    node, master, wanted = beside_slapgrid
    state = start(node, wanted)
    assert (state['mode'], state['last_error']) == ('online', '')
    assert master.front.count(FORMAT) == 1
    # nothing to report: no contact, the state is as old as the last one
    assert trigger_recorded(node) == state
    assert trigger_recorded(node) == state
    assert_untouched(node, master, wanted)
    # a reload stops everything: the offline start runs again
    old = node.processes(wanted['stopped'])['a']['pid']
    node.wait_execed(wanted['destroyed'])
    node.wait_execed(wanted['stopped'])
    mark = record_mark(node)
    assert node.ctl('reload').returncode == 0
    node.wait_running()
    wait_offline_started(node, wanted, 'the offline start after the reload')
    assert node.processes(wanted['stopped'])['a']['pid'] != old
    assert wait_recorded(node, mark) == state
    trigger_recorded(node)
    assert_untouched(node, master, wanted)
    assert master.front.count(FORMAT) == 1  # accepted once, not resent
    assert_listener_alive(node)


def test_slapgrid_mode_with_the_master_down(beside_slapgrid):
    node, master, wanted = beside_slapgrid
    master.front.refuse()
    state = start(node, wanted)
    assert state['mode'] == 'offline'
    assert 'connection failed' in state['last_error']
    master.front.reopen()
    state = trigger_sync(node)
    assert (state['mode'], state['last_error']) == ('online', '')
    assert trigger_recorded(node) == state
    assert_untouched(node, master, wanted)
    assert master.front.count(FORMAT) == 1
