"""``supervisorctl slapos`` against a real supervisord."""

import socket
import subprocess
import sys

import pytest

from supervisor_slapos import __version__, controllerplugin
from testbed.polling import wait_until


def test_start_status_stop_destroy(node):
    node.make_partition('slappart0', run=['a'], service=['w'])
    result = node.ctl('slapos', 'start', 'slappart0')
    assert (result.returncode, result.stdout) == (0, 'slappart0: started\n')
    node.wait_execed('slappart0')
    status = node.ctl('slapos', 'status', 'slappart0')
    lines = status.stdout.splitlines()
    assert lines[0].split() == [
        'slappart0',
        'started',
        'files:',
        'slappart0.conf',
    ]
    assert [line.split()[:2] for line in lines[1:]] == [
        ['slappart0:a', 'RUNNING'],
        ['slappart0:w-on-watch', 'RUNNING'],
    ]
    assert (
        node.ctl('slapos', 'stop', 'slappart0').stdout
        == 'slappart0: stopped\n'
    )
    assert not node.include_file('slappart0.conf').exists()
    assert node.ctl('slapos', 'destroy', 'slappart0').returncode == 5


def test_fault_exits_non_zero_with_message(node):
    result = node.ctl('slapos', 'start', '../x')
    assert result.returncode != 0
    assert result.stdout.startswith(
        "ERROR: INVALID_NAME: invalid partition id '../x'"
    )
    result = node.ctl('slapos', 'start', 'slappart7')
    assert result.returncode != 0
    assert result.stdout.startswith('ERROR: NO_PARTITION:')


def test_update_and_startall(node):
    node.make_partition('slappart0', run=['a'])
    node.ctl('slapos', 'start', 'slappart0')
    node.wait_execed('slappart0')
    assert (
        node.ctl('slapos', 'update', 'slappart0').stdout
        == 'slappart0: no change\n'
    )
    node.rpc.supervisor.stopProcess('slappart0:a')
    result = node.ctl('slapos', 'startall')
    assert result.stdout == 'slappart0:a: started\n1 started, 0 failed\n'
    wait_until(
        lambda: node.processes('slappart0')['a']['statename'] == 'RUNNING',
        what='restarted process',
    )


def test_sync(node):
    result = node.ctl('slapos', 'sync')
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == (
        'mode: unknown (no contact with the master recorded)'
    )


def test_help_slapos_prints_the_plugin_help_only(node):
    result = node.ctl('help', 'slapos')
    assert result.stdout == (
        controllerplugin.HELP + f'\n(supervisor_slapos {__version__})\n'
    )


def test_help_of_builtin_topics_prints_nothing_of_the_plugin(node, tmp_path):
    stock = tmp_path / 'stock.conf'  # the same server, without the plugin
    stock.write_text(f'[supervisorctl]\nserverurl = unix://{node.socket}\n')
    for topic in ('status', 'stop', 'update', 'frobnicate'):
        theirs = subprocess.run(
            [
                sys.executable,
                '-m',
                'supervisor.supervisorctl',
                '-c',
                str(stock),
                'help',
                topic,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert node.ctl('help', topic).stdout == theirs.stdout != ''


# a supervisord that cannot be reached


def free_loopback_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize('serverurl', ['unix', 'http'])
def test_unreachable_server_is_named_as_supervisorctl_does(
    make_node, serverurl
):
    node = make_node()  # never started: no socket
    url = (
        f'unix://{node.socket}'
        if serverurl == 'unix'
        else f'http://127.0.0.1:{free_loopback_port()}'
    )
    theirs = node.ctl('-s', url, 'stop', 'slappart0:a')
    ours = node.ctl('-s', url, 'slapos', 'stop', 'slappart0', 'slappart1')
    reason = 'no such file' if serverurl == 'unix' else 'refused connection'
    assert ours.stdout == theirs.stdout == f'{url} {reason}\n'
    assert ours.returncode == theirs.returncode != 0
    assert ours.stderr == ''


# commands with nothing to do


def test_stop_destroy_update_of_no_such_partition_say_nothing_to_do(node):
    for command, pid in (
        ('stop', 'slappart9'),
        ('destroy', 'SLAPPART0'),
        ('update', 'slappart9'),
    ):
        result = node.ctl('slapos', command, pid)
        assert (result.returncode, result.stdout) == (
            5,
            f'{pid}: nothing to {command} (no file, no group)\n',
        )
    assert node.include_listing() == {}


def test_stop_of_a_stopped_partition_says_already_stopped(node):
    node.rpc.slapos.writeGroupConfig('slappart0', 'x', '')
    result = node.ctl('slapos', 'stop', 'slappart0')
    assert (result.returncode, result.stdout) == (
        0,
        'slappart0: already stopped\n',
    )
    assert sorted(node.include_listing()) == ['slappart0-x.conf']


def test_usage_error_exits_non_zero(node):
    result = node.ctl('slapos', 'frobnicate')
    assert result.returncode != 0
    assert result.stdout.startswith("Error: unknown sub-command 'frobnicate'")
