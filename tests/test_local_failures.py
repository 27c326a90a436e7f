"""What a bad file, a half-done destroy, a lack of descriptors or a file
rewritten behind the plugin's back does to a node, against a real
supervisord: each is the failure of what it touches, said plainly, and
nothing else stops.
"""

import os
import re
import time

import pytest
from supervisor.xmlrpc import Faults as SupervisorFaults

from supervisor_slapos.declarations import TIMESTAMP_GRANULARITY_NS
from supervisor_slapos.faults import Faults
from supervisor_slapos.ownership import DESTROY_WAIT_LIST
from supervisor_slapos.partitionconf import generate_partition_conf
from testbed.assertions import assert_fault
from testbed.node import dedent
from testbed.polling import wait_until

SUCCESS = SupervisorFaults.SUCCESS


def manager_text(name, command='sleep 3600', autostart='false', extra=''):
    """A manager's file of one program ``name`` (its own group)."""
    return dedent(f"""
        [program:{name}]
        command={command}
        autostart={autostart}
        startsecs=0
        {extra}
        """)


def outcomes(results):
    return {(r['group'], r['name']): r['status'] == SUCCESS for r in results}


def states(node):
    return {
        (i['group'], i['name']): i['statename']
        for i in node.rpc.supervisor.getAllProcessInfo()
    }


def write_partition_confs(node, count, run=('a',)):
    """``count`` partitions with their P.conf already written, as a
    reboot finds them (loaded, not running, at supervisord's start)."""
    for index in range(count):
        pid = f'slappart{index}'
        node.make_partition(pid, run=list(run))
        node.include_file(f'{pid}.conf').write_text(
            generate_partition_conf(str(node.instance_root), pid)
        )


# one bad program never stops the offline start (issue 25.2)


@pytest.mark.parametrize(
    'bad, state',
    [
        ('command=/bin/sl\0eep 3600', 'STOPPED'),  # refused before its spawn
        ('command=sleep 3600\nstdout_logfile=/tmp/x\0y', 'FATAL'),
    ],
)
def test_startAllPartitions_one_bad_program_never_stops_the_others(
    make_node, bad, state
):
    """supervisord's own read takes a NUL byte in a command or a path; its
    spawn then raises (not an OSError): that process's failure only, and
    the process ends as supervisor's failed spawns do (never RUNNING with
    no pid)."""
    node = make_node()
    node.make_partition('slappart0')
    node.make_partition('slappart1')
    node.include_file('slappart0-x.conf').write_text(
        manager_text('slappart0-x_bad').replace('command=sleep 3600', bad)
    )
    node.include_file('slappart1-x.conf').write_text(
        manager_text('slappart1-x_good')
    )
    node.start()
    results = node.rpc.slapos.startAllPartitions()
    assert outcomes(results) == {
        ('slappart0-x_bad', 'slappart0-x_bad'): False,
        ('slappart1-x_good', 'slappart1-x_good'): True,
    }
    [bad] = [r for r in results if r['status'] != SUCCESS]
    assert 'null byte' in bad['description'], bad
    # (getPartitionInfo: supervisor's getAllProcessInfo would send the
    # NUL byte of the bad one's log file, which XML cannot carry)
    [good] = node.rpc.slapos.getPartitionInfo('slappart1')['processes']
    assert good['statename'] == 'RUNNING'
    assert node.rpc.supervisor.getState()['statename'] == 'RUNNING'
    [info] = node.rpc.slapos.getPartitionInfo('slappart0')['processes']
    assert (info['statename'], info['pid']) == (state, 0)
    result = node.ctl('slapos', 'startall')
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'slappart0-x_bad:slappart0-x_bad: ERROR' in result.stdout
    assert '0 started, 1 failed' in result.stdout


@pytest.mark.parametrize(
    'line',
    [
        'environment=A="x\0y"',
        'stdout_logfile=/tmp/x\0y',
        'command=sleep "3600',
        'environment="A=B"="c"',
    ],
)
def test_a_file_supervisor_would_fail_to_spawn_is_bad_config(node, line):
    """A NUL byte anywhere, a command that does not split, an environment
    name holding "=": supervisor loads such a file, then fails at spawn
    (or dies: autostart on, a NUL byte raises in its transition()). The
    plugin refuses it at parse, naming the file, and changes nothing."""
    node.make_partition('slappart0', run=['a'])
    node.start_partition('slappart0')
    conf = node.include_file('slappart0-x.conf')
    conf.write_text(
        manager_text('slappart0-x_agent', autostart='true').replace(
            'startsecs=0', f'startsecs=0\n{line}'
        )
    )
    table = node.process_table()
    result = node.ctl('slapos', 'update', 'slappart0')
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'BAD_CONFIG' in result.stdout and str(conf) in result.stdout, (
        result.stdout
    )
    assert_fault(
        Faults.BAD_CONFIG, node.rpc.slapos.updatePartition, 'slappart0'
    )
    assert node.process_table() == table
    assert node.rpc.supervisor.getState()['statename'] == 'RUNNING'


def test_writeGroupConfig_refuses_a_command_that_does_not_split(node):
    node.make_partition('slappart0')
    listing = node.include_listing()
    fault = assert_fault(
        Faults.BAD_CONFIG,
        node.rpc.slapos.writeGroupConfig,
        'slappart0',
        'x',
        manager_text('slappart0-x_a', command='sleep "1'),
    )
    assert "slappart0-x.conf" in fault
    assert node.include_listing() == listing


# what the offline start says (issue 27.2)


def test_startAllPartitions_logs_what_it_started_and_nothing_else(make_node):
    node = make_node()
    write_partition_confs(node, 7)
    node.start()
    results = node.rpc.slapos.startAllPartitions()
    assert len(results) == 7 and all(r['status'] == SUCCESS for r in results)
    assert (
        'slapos: startAllPartitions: started 7 processes of 7 '
        'partitions: slappart0, slappart1, slappart2, slappart3, '
        'slappart4 and 2 more partitions'
    ) in node.log_text()
    assert node.rpc.slapos.startAllPartitions() == []
    assert node.log_text().count('startAllPartitions:') == 1


# a destroy left half-done (issue 25.6)


def test_a_destroy_under_way_reads_destroying_and_is_logged(make_node):
    node = make_node()
    write_partition_confs(node, 2)
    node.start()
    (node.instance_root / 'slappart0' / DESTROY_WAIT_LIST).write_text('')
    info = node.rpc.slapos.getPartitionInfo('slappart0')
    assert info['state'] == 'destroying'
    assert node.rpc.slapos.getPartitionInfo('slappart1')['state'] == 'started'
    assert {
        i['partition_id']: i['state']
        for i in node.rpc.slapos.getAllPartitionInfo()
    } == {'slappart0': 'destroying', 'slappart1': 'started'}
    status = node.ctl('slapos', 'status')
    assert re.search(r'^slappart0 +destroying ', status.stdout, re.M), (
        status.stdout
    )
    for calls in (1, 2):
        results = node.rpc.slapos.startAllPartitions()
        assert (
            node.log_text().count(
                'startAllPartitions: slappart0 is being destroyed'
            )
            == calls
        )
    assert node.processes('slappart0')['a']['statename'] == 'STOPPED'
    assert 'spared: slappart0' in node.log_text()
    assert outcomes(results) == {}  # slappart1's started at the first call


# the declarations cache (issue 25.4)


def test_a_file_rewritten_in_place_with_its_mtime_put_back_is_seen(make_node):
    """Same inode, same size, same mtime (as rsync -t, tar, cp -p leave
    it): only the ctime tells, and the plugin sees it."""
    node = make_node()
    node.make_partition('slappart0')
    conf = node.include_file('slappart0-x.conf')
    conf.write_text(manager_text('slappart0-x_a'))
    node.start()
    # the first read well after the file's last change: trusted
    ctime = conf.stat().st_ctime_ns
    wait_until(
        lambda: time.time_ns() > ctime + 2 * TIMESTAMP_GRANULARITY_NS,
        30,
        interval=0.1,
        what='the file older than the granularity',
    )
    assert outcomes(node.rpc.slapos.startAllPartitions()) == {
        ('slappart0-x_a', 'slappart0-x_a'): True
    }
    before = conf.stat()
    with open(conf, 'r+b') as f:
        f.write(manager_text('slappart0-x_b').encode())
    os.utime(conf, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = conf.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    result = node.ctl('update')
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcomes(node.rpc.slapos.startAllPartitions()) == {
        ('slappart0-x_b', 'slappart0-x_b'): True
    }
    assert node.group_running('slappart0-x_b')


# updatePartition of a started partition (issue 25.7)


def test_updatePartition_runs_again_what_ran_in_a_started_partition(make_node):
    node = make_node()
    node.make_partition('slappart0', run=['a', 'b'])
    node.start()
    before = node.start_partition('slappart0')
    node.rpc.supervisor.stopProcess('slappart0:b')  # stopped by hand
    conf = node.include_file('slappart0.conf')
    conf.write_text(
        conf.read_text().replace('stopwaitsecs=60', 'stopwaitsecs=61')
    )
    assert node.rpc.slapos.updatePartition('slappart0') == [
        [],
        ['slappart0'],
        [],
    ]
    infos = node.processes('slappart0')
    assert infos['a']['statename'] == 'RUNNING'
    assert infos['a']['pid'] not in (0, before['a'])
    assert infos['b']['statename'] == 'STOPPED'  # it was not running
    assert node.rpc.slapos.getPartitionInfo('slappart0')['state'] == 'started'


def test_startPartition_runs_again_what_ran_in_a_changed_manager_group(
    make_node,
):
    """startPartition applies every file of the partition: a manager's
    file changed on disk keeps its running program running."""
    node = make_node()
    node.make_partition('slappart0', run=['a'])
    node.start()
    node.rpc.slapos.writeGroupConfig(
        'slappart0', 'x', manager_text('slappart0-x_agent')
    )
    node.start_partition('slappart0')
    node.rpc.supervisor.startProcess('slappart0-x_agent:slappart0-x_agent')
    node.wait_execed('slappart0-x_agent')
    before = node.pids('slappart0-x_agent')
    conf = node.include_file('slappart0-x.conf')
    conf.write_text(
        conf.read_text().replace('startsecs=0', 'startsecs=0\nstartretries=2')
    )
    assert node.rpc.slapos.startPartition('slappart0') is True
    [info] = node.processes('slappart0-x_agent').values()
    assert info['statename'] == 'RUNNING'
    assert info['pid'] not in (0, before['slappart0-x_agent'])


# a spawn out of descriptors (issue 24, "Descriptors")


def test_a_spawn_out_of_descriptors_names_the_limit(make_node):
    """supervisord under a hard limit of 64 open files, 40 processes to
    start: those it cannot spawn say which limit and what to do."""
    node = make_node()
    # a node file (not a partition's): minfds under the limit, or
    # supervisord refuses to start
    node.include_file('node_limits.conf').write_text(
        '[supervisord]\nminfds = 64\n'
    )
    write_partition_confs(node, 20, run=('a', 'b'))
    node.command_prefix = ('prlimit', '--nofile=64:64')
    node.start()
    result = node.ctl('slapos', 'startall')
    failed = [line for line in result.stdout.splitlines() if ': ERROR' in line]
    assert failed, result.stdout + result.stderr
    for line in failed:
        assert 'RLIMIT_NOFILE) is soft 64, hard 64' in line, line
        assert 'minfds' in line, line


def test_a_long_offline_start_says_how_far_it_is():
    """(unit) One progress line per STARTALL_PROGRESS_SECONDS of spawning,
    none before: a start of 1000 partitions takes seconds."""
    from supervisor_slapos.operations import (
        STARTALL_PROGRESS_SECONDS,
        Progress,
    )

    now, lines = {'t': 0.0}, []
    progress = Progress(40, lines.append, clock=lambda: now['t'])
    for _ in range(40):
        now['t'] += 1.0  # a spawn a second, at most a line per period
        progress.one_more()
    period = int(STARTALL_PROGRESS_SECONDS)
    assert lines == [
        f'startAllPartitions: {done} of 40 processes spawned so far'
        for done in range(period, 41, period)
    ]
