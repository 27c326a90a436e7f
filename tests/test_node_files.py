"""Node files on a real supervisord: slapgrid's firewall.conf and
dbus.conf, the plugin's own supervisor_slapos.conf and an operator's file
share include_dir with the partitions; no slapos method lists, starts,
stops, rewrites or deletes them or their groups."""

import os
import sys

import pytest

from supervisor_slapos.faults import Faults
from testbed.assertions import assert_fault
from testbed.node import SLEEPER
from tests.slapgrid import node_file_text

INVALID_NAME, BAD_CONFIG = Faults.INVALID_NAME, Faults.BAD_CONFIG

LISTENER_FILE = """\
[eventlistener:slapos]
command = {python} -m supervisor_slapos.listener
events = SUPERVISOR_STATE_CHANGE_RUNNING,TICK_60
buffer_size = 100
startsecs = 0
stderr_logfile = {root}/listener.log
"""

# an operator's file; its name is no partition's, its group looks like one
OPERATOR_FILE = """\
[program:slappart0-backup]
command = sleep 3600
startsecs = 0
autostart = true
"""


@pytest.fixture
def shared_node(make_node):
    """A node whose include_dir holds a started partition, slapgrid's two
    files (the daemons are sleepers), the listener's file and an
    operator's file."""
    node = make_node(rpc_options='node_files = firewall dbus cron\n')
    node.make_partition('slappart0', run=['a'])
    daemon = node.root / 'daemon'
    daemon.write_text(SLEEPER)
    daemon.chmod(0o755)
    for name, priority in (('firewall', 5), ('dbus', 1)):
        node.include_file(f'{name}.conf').write_text(
            node_file_text(
                name,
                daemon,
                node.root / f'{name}.log',
                priority,
                directory=node.root,
                uid=os.geteuid(),
            )
        )
    node.include_file('cron.conf').write_text(
        '[program:cron]\ncommand = sleep 3600\nstartsecs = 0\n'
    )
    node.include_file('supervisor_slapos.conf').write_text(
        LISTENER_FILE.format(python=sys.executable, root=node.root)
    )
    node.include_file('operator_tools.conf').write_text(OPERATOR_FILE)
    node.start()
    assert node.rpc.slapos.startPartition('slappart0') is True
    for group in ('firewall', 'dbus', 'cron', 'slappart0-backup'):
        node.wait_execed(group)
    return node


NODE_GROUPS = ['cron', 'dbus', 'firewall', 'slapos', 'slappart0-backup']


def loaded_groups(node):
    return sorted(
        {info['group'] for info in node.rpc.supervisor.getAllProcessInfo()}
    )


def test_node_files_and_groups_are_never_listed(shared_node):
    node = shared_node
    assert loaded_groups(node) == sorted(NODE_GROUPS + ['slappart0'])
    [info] = node.rpc.slapos.getAllPartitionInfo()
    assert (info['partition_id'], info['files'], info['groups']) == (
        'slappart0',
        ['slappart0.conf'],
        ['slappart0'],
    )


@pytest.mark.parametrize('pid', ['firewall', 'dbus', 'cron'])
def test_node_files_ids_are_invalid_names_and_nothing_changes(
    shared_node, pid
):
    node = shared_node
    before = node.include_listing(), node.process_table()
    slapos = node.rpc.slapos
    for call, *args in [
        (slapos.destroyPartition, pid),
        (slapos.stopPartition, pid),
        (slapos.startPartition, pid),
        (slapos.updatePartition, pid),
        (slapos.getPartitionInfo, pid),
        (slapos.writeGroupConfig, pid, 'x', ''),
        (slapos.removeGroupConfig, pid, 'x'),
    ]:
        text = assert_fault(INVALID_NAME, call, *args)
        assert 'node_files' in text and repr(pid) in text
    assert (node.include_listing(), node.process_table()) == before


def test_groups_of_node_files_named_like_partitions_are_never_touched(
    shared_node,
):
    node = shared_node
    before = node.include_listing(), node.process_table()
    slapos = node.rpc.slapos
    # the listener's group 'slapos' and the operator's 'slappart0-backup'
    assert slapos.destroyPartition('slapos') is True
    assert slapos.updatePartition('slapos') == [[], [], []]
    assert slapos.getPartitionInfo('slapos')['groups'] == []
    assert slapos.removeGroupConfig('slappart0', 'backup') is True
    assert slapos.stopPartition('slappart0') is True
    assert slapos.destroyPartition('slappart0') is True
    listing, table = before
    del listing['slappart0.conf']
    assert node.include_listing() == listing
    assert node.process_table() == [
        row for row in table if row[0] != 'slappart0'
    ]
    assert node.rpc.supervisor.reloadConfig() == [[[], [], []]]


def test_a_partition_file_may_not_declare_a_node_group(shared_node):
    node = shared_node
    before = node.include_listing(), node.process_table()
    text = assert_fault(
        BAD_CONFIG,
        node.rpc.slapos.writeGroupConfig,
        'slappart0',
        'backup',
        OPERATOR_FILE,
    )
    assert 'slappart0-backup' in text and 'node group' in text
    assert (node.include_listing(), node.process_table()) == before


def test_startAllPartitions_never_starts_node_groups(shared_node):
    node = shared_node
    for group in NODE_GROUPS:
        node.rpc.supervisor.stopProcessGroup(group)
    node.rpc.supervisor.stopProcessGroup('slappart0')
    results = node.rpc.slapos.startAllPartitions()
    assert [(r['group'], r['name']) for r in results] == [('slappart0', 'a')]
    states = {
        (i['group'], i['statename'])
        for i in node.rpc.supervisor.getAllProcessInfo()
    }
    assert states == {(g, 'STOPPED') for g in NODE_GROUPS} | {
        ('slappart0', 'RUNNING')
    }


def test_default_node_files_are_slapgrid_s(make_node):
    node = make_node()
    node.include_file('firewall.conf').write_text(
        '[program:firewall]\ncommand = sleep 3600\nautostart = false\n'
    )
    node.start()
    assert node.rpc.slapos.getAllPartitionInfo() == []
    for pid in ('firewall', 'dbus'):
        assert_fault(INVALID_NAME, node.rpc.slapos.destroyPartition, pid)
    assert node.include_file('firewall.conf').exists()
    # any other id is a partition's, even one that exists on no node
    assert node.rpc.slapos.writeGroupConfig('cron', 'x', '') == [[], [], []]


def test_bad_node_files_option_stops_supervisord(make_node):
    node = make_node(rpc_options='node_files = firewall fire-wall\n')
    node.start(wait=False)
    assert node.process.wait(timeout=60) != 0
    assert (
        'Could not make slapos rpc interface'
        in node.process.stderr.read().decode()
    )
    assert "node_files: invalid partition id 'fire-wall'" in node.log_tail()


# groups of the main configuration loaded after supervisord's start

LATE_PROGRAMS = """
[program:slappart0-late]
command = sleep 3600
startsecs = 0
autostart = false

[program:slappart7]
command = sleep 3600
startsecs = 0
autostart = false
"""
LATE_GROUPS = ['slappart0-late', 'slappart7']


@pytest.fixture
def late_node(make_node):
    """A started partition slappart0; the main configuration then gains
    two programs named like partitions' (``slappart0-late`` and
    ``slappart7``), not loaded yet."""
    node = make_node()
    node.make_partition('slappart0', run=['a'])
    node.start()
    assert node.rpc.slapos.startPartition('slappart0') is True
    node.wait_execed('slappart0')
    with node.config.open('a') as f:
        f.write(LATE_PROGRAMS)
    return node


def load_with_supervisorctl_update(node):
    result = node.ctl('update')
    assert result.returncode == 0, result.stdout + result.stderr


def load_with_addProcessGroup(node):
    [[added, changed, removed]] = node.rpc.supervisor.reloadConfig()
    assert (sorted(added), changed, removed) == (LATE_GROUPS, [], [])
    for name in added:
        assert node.rpc.supervisor.addProcessGroup(name) is True


@pytest.mark.parametrize(
    'load', [load_with_supervisorctl_update, load_with_addProcessGroup]
)
def test_main_config_groups_loaded_later_are_no_partition_s(late_node, load):
    node = late_node
    load(node)
    assert {g: node.processes(g)[g]['statename'] for g in LATE_GROUPS} == {
        g: 'STOPPED' for g in LATE_GROUPS
    }
    slapos = node.rpc.slapos
    # not listed
    [info] = slapos.getAllPartitionInfo()
    assert (info['partition_id'], info['groups']) == (
        'slappart0',
        ['slappart0'],
    )
    assert slapos.getPartitionInfo('slappart7')['groups'] == []
    # not started by the offline start
    node.rpc.supervisor.stopProcessGroup('slappart0')
    assert [(r['group'], r['name']) for r in slapos.startAllPartitions()] == [
        ('slappart0', 'a')
    ]
    # not updated, removed or claimed by a partition's call
    assert slapos.updatePartition('slappart0') == [[], [], []]
    text = assert_fault(
        BAD_CONFIG,
        slapos.writeGroupConfig,
        'slappart0',
        'late',
        '[program:slappart0-late]\ncommand = x\n',
    )
    assert 'slappart0-late' in text and 'node group' in text
    node.wait_execed('slappart0')
    assert slapos.destroyPartition('slappart0') is True
    assert slapos.destroyPartition('slappart7') is True
    assert {
        i['group']: i['statename']
        for i in node.rpc.supervisor.getAllProcessInfo()
    } == {g: 'STOPPED' for g in LATE_GROUPS}
    assert node.include_listing() == {}
    assert node.rpc.supervisor.reloadConfig() == [[[], [], []]]
