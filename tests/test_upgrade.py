"""A slapgrid node upgraded in place: the plugin takes over its files.

slapgrid's own code (tests/slapgrid.py: ``slapos.grid.SlapObject.Partition``
where it imports, its templates elsewhere) writes the include files and
drives supervisord as it does on a node: started partitions, a stopped one,
and manager groups (``slapos.manager.portredir``'s ``P-socat``). Then:

- the plugin, loaded in that same running supervisord, manages them without
  restarting anything: ``updatePartition``/``startPartition`` on started
  partitions keep every pid, ``reloadConfig()`` shows no difference, and
  ``startAllPartitions()`` has nothing to do;
- a plain supervisord (no plugin) that ran slapgrid's files is restarted
  with the plugin added: the offline start (``startAllPartitions()``) runs
  what slapgrid ran, and the partitions are managed from there on.
"""

import re

import pytest

from tests import slapgrid

pytestmark = pytest.mark.skipif(
    slapgrid.templates_dir() is None,
    reason='needs slapos.core (slapgrid templates) installed',
)

STARTED = ('slappart0', 'slappart1')
STOPPED = 'slappart2'
SOCAT = {'socat-tcp-8080': 'sleep 3600'}


def without_plugin(config_text):
    """supervisord.conf as before the upgrade: no slapos sections."""
    return re.sub(
        r'^\[(rpcinterface|ctlplugin):slapos\]\n(?:[^[\n].*\n|\n)*',
        '',
        config_text,
        flags=re.M,
    )


def make_slapgrid_node(node):
    """Partitions as slapgrid left them, on ``node`` (running): slappart0
    and slappart1 started, slappart0 and slappart2 with a portredir group,
    slappart2 stopped since (its manager group still runs)."""
    node.make_partition(
        'slappart0', run=['apache', 'cron'], service=['monitor']
    )
    node.make_partition('slappart1', run=['zope'])
    node.make_partition('slappart2', run=['mariadb'])
    partitions = {
        pid: slapgrid.make_partition(
            node.instance_root / pid, node.include_dir, pid, node.socket
        )
        for pid in (*STARTED, STOPPED)
    }
    for pid in ('slappart0', 'slappart2'):
        partitions[pid].start()
        slapgrid.portredir(partitions[pid], SOCAT)
    partitions['slappart1'].start()
    partitions[STOPPED].stop()
    groups = ['slappart0', 'slappart0-socat', 'slappart1', 'slappart2-socat']
    for group in groups:
        node.wait_execed(group)
    assert sorted(p.name for p in node.include_dir.iterdir()) == [
        'slappart0-socat.conf',
        'slappart0.conf',
        'slappart1.conf',
        'slappart2-socat.conf',
    ]
    return groups


def running_pids(node):
    """{(group, name): pid} of every RUNNING process."""
    return {
        (info['group'], info['name']): info['pid']
        for info in node.rpc.supervisor.getAllProcessInfo()
        if info['statename'] == 'RUNNING'
    }


def partition_states(node):
    return {
        info['partition_id']: (info['state'], info['files'], info['groups'])
        for info in node.rpc.slapos.getAllPartitionInfo()
    }


EXPECTED_STATES = {
    'slappart0': (
        'started',
        ['slappart0-socat.conf', 'slappart0.conf'],
        ['slappart0', 'slappart0-socat'],
    ),
    'slappart1': ('started', ['slappart1.conf'], ['slappart1']),
    'slappart2': ('stopped', ['slappart2-socat.conf'], ['slappart2-socat']),
}


def assert_plugin_changes_nothing(node, before):
    """The plugin's calls on the already running node restart nothing."""
    rpc = node.rpc
    assert partition_states(node) == EXPECTED_STATES
    for pid in (*STARTED, STOPPED):
        assert rpc.slapos.updatePartition(pid) == [[], [], []]
    assert rpc.supervisor.reloadConfig() == [[[], [], []]]
    assert running_pids(node) == before
    for pid in STARTED:
        assert rpc.slapos.startPartition(pid) is True
    assert running_pids(node) == before
    assert rpc.supervisor.reloadConfig() == [[[], [], []]]
    assert rpc.slapos.startAllPartitions() == []
    assert running_pids(node) == before
    assert partition_states(node) == EXPECTED_STATES


def test_plugin_in_running_supervisord_manages_slapgrid_files(make_node):
    """slapgrid drove a supervisord that already had the plugin loaded
    (installing the plugin, then one reload, then slapgrid as before):
    the plugin manages slapgrid's groups as they are."""
    node = make_node().start()
    groups = make_slapgrid_node(node)
    before = running_pids(node)
    assert sorted({group for group, _ in before}) == groups
    assert len(before) == 6
    assert_plugin_changes_nothing(node, before)


def test_plain_supervisord_restarted_with_plugin(make_node):
    """A supervisord without the plugin ran slapgrid's files; it is
    restarted with the plugin in its configuration. The offline start
    runs exactly what slapgrid had running; from there on the plugin
    restarts nothing."""
    node = make_node()
    node.config.write_text(without_plugin(node.config.read_text()))
    assert '[rpcinterface:slapos]' not in node.config.read_text()
    node.start()
    make_slapgrid_node(node)
    slapgrid_running = set(running_pids(node))

    node.shutdown()
    node.write_config()  # the same configuration, plus the plugin
    node.start()
    assert running_pids(node) == {}
    results = node.rpc.slapos.startAllPartitions()
    assert {(r['group'], r['name']) for r in results} == slapgrid_running
    assert {r['status'] for r in results} == {80}  # SUCCESS
    for group in {group for group, _ in slapgrid_running}:
        node.wait_execed(group)
    after = running_pids(node)
    assert set(after) == slapgrid_running
    assert_plugin_changes_nothing(node, after)


def test_back_to_slapgrid_restarts_nothing(make_node):
    """Rolling back: slapgrid rewrites P.conf, the same bytes as the
    plugin's, so supervisord's own reloadConfig() sees no change and no
    process restarts."""
    node = make_node().start()
    make_slapgrid_node(node)
    for pid in STARTED:
        assert node.rpc.slapos.startPartition(pid) is True
    before = running_pids(node)
    plugin_text = node.include_file('slappart1.conf').read_bytes()
    partition = slapgrid.make_partition(
        node.instance_root / 'slappart1',
        node.include_dir,
        'slappart1',
        node.socket,
    )
    partition.start()
    assert node.include_file('slappart1.conf').read_bytes() == plugin_text
    assert running_pids(node) == before
    assert node.rpc.supervisor.reloadConfig() == [[[], [], []]]
    assert node.rpc.slapos.updatePartition('slappart1') == [[], [], []]
    assert running_pids(node) == before
