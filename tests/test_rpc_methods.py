"""The slapos RPC namespace, against a real supervisord."""

import threading
import xmlrpc.client

import pytest

from supervisor_slapos.faults import Faults
from supervisor_slapos.partitionconf import generate_partition_conf
from testbed.assertions import assert_fault
from testbed.node import SLEEPER, dedent
from testbed.polling import wait_until

NO_DIFFERENCE = [[[], [], []]]

MANAGER_TEXT = dedent("""
    [group:slappart0-x]
    programs=slappart0-x_agent

    [program:slappart0-x_agent]
    command=sleep 3600
    autostart=true
    startsecs=0
    """)


@pytest.fixture
def two_partitions(node):
    node.make_partition('slappart0', run=['a', 'b'], service=['w'])
    node.make_partition('slappart1', run=['a'])
    return node


# startPartition / stopPartition / destroyPartition


def test_startPartition_writes_conf_and_runs_every_process(two_partitions):
    node = two_partitions
    assert node.rpc.slapos.startPartition('slappart0') is True
    assert node.include_file(
        'slappart0.conf'
    ).read_text() == generate_partition_conf(
        str(node.instance_root), 'slappart0'
    )
    infos = node.processes('slappart0')
    assert sorted(infos) == ['a', 'b', 'w-on-watch']
    assert all(i['statename'] == 'RUNNING' for i in infos.values())
    assert node.rpc.supervisor.reloadConfig() == NO_DIFFERENCE


def test_partition_with_no_service_is_started_with_an_empty_conf(node):
    node.make_partition('slappart3')
    assert node.rpc.slapos.startPartition('slappart3') is True
    info = node.rpc.slapos.getPartitionInfo('slappart3')
    assert info['state'] == 'started'
    assert info['files'] == ['slappart3.conf']
    assert info['groups'] == [] and info['processes'] == []
    assert node.rpc.supervisor.reloadConfig() == NO_DIFFERENCE


def test_startPartition_on_started_partition_starts_what_is_not_running(
    two_partitions,
):
    node = two_partitions
    before = node.start_partition('slappart0')
    node.rpc.supervisor.stopProcess('slappart0:b')
    assert node.rpc.slapos.startPartition('slappart0') is True
    after = node.pids('slappart0')
    assert after['a'] == before['a']
    assert after['w-on-watch'] == before['w-on-watch']
    assert after['b'] not in (0, before['b'])
    assert node.group_running('slappart0')


def test_startPartition_refreshes_conf_with_new_entries(two_partitions):
    node = two_partitions
    node.rpc.slapos.startPartition('slappart0')
    node.make_partition('slappart0', run=['c'])
    assert node.rpc.slapos.startPartition('slappart0') is True
    assert 'slappart0_c' in node.include_file('slappart0.conf').read_text()
    assert sorted(node.processes('slappart0')) == ['a', 'b', 'c', 'w-on-watch']
    assert node.group_running('slappart0')
    assert node.rpc.supervisor.reloadConfig() == NO_DIFFERENCE


def test_start_stop_destroy_cycles_keep_file_iff_started(two_partitions):
    node = two_partitions
    conf = node.include_file('slappart0.conf')
    for _ in range(3):
        node.rpc.slapos.startPartition('slappart0')
        assert conf.exists()
        assert (
            node.rpc.slapos.getPartitionInfo('slappart0')['state'] == 'started'
        )
        node.wait_execed('slappart0')
        node.rpc.slapos.stopPartition('slappart0')
        assert not conf.exists()
        info = node.rpc.slapos.getPartitionInfo('slappart0')
        assert info['state'] == 'stopped' and info['groups'] == []
        assert node.rpc.supervisor.reloadConfig() == NO_DIFFERENCE
    node.start_partition('slappart0')
    assert node.rpc.slapos.destroyPartition('slappart0') is True
    assert not conf.exists()
    assert node.rpc.slapos.getPartitionInfo('slappart0')['groups'] == []
    assert node.rpc.supervisor.reloadConfig() == NO_DIFFERENCE


def test_stopPartition_on_stopped_partition_does_nothing(two_partitions):
    node = two_partitions
    before = node.include_listing()
    assert node.rpc.slapos.stopPartition('slappart0') is True
    assert node.include_listing() == before


def start_with_manager(node):
    """slappart0 started, then its manager's group slappart0-x declared
    (MANAGER_TEXT); returns once slappart0's processes run their own
    command."""
    node.rpc.slapos.startPartition('slappart0')
    node.rpc.slapos.writeGroupConfig('slappart0', 'x', MANAGER_TEXT)
    node.wait_execed('slappart0')


def test_stopPartition_keeps_manager_groups_and_files(two_partitions):
    node = two_partitions
    start_with_manager(node)
    node.wait_execed('slappart0-x')
    agent = node.pids('slappart0-x')
    node.rpc.slapos.stopPartition('slappart0')
    info = node.rpc.slapos.getPartitionInfo('slappart0')
    assert info['state'] == 'stopped'
    assert info['files'] == ['slappart0-x.conf']
    assert info['groups'] == ['slappart0-x']
    assert node.pids('slappart0-x') == agent
    assert node.rpc.supervisor.reloadConfig() == NO_DIFFERENCE


def test_destroyPartition_removes_manager_groups_and_files_too(two_partitions):
    node = two_partitions
    node.rpc.slapos.startPartition('slappart0')
    node.rpc.slapos.writeGroupConfig('slappart0', 'x', MANAGER_TEXT)
    node.wait_execed('slappart0-x')
    assert node.rpc.slapos.destroyPartition('slappart0') is True
    info = node.rpc.slapos.getPartitionInfo('slappart0')
    assert info['files'] == [] and info['groups'] == []
    assert node.rpc.supervisor.reloadConfig() == NO_DIFFERENCE


def test_destroyPartition_works_without_partition_directory(two_partitions):
    node = two_partitions
    node.start_partition('slappart1')
    for path in sorted(
        (node.instance_root / 'slappart1').rglob('*'), reverse=True
    ):
        path.unlink() if not path.is_dir() else path.rmdir()
    (node.instance_root / 'slappart1').rmdir()
    assert node.rpc.slapos.destroyPartition('slappart1') is True
    assert node.rpc.slapos.getPartitionInfo('slappart1')['files'] == []


def test_startPartition_without_directory_is_refused(node):
    before = node.include_listing()
    text = assert_fault(
        Faults.NO_PARTITION, node.rpc.slapos.startPartition, 'slappart9'
    )
    assert text.startswith('NO_PARTITION:') and 'slappart9' in text
    assert node.include_listing() == before


def test_startPartition_reports_a_process_that_cannot_spawn(node):
    partition = node.make_partition('slappart4', run=['a'])
    (partition / '.slappart4_a.log').mkdir()  # its log cannot be opened
    text = assert_fault(
        Faults.PROCESS_FAILED, node.rpc.slapos.startPartition, 'slappart4'
    )
    assert text.startswith('PROCESS_FAILED:') and 'slappart4:a' in text


# ownership: slappart1, slappart10, slappart1-x


def test_partitions_with_common_prefix_do_not_touch_each_other(node):
    for pid in ('slappart1', 'slappart10'):
        node.make_partition(pid, run=['a'])
        node.start_partition(pid)
    node.rpc.slapos.writeGroupConfig(
        'slappart1', 'x', MANAGER_TEXT.replace('slappart0', 'slappart1')
    )
    node.wait_execed('slappart1-x')
    ten = node.pids('slappart10')
    assert node.rpc.slapos.getPartitionInfo('slappart1')['files'] == [
        'slappart1-x.conf',
        'slappart1.conf',
    ]
    assert node.rpc.slapos.getPartitionInfo('slappart10')['files'] == [
        'slappart10.conf'
    ]
    node.rpc.slapos.destroyPartition('slappart1')
    assert node.include_file('slappart10.conf').exists()
    assert node.pids('slappart10') == ten
    assert node.rpc.slapos.getPartitionInfo('slappart10')['groups'] == [
        'slappart10'
    ]
    assert node.rpc.supervisor.reloadConfig() == NO_DIFFERENCE


def test_operations_on_one_partition_keep_other_pids(two_partitions):
    node = two_partitions
    node.start_partition('slappart1')
    other = node.pids('slappart1')
    node.rpc.slapos.startPartition('slappart0')
    node.rpc.slapos.writeGroupConfig('slappart0', 'x', MANAGER_TEXT)
    node.rpc.slapos.updatePartition('slappart0')
    node.wait_execed('slappart0')
    node.rpc.slapos.stopPartition('slappart0')
    node.rpc.slapos.removeGroupConfig('slappart0', 'x')
    node.rpc.slapos.startPartition('slappart0')
    node.rpc.slapos.destroyPartition('slappart0')
    node.rpc.slapos.startAllPartitions()
    assert node.pids('slappart1') == other


def test_listener_group_of_main_config_is_no_partition(make_node):
    node = make_node(
        extra=dedent("""
        [program:slapos]
        command = sleep 3600
        startsecs = 0
        """)
    ).start()
    wait_until(
        lambda: node.group_running('slapos'), what='main-config program'
    )
    before = node.pids('slapos')
    assert node.rpc.slapos.getAllPartitionInfo() == []
    assert node.rpc.slapos.destroyPartition('slapos') is True
    assert node.rpc.slapos.updatePartition('slapos') == [[], [], []]
    assert node.pids('slapos') == before


# refused input changes nothing

BAD_IDS = [
    '',
    '../x',
    'a/b',
    'slappart1-x',
    'slappart_1',
    '.',
    '..',
    'x' * 65,
    'x' * 300,
    'é',
    'slap part',
    '*',
    12,
]
BAD_SUFFIXES = ['', '-x', '../x', 'a/b', 'x' * 65, 'a b', 'a.b', 'é', 7]


@pytest.mark.parametrize('bad', BAD_IDS)
def test_every_method_refuses_an_invalid_partition_id(two_partitions, bad):
    node = two_partitions
    node.rpc.slapos.startPartition('slappart0')
    before = node.include_listing()
    groups = sorted(
        info['group'] for info in node.rpc.supervisor.getAllProcessInfo()
    )
    slapos = node.rpc.slapos
    calls = [
        (slapos.startPartition, bad),
        (slapos.stopPartition, bad),
        (slapos.destroyPartition, bad),
        (slapos.updatePartition, bad),
        (slapos.getPartitionInfo, bad),
        (slapos.writeGroupConfig, bad, 'x', MANAGER_TEXT),
        (slapos.removeGroupConfig, bad, 'x'),
    ]
    for call, *args in calls:
        text = assert_fault(Faults.INVALID_NAME, call, *args)
        assert text.startswith('INVALID_NAME:')
    assert node.include_listing() == before
    assert (
        sorted(
            info['group'] for info in node.rpc.supervisor.getAllProcessInfo()
        )
        == groups
    )


@pytest.mark.parametrize('bad', BAD_SUFFIXES)
def test_invalid_suffix_is_refused(two_partitions, bad):
    node = two_partitions
    before = node.include_listing()
    assert_fault(
        Faults.INVALID_NAME,
        node.rpc.slapos.writeGroupConfig,
        'slappart0',
        bad,
        MANAGER_TEXT,
    )
    assert_fault(
        Faults.INVALID_NAME,
        node.rpc.slapos.removeGroupConfig,
        'slappart0',
        bad,
    )
    assert node.include_listing() == before


BAD_TEXTS = {
    'not owned': '[program:slappart1_x]\ncommand=sleep 1\n',
    'prefix only': '[program:slappart0x]\ncommand=sleep 1\n',
    'supervisord': '[supervisord]\nlogfile=/tmp/x\n',
    'DEFAULT': '[DEFAULT]\ncommand=sleep 1\n',
    'empty DEFAULT': '[DEFAULT]\n[program:slappart0-x]\ncommand=sleep 1\n',
    'include': '[include]\nfiles=/etc/*.conf\n',
    'rpcinterface': (
        '[rpcinterface:x]\nsupervisor.rpcinterface_factory=os:system\n'
    ),
    'eventlistener': (
        '[eventlistener:slappart0-l]\ncommand=cat\nevents=TICK_5\n'
    ),
    'unix_http_server': '[unix_http_server]\nfile=/tmp/s\n',
    'group of P.conf': '[program:slappart0]\ncommand=sleep 1\n',
    'no header': 'command=sleep 1\n',
    'bad line': '[program:slappart0-x]\ncommand=sleep 1\n  =\n[\n',
    'bad value': '[program:slappart0-x]\ncommand=sleep 1\nstartsecs=soon\n',
    'unknown program': '[group:slappart0-x]\nprograms=slappart0-x_nope\n',
    'no command': '[program:slappart0-x]\nautostart=true\n',
    'bad expansion': '[program:slappart0-x]\ncommand=%(ENV_NOPE_X)s\n',
}


@pytest.mark.parametrize('case', sorted(BAD_TEXTS))
def test_writeGroupConfig_refuses_bad_text_and_changes_nothing(
    two_partitions, case
):
    node = two_partitions
    start_with_manager(node)
    before = node.include_listing()
    processes = node.process_table()
    text = assert_fault(
        Faults.BAD_CONFIG,
        node.rpc.slapos.writeGroupConfig,
        'slappart0',
        'x',
        BAD_TEXTS[case],
    )
    assert text.startswith('BAD_CONFIG:')
    assert node.include_listing() == before
    assert node.process_table() == processes


def test_bad_config_fault_names_file_and_line(two_partitions):
    node = two_partitions
    text = assert_fault(
        Faults.BAD_CONFIG,
        node.rpc.slapos.writeGroupConfig,
        'slappart0',
        'x',
        '[program:slappart0-x]\ncommand=sleep 1\n[supervisord]\n',
    )
    assert str(node.include_file('slappart0-x.conf')) in text
    assert 'line 3' in text


def test_nul_byte_cannot_reach_the_plugin(two_partitions):
    node = two_partitions
    before = node.include_listing()
    with pytest.raises(xmlrpc.client.ProtocolError) as info:
        node.rpc.slapos.startPartition('slap\x00part0')
    assert info.value.errcode == 400
    assert node.include_listing() == before


# updatePartition / writeGroupConfig / removeGroupConfig


def test_updatePartition_picks_up_an_edited_file(two_partitions):
    node = two_partitions
    start_with_manager(node)
    own = node.pids('slappart0')
    path = node.include_file('slappart0-x.conf')
    path.write_text(MANAGER_TEXT.replace('sleep 3600', 'sleep 3601'))
    assert node.rpc.slapos.updatePartition('slappart0') == [
        [],
        ['slappart0-x'],
        [],
    ]
    wait_until(
        lambda: node.group_running('slappart0-x'), what='restarted agent'
    )
    assert node.pids('slappart0') == own
    assert node.rpc.slapos.updatePartition('slappart0') == [[], [], []]
    assert node.rpc.supervisor.reloadConfig() == NO_DIFFERENCE
    path.unlink()
    assert node.rpc.slapos.updatePartition('slappart0') == [
        [],
        [],
        ['slappart0-x'],
    ]
    assert node.rpc.supervisor.reloadConfig() == NO_DIFFERENCE


def test_updatePartition_reports_broken_file_and_keeps_groups(two_partitions):
    node = two_partitions
    own = node.start_partition('slappart0')
    conf = node.include_file('slappart0.conf')
    conf.write_text(conf.read_text()[:40])  # truncated by an older tool
    text = assert_fault(
        Faults.BAD_CONFIG, node.rpc.slapos.updatePartition, 'slappart0'
    )
    assert str(conf) in text
    assert node.pids('slappart0') == own


def test_writeGroupConfig_then_removeGroupConfig(two_partitions):
    node = two_partitions
    assert node.rpc.slapos.writeGroupConfig(
        'slappart0', 'x', MANAGER_TEXT
    ) == [['slappart0-x'], [], []]
    assert node.include_file('slappart0-x.conf').read_text() == MANAGER_TEXT
    wait_until(
        lambda: node.group_running('slappart0-x'), what='autostart agent'
    )
    assert node.rpc.slapos.writeGroupConfig(
        'slappart0', 'x', MANAGER_TEXT
    ) == [[], [], []]
    assert node.rpc.supervisor.reloadConfig() == NO_DIFFERENCE
    node.wait_execed('slappart0-x')
    assert node.rpc.slapos.removeGroupConfig('slappart0', 'x') is True
    assert not node.include_file('slappart0-x.conf').exists()
    assert node.processes('slappart0-x') == {}
    assert node.rpc.supervisor.reloadConfig() == NO_DIFFERENCE


def test_here_and_supervisord_environment_expand_as_in_a_full_read(make_node):
    node = make_node(extra='', rpc_options='')
    node.config.write_text(
        node.config.read_text().replace(
            'identifier = test-node',
            'identifier = test-node\nenvironment = NODE_ROLE="edge"',
        )
    )
    node.start()
    text = dedent("""
        [program:slappart0-env]
        command=sh -c 'echo %(ENV_NODE_ROLE)s; exec sleep 3600'
        directory=%(here)s
        environment=EXTRA="1"
        autostart=false
        """)
    node.rpc.slapos.writeGroupConfig('slappart0', 'env', text)
    assert node.rpc.supervisor.reloadConfig() == NO_DIFFERENCE


# getPartitionInfo / getAllPartitionInfo


def test_getAllPartitionInfo_lists_partitions_with_files_or_groups(
    two_partitions,
):
    node = two_partitions
    node.rpc.slapos.startPartition('slappart0')
    node.rpc.slapos.writeGroupConfig(
        'slappart1',
        'x',
        MANAGER_TEXT.replace('slappart0', 'slappart1').replace(
            'autostart=true', 'autostart=false'
        ),
    )
    infos = node.rpc.slapos.getAllPartitionInfo()
    assert [(i['partition_id'], i['state'], i['groups']) for i in infos] == [
        ('slappart0', 'started', ['slappart0']),
        ('slappart1', 'stopped', ['slappart1-x']),
    ]
    assert [p['name'] for p in infos[0]['processes']] == [
        'a',
        'b',
        'w-on-watch',
    ]


# restart and startAllPartitions


def test_restarted_supervisord_loads_exactly_the_started_partitions(
    two_partitions,
):
    node = two_partitions
    node.make_partition('slappart2', run=['a'])
    for pid in ('slappart0', 'slappart1', 'slappart2'):
        node.rpc.slapos.startPartition(pid)
    node.rpc.slapos.writeGroupConfig(
        'slappart1',
        'x',
        MANAGER_TEXT.replace('slappart0', 'slappart1').replace(
            'autostart=true', 'autostart=false'
        ),
    )
    for pid in ('slappart0', 'slappart1', 'slappart2'):
        node.wait_execed(pid)
    node.rpc.slapos.stopPartition('slappart1')
    node.rpc.slapos.destroyPartition('slappart2')
    node.shutdown()
    node.start()
    groups = {
        info['group'] for info in node.rpc.supervisor.getAllProcessInfo()
    }
    assert groups == {'slappart0', 'slappart1-x'}
    results = node.rpc.slapos.startAllPartitions()
    assert sorted(
        (r['group'], r['name'], r['description']) for r in results
    ) == [
        ('slappart0', 'a', 'OK'),
        ('slappart0', 'b', 'OK'),
        ('slappart0', 'w-on-watch', 'OK'),
        ('slappart1-x', 'slappart1-x_agent', 'OK'),
    ]
    assert node.group_running('slappart0')
    assert node.group_running('slappart1-x')


def test_startAllPartitions_gives_a_destroy_in_progress_only_its_prerm(
    two_partitions,
):
    """slapgrid's prerm manager keeps <instance_root>/P/.slapos-report-
    wait-service-list while P's prerm scripts run, and P.conf beside
    P-prerm.conf: only P-prerm may run then, P and its managers may not."""
    node = two_partitions
    for pid in ('slappart0', 'slappart1'):
        assert node.rpc.slapos.startPartition(pid) is True
    for suffix in ('x', 'prerm'):
        node.rpc.slapos.writeGroupConfig(
            'slappart0',
            suffix,
            MANAGER_TEXT.replace('-x', f'-{suffix}').replace(
                'autostart=true', 'autostart=false'
            ),
        )
    node.include_file('slappart1-x.conf').write_text(
        MANAGER_TEXT.replace('slappart0', 'slappart1')
    )
    assert node.rpc.slapos.updatePartition('slappart1') == [
        ['slappart1-x'],
        [],
        [],
    ]
    for group in ('slappart0', 'slappart1', 'slappart1-x'):
        node.wait_execed(group)
        node.rpc.supervisor.stopProcessGroup(group)
    (
        node.instance_root / 'slappart0' / '.slapos-report-wait-service-list'
    ).write_text('slappart0-prerm:slappart0-prerm_agent\n')
    results = node.rpc.slapos.startAllPartitions()
    assert sorted(
        (r['group'], r['name'], r['description']) for r in results
    ) == [
        ('slappart0-prerm', 'slappart0-prerm_agent', 'OK'),
        ('slappart1', 'a', 'OK'),
        ('slappart1-x', 'slappart1-x_agent', 'OK'),
    ]
    states = {
        (i['group'], i['name']): i['statename']
        for i in node.rpc.supervisor.getAllProcessInfo()
    }
    assert {
        key: state
        for key, state in states.items()
        if key[0].startswith('slappart0')
    } == {
        ('slappart0', 'a'): 'STOPPED',
        ('slappart0', 'b'): 'STOPPED',
        ('slappart0', 'w-on-watch'): 'STOPPED',
        ('slappart0-x', 'slappart0-x_agent'): 'STOPPED',
        ('slappart0-prerm', 'slappart0-prerm_agent'): 'RUNNING',
    }


def test_startAllPartitions_keeps_supervisord_answering(make_node):
    count = 150
    node = make_node()
    for index in range(count):
        pid = f'slappart{index}'
        node.make_partition(pid, run={'a': SLEEPER, 'b': SLEEPER})
        node.include_file(f'{pid}.conf').write_text(
            generate_partition_conf(str(node.instance_root), pid)
        )
    node.start()
    answers = []
    done = threading.Event()

    def ask_state():
        rpc = node.rpc
        while not done.is_set():
            answers.append(rpc.supervisor.getState()['statename'])

    watcher = threading.Thread(target=ask_state)
    watcher.start()
    try:
        wait_until(lambda: answers, what='a first answer')
        seen_before = len(answers)
        results = node.rpc.slapos.startAllPartitions()
        answered_during = len(answers) - seen_before
    finally:
        done.set()
        watcher.join()
    assert len(results) == 2 * count
    assert all(r['description'] == 'OK' for r in results)
    assert answered_during > 1
    infos = node.rpc.supervisor.getAllProcessInfo()
    assert sum(i['statename'] == 'RUNNING' for i in infos) == 2 * count


def test_getSyncState_without_listener_is_unknown(node):
    assert node.rpc.slapos.getSyncState() == {
        'mode': 'unknown',
        'master_url': '',
        'last_attempt': 0.0,
        'last_success': 0.0,
        'last_error': '',
    }


def test_api_version_and_state_dir(node):
    assert node.rpc.slapos.getAPIVersion() == '1.0'
    assert node.rpc.slapos.getStateDir() == str(node.include_dir.parent)


# wait=False, and calls queued on one partition


def test_stop_without_wait_finishes_in_the_background(two_partitions):
    node = two_partitions
    node.start_partition('slappart0')
    assert node.rpc.slapos.stopPartition('slappart0', False) is True
    wait_until(
        lambda: (
            node.processes('slappart0') == {}
            and not node.include_file('slappart0.conf').exists()
        ),
        what='group removed and file deleted by the background job',
    )
    assert node.rpc.supervisor.reloadConfig() == NO_DIFFERENCE


def test_start_queued_behind_a_pending_stop_ends_started(two_partitions):
    node = two_partitions
    node.start_partition('slappart0')
    node.rpc.slapos.stopPartition('slappart0', False)
    assert node.rpc.slapos.startPartition('slappart0') is True
    assert node.include_file('slappart0.conf').exists()
    assert node.group_running('slappart0')
    assert node.rpc.supervisor.reloadConfig() == NO_DIFFERENCE
