"""``supervisorctl slapos`` with a dummy controller and proxy."""
import io
import xmlrpc.client

import pytest

from supervisor_slapos import controllerplugin

INFO = {'partition_id': 'slappart0', 'state': 'started',
        'files': ['slappart0.conf'], 'groups': ['slappart0'],
        'processes': [{'name': 'a', 'group': 'slappart0', 'pid': 42,
                       'statename': 'RUNNING'},
                      {'name': 'b', 'group': 'slappart0', 'pid': 0,
                       'statename': 'STOPPED'}]}


class DummySlapos:
    """Answers like the RPC namespace; faults for partition 'bad'."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, method):
        def call(*args):
            self.calls.append((method, *args))
            if 'bad' in args:
                raise xmlrpc.client.Fault(301, "INVALID_NAME: 'bad'")
            if 'boom' in args:
                raise xmlrpc.client.Fault(2, 'INCORRECT_PARAMETERS')
            return ANSWERS[method]
        return call


ANSWERS = {
    'getPartitionInfo': INFO,
    'getAllPartitionInfo': [INFO],
    'startPartition': True, 'stopPartition': True, 'destroyPartition': True,
    'updatePartition': [['slappart0-x'], [], ['slappart0-y']],
    'startAllPartitions': [
        {'name': 'a', 'group': 'slappart0', 'status': 80, 'description': 'OK'},
        {'name': 'b', 'group': 'slappart0', 'status': 50,
         'description': 'SPAWN_ERROR: slappart0:b'}],
    'getSyncState': {'mode': 'offline', 'master_url': 'http://m',
                     'last_attempt': 1.0, 'last_success': 0.0,
                     'last_error': 'refused'},
}


class DummyController:
    def __init__(self):
        self.stdout = io.StringIO()
        self.exitstatus = 0
        self.slapos = DummySlapos()

    def output(self, text):
        assert isinstance(text, str)
        self.stdout.write(text + '\n')

    def get_server_proxy(self, namespace):
        assert namespace == 'slapos'
        return self.slapos


@pytest.fixture
def ctl():
    return DummyController()


def run(ctl, arg):
    plugin = controllerplugin.make_slapos_controllerplugin(ctl)
    plugin.do_slapos(arg)
    return ctl.stdout.getvalue()


def test_factory_makes_the_plugin(ctl):
    plugin = controllerplugin.make_slapos_controllerplugin(ctl)
    assert isinstance(plugin, controllerplugin.SlaposControllerPlugin)
    assert plugin.name == 'slapos'


def test_status_of_all_partitions(ctl):
    assert run(ctl, 'status') == (
        'slappart0                started  files: slappart0.conf\n'
        '  slappart0:a                      RUNNING   pid 42\n'
        '  slappart0:b                      STOPPED\n')
    assert ctl.slapos.calls == [('getAllPartitionInfo',)]
    assert ctl.exitstatus == 0


def test_status_of_named_partitions(ctl):
    run(ctl, 'status slappart0 slappart1')
    assert ctl.slapos.calls == [('getPartitionInfo', 'slappart0'),
                                ('getPartitionInfo', 'slappart1')]


@pytest.mark.parametrize('command, method, word', [
    ('start', 'startPartition', 'started'),
    ('stop', 'stopPartition', 'stopped'),
    ('destroy', 'destroyPartition', 'destroyed')])
def test_partition_commands(ctl, command, method, word):
    assert run(ctl, f'{command} slappart0 slappart1') == (
        f'slappart0: {word}\nslappart1: {word}\n')
    assert ctl.slapos.calls == [(method, 'slappart0'), (method, 'slappart1')]
    assert ctl.exitstatus == 0


def test_update_prints_changes(ctl):
    assert run(ctl, 'update slappart0') == (
        'slappart0: added: slappart0-x; removed: slappart0-y\n')


def test_fault_prints_message_goes_on_and_sets_exit_status(ctl):
    assert run(ctl, 'start bad slappart0') == (
        "ERROR: INVALID_NAME: 'bad'\nslappart0: started\n")
    assert ctl.exitstatus == 1


def test_unknown_fault_is_raised(ctl):
    with pytest.raises(xmlrpc.client.Fault):
        run(ctl, 'start boom')


def test_startall_reports_failures(ctl):
    assert run(ctl, 'startall') == (
        'slappart0:a: started\n'
        'slappart0:b: ERROR (SPAWN_ERROR: slappart0:b)\n'
        '1 started, 1 failed\n')
    assert ctl.exitstatus == 1


def test_sync_prints_state(ctl):
    out = run(ctl, 'sync')
    assert out.startswith('mode: offline\nmaster_url: http://m\n'
                          'last_attempt: ')
    assert 'last_success: never\nlast_error: refused\n' in out


@pytest.mark.parametrize('arg, message', [
    ('', 'Error: slapos requires a sub-command'),
    ('bogus', "Error: unknown sub-command 'bogus'"),
    ('start', 'Error: slapos start requires a partition'),
    ('startall x', 'Error: slapos startall accepts no arguments'),
    ('sync x', 'Error: slapos sync accepts no arguments'),
    ('status "unclosed', 'Error: No closing quotation'),
])
def test_usage_errors_print_help_and_set_exit_status(ctl, arg, message):
    out = run(ctl, arg)
    assert out.startswith(message + '\n')
    assert 'slapos status [P ...]\t' in out
    assert ctl.exitstatus == 1
    assert ctl.slapos.calls == []


def test_help_lists_every_sub_command(ctl):
    plugin = controllerplugin.make_slapos_controllerplugin(ctl)
    plugin.help_slapos()
    commands = [line.split('\t')[0].split()[1]
                for line in ctl.stdout.getvalue().splitlines()]
    assert commands == ['status', 'start', 'stop', 'destroy', 'update',
                        'startall', 'sync']
