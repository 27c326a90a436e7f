"""``supervisorctl slapos`` with a dummy controller and proxy."""

import errno
import io
import sys
import xmlrpc.client
from xml.parsers.expat import ExpatError

import pytest
from supervisor.supervisorctl import Controller, DefaultControllerPlugin
from supervisor.xmlrpc import Faults as SupervisorFaults

from supervisor_slapos import controllerplugin, internals, nodecheck
from supervisor_slapos.faults import fault_codes

SERVERURL = 'unix:///srv/supervisord.sock'

INFO = {
    'partition_id': 'slappart0',
    'state': 'started',
    'files': ['slappart0.conf'],
    'groups': ['slappart0'],
    'processes': [
        {'name': 'a', 'group': 'slappart0', 'pid': 42, 'statename': 'RUNNING'},
        {'name': 'b', 'group': 'slappart0', 'pid': 0, 'statename': 'STOPPED'},
    ],
}


def stopped_info(pid, files=()):
    return {
        'partition_id': pid,
        'state': 'stopped',
        'files': list(files),
        'groups': [],
        'processes': [],
    }


class DummySlapos:
    """Answers like the RPC namespace. ``infos`` holds getPartitionInfo's
    answers (default: INFO); ``errors`` maps a partition id, or a method
    name, to what the call raises."""

    def __init__(self):
        self.calls = []
        self.infos = {}
        self.errors = {'bad': xmlrpc.client.Fault(301, "INVALID_NAME: 'bad'")}

    def __getattr__(self, method):
        def call(*args):
            self.calls.append((method, *args))
            for key in (method, *args):
                if key in self.errors:
                    raise self.errors[key]
            if method == 'getPartitionInfo':
                return self.infos.get(args[0], INFO)
            return ANSWERS[method]

        return call


ANSWERS = {
    'getAllPartitionInfo': [INFO],
    'startPartition': True,
    'stopPartition': True,
    'destroyPartition': True,
    'updatePartition': [['slappart0-x'], [], ['slappart0-y']],
    'startAllPartitions': [
        {'name': 'a', 'group': 'slappart0', 'status': 80, 'description': 'OK'},
        {
            'name': 'b',
            'group': 'slappart0',
            'status': 50,
            'description': 'SPAWN_ERROR: slappart0:b',
        },
    ],
    'getAPIVersion': '1.0',
    'getSyncState': {
        'mode': 'offline',
        'master_url': 'http://m',
        'last_attempt': 1.0,
        'last_success': 0.0,
        'last_error': 'refused',
    },
}


class DummyOptions:
    serverurl = SERVERURL

    def __init__(self):
        self.plugins = []


class DummyController:
    """What the plugin uses of supervisorctl's Controller."""

    nohelp = '*** No help on %s'

    def __init__(self):
        self.stdout = io.StringIO()
        self.exitstatus = 0
        self.options = DummyOptions()
        self.slapos = DummySlapos()

    def output(self, text):
        assert isinstance(text, str)
        self.stdout.write(text + '\n')

    def get_server_proxy(self, namespace):
        assert namespace == 'slapos'
        return self.slapos

    def help_help(self):
        self.output('help\t\tPrint a list of available actions')

    def print_topics(self, header, cmds, cmdlen, maxcol):
        self.output(f'{header} {" ".join(cmds)}')


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


# status


def test_status_of_all_partitions(ctl):
    assert run(ctl, 'status') == (
        'slappart0                started    files: slappart0.conf\n'
        '  slappart0:a                      RUNNING   pid 42\n'
        '  slappart0:b                      STOPPED\n'
    )
    assert ctl.slapos.calls == [('getAllPartitionInfo',)]
    assert ctl.exitstatus == 0


def test_status_shows_the_last_background_error(ctl):
    ctl.slapos.infos['slappart0'] = dict(
        INFO,
        processes=[],
        last_error='FILE_ERROR: No space left on device (/x/slappart0.conf)',
    )
    assert run(ctl, 'status slappart0') == (
        'slappart0                started    files: slappart0.conf\n'
        '  last error: FILE_ERROR: No space left on device '
        '(/x/slappart0.conf)\n'
    )


def test_status_columns_line_up_whatever_the_state(ctl):
    ctl.slapos.infos['slappart1'] = dict(
        stopped_info('slappart1'),
        state='destroying',
        files=['slappart1.conf'],
    )
    lines = run(ctl, 'status slappart0 slappart1').splitlines()
    partition_lines = [line for line in lines if line.startswith('slappart')]
    assert [line.split()[1] for line in partition_lines] == [
        'started',
        'destroying',
    ]
    assert len({line.index('files:') for line in partition_lines}) == 1


def test_status_of_named_partitions(ctl):
    run(ctl, 'status slappart0 slappart1')
    assert ctl.slapos.calls == [
        ('getPartitionInfo', 'slappart0'),
        ('getPartitionInfo', 'slappart1'),
    ]


# start, stop, destroy, update


def test_start_calls_startPartition_for_each(ctl):
    assert run(ctl, 'start slappart0 slappart1') == (
        'slappart0: started\nslappart1: started\n'
    )
    assert ctl.slapos.calls == [
        ('startPartition', 'slappart0'),
        ('startPartition', 'slappart1'),
    ]
    assert ctl.exitstatus == 0


@pytest.mark.parametrize(
    'command, method, word',
    [
        ('stop', 'stopPartition', 'stopped'),
        ('destroy', 'destroyPartition', 'destroyed'),
    ],
)
def test_stop_and_destroy_look_then_call(ctl, command, method, word):
    assert run(ctl, f'{command} slappart0 slappart1') == (
        f'slappart0: {word}\nslappart1: {word}\n'
    )
    assert ctl.slapos.calls == [
        ('getPartitionInfo', 'slappart0'),
        (method, 'slappart0'),
        ('getPartitionInfo', 'slappart1'),
        (method, 'slappart1'),
    ]
    assert ctl.exitstatus == 0


def test_update_prints_changes(ctl):
    assert run(ctl, 'update slappart0') == (
        'slappart0: added: slappart0-x; removed: slappart0-y\n'
    )


@pytest.mark.parametrize(
    'command, method',
    [
        ('stop', 'stopPartition'),
        ('destroy', 'destroyPartition'),
        ('update', 'updatePartition'),
    ],
)
def test_partition_with_no_file_and_no_group_is_nothing_to_do(
    ctl, command, method
):
    ctl.slapos.infos['slappart9'] = stopped_info('slappart9')
    assert run(ctl, f'{command} slappart9').splitlines() == [
        f'slappart9: nothing to {command} (no file, no group)'
    ]
    assert ctl.slapos.calls == [
        ('getPartitionInfo', 'slappart9'),
        (method, 'slappart9'),
    ]  # idempotent: harmless
    assert ctl.exitstatus == 5


def test_a_failure_status_wins_over_nothing_to_do(ctl):
    ctl.slapos.infos['slappart9'] = stopped_info('slappart9')
    assert run(ctl, 'stop bad slappart9 slappart0') == (
        "ERROR: INVALID_NAME: 'bad'\n"
        'slappart9: nothing to stop (no file, no group)\n'
        'slappart0: stopped\n'
    )
    assert ctl.exitstatus == 1
    ctl.exitstatus = 0
    run(ctl, 'stop slappart9 bad')
    assert ctl.exitstatus == 1


def test_stop_of_a_stopped_partition_with_manager_files_says_so(ctl):
    ctl.slapos.infos['slappart0'] = stopped_info(
        'slappart0', ['slappart0-x.conf']
    )
    assert run(ctl, 'stop slappart0') == 'slappart0: already stopped\n'
    assert ctl.exitstatus == 0


def test_stop_of_a_loaded_group_without_its_file_stops_it(ctl):
    info = dict(stopped_info('slappart0'), groups=['slappart0'])
    ctl.slapos.infos['slappart0'] = info
    assert run(ctl, 'stop slappart0') == 'slappart0: stopped\n'


# faults and errors


def test_fault_prints_message_goes_on_and_sets_exit_status(ctl):
    assert run(ctl, 'start bad slappart0') == (
        "ERROR: INVALID_NAME: 'bad'\nslappart0: started\n"
    )
    assert ctl.exitstatus == 1


def test_fault_of_the_look_before_stop_skips_the_stop(ctl):
    assert run(ctl, 'stop bad') == "ERROR: INVALID_NAME: 'bad'\n"
    assert ctl.slapos.calls == [('getPartitionInfo', 'bad')]
    assert ctl.exitstatus == 1


@pytest.mark.parametrize('code', sorted(fault_codes()))
def test_every_slapos_fault_prints_its_message(ctl, code):
    ctl.slapos.errors['startPartition'] = xmlrpc.client.Fault(
        code, 'FAULT_NAME: No space left on device'
    )
    assert run(ctl, 'start slappart0') == (
        'ERROR: FAULT_NAME: No space left on device (slappart0)\n'
    )
    assert ctl.exitstatus == 1


@pytest.mark.parametrize(
    'key, error, arg, expected',
    [
        (
            'startPartition',
            xmlrpc.client.Fault(
                SupervisorFaults.SHUTDOWN_STATE, 'SHUTDOWN_STATE'
            ),
            'start slappart0',
            'ERROR: SHUTDOWN_STATE (slappart0)\n',
        ),
        (
            'startPartition',
            xmlrpc.client.Fault(
                SupervisorFaults.FAILED,
                'FAILED: TypeError: x (see supervisord log)',
            ),
            'start slappart0',
            'ERROR: FAILED: TypeError: x (see supervisord log) (slappart0)\n',
        ),
        (
            'slappart1',
            xmlrpc.client.Fault(0, 'UNKNOWN: internal error'),
            'start slappart1 slappart0',
            'ERROR: unexpected fault 0: UNKNOWN: internal error (slappart1)\n'
            'slappart0: started\n',
        ),
        (
            'getSyncState',
            xmlrpc.client.Fault(
                SupervisorFaults.UNKNOWN_METHOD, 'UNKNOWN_METHOD'
            ),
            'sync',
            'ERROR: supervisord does not know slapos.getSyncState '
            '(no [rpcinterface:slapos], or an older one)\n',
        ),
        (
            'slappart1',
            xmlrpc.client.ProtocolError(
                'localhost/RPC2', 500, 'Internal Server Error', {}
            ),
            'start slappart1 slappart0',
            f'ERROR: {SERVERURL} answered HTTP 500 Internal Server Error '
            '(slappart1)\n'
            'slappart0: started\n',
        ),
        (
            'getAllPartitionInfo',
            ExpatError('syntax error: line 1, column 0'),
            'status',
            f'ERROR: {SERVERURL} answered no XML-RPC: '
            'syntax error: line 1, column 0\n',
        ),
    ],
    ids=[
        'shutdown',
        'failed',
        'unknown-fault',
        'unknown-method',
        'http-500',
        'not-xmlrpc',
    ],
)
def test_other_errors_print_one_line_and_the_others_go_on(
    ctl, key, error, arg, expected
):
    ctl.slapos.errors[key] = error
    assert run(ctl, arg) == expected
    assert ctl.exitstatus == 1


def test_http_401_goes_to_supervisorctl_which_asks_for_credentials(ctl):
    ctl.slapos.errors['startPartition'] = xmlrpc.client.ProtocolError(
        'localhost/RPC2', 401, 'Unauthorized', {}
    )
    with pytest.raises(xmlrpc.client.ProtocolError):
        run(ctl, 'start slappart0')


@pytest.mark.parametrize(
    'error, message, status',
    [
        (
            FileNotFoundError(errno.ENOENT, 'No such file or directory'),
            f'{SERVERURL} no such file',
            7,
        ),
        (
            ConnectionRefusedError(errno.ECONNREFUSED, 'Connection refused'),
            f'{SERVERURL} refused connection',
            4,
        ),
        (
            PermissionError(errno.EACCES, 'Permission denied'),
            f'{SERVERURL}: Permission denied',
            1,
        ),
        (
            ConnectionResetError('Remote end closed connection'),
            f'{SERVERURL}: Remote end closed connection',
            1,
        ),
    ],
)
def test_unreachable_server_is_named_once_and_ends_the_command(
    ctl, error, message, status
):
    ctl.slapos.errors['getPartitionInfo'] = error
    assert run(ctl, 'stop slappart0 slappart1') == message + '\n'
    assert ctl.slapos.calls == [('getPartitionInfo', 'slappart0')]
    assert ctl.exitstatus == status


@pytest.mark.parametrize(
    'error',
    [
        FileNotFoundError(errno.ENOENT, 'No such file or directory'),
        ConnectionRefusedError(errno.ECONNREFUSED, 'Connection refused'),
    ],
)
@pytest.mark.parametrize('arg', ['status', 'status slappart0'])
def test_status_with_supervisord_down_exits_as_supervisorctl_status(
    ctl, error, arg
):
    # supervisorctl's own status exits 4 (LSB's "unknown") for both.
    ctl.slapos.errors['getAllPartitionInfo'] = error
    ctl.slapos.errors['getPartitionInfo'] = error
    assert run(ctl, arg).startswith(SERVERURL)
    assert ctl.exitstatus == 4


def test_status_of_no_partition_says_how_to_see_a_stopped_one(
    ctl, monkeypatch
):
    monkeypatch.setitem(ANSWERS, 'getAllPartitionInfo', [])
    out = run(ctl, 'status')
    assert out == (
        'no partition has a file or a group (a stopped partition '
        'shows when named: slapos status P)\n'
    )
    assert ctl.exitstatus == 0


# startall, sync


def test_startall_reports_failures(ctl):
    assert run(ctl, 'startall') == (
        'slappart0:a: started\n'
        'slappart0:b: ERROR (SPAWN_ERROR: slappart0:b)\n'
        '1 started, 1 failed\n'
    )
    assert ctl.exitstatus == 1


def test_sync_prints_state(ctl):
    out = run(ctl, 'sync')
    assert out.startswith(
        'mode: offline (as of the last contact with the master, '
    )
    assert '\nmaster_url: http://m\nlast_attempt: ' in out
    assert 'last_success: never\nlast_error: refused\n' in out


def sync_with(ctl, monkeypatch, now, **state):
    monkeypatch.setitem(
        ANSWERS, 'getSyncState', dict(ANSWERS['getSyncState'], **state)
    )
    monkeypatch.setattr(controllerplugin.time, 'time', lambda: now)
    return run(ctl, 'sync')


def test_sync_says_how_old_an_online_mode_is(ctl, monkeypatch):
    # beside slapgrid the last contact is the format report, maybe long ago
    out = sync_with(
        ctl,
        monkeypatch,
        now=1e9 + 3 * 3600 + 300,
        mode='online',
        last_attempt=1e9,
        last_success=1e9,
        last_error='',
    )
    assert out.splitlines()[0] == (
        'mode: online (as of the last contact with the master, 3 h 5 min ago)'
    )
    assert '(3 h 5 min ago)\nlast_success: ' in out


def test_sync_says_the_listener_never_contacts_the_master(ctl, monkeypatch):
    from supervisor_slapos.syncstate import NO_CONTACT_BESIDE_SLAPGRID

    out = sync_with(
        ctl,
        monkeypatch,
        now=1e9,
        mode='unknown',
        last_attempt=0.0,
        last_error=NO_CONTACT_BESIDE_SLAPGRID,
    )
    assert out.splitlines()[0] == (
        'mode: unknown (beside slapgrid without computer_json (or '
        'master_url) the listener never contacts the master: slapgrid does '
        '(see its log))'
    )
    assert out.endswith(
        'last_attempt: never\nlast_success: never\nlast_error: -\n'
    )


@pytest.mark.parametrize(
    'seconds, text',
    [
        (0, '0 s'),
        (119, '119 s'),
        (120, '2 min'),
        (7199, '119 min'),
        (7200, '2 h 0 min'),
        (2 * 86400 - 1, '47 h 59 min'),
        (2 * 86400 + 3 * 3600, '2 d 3 h'),
        (-5, '0 s'),
    ],
)
def test_format_age(seconds, text):
    assert controllerplugin.format_age(seconds) == text


# usage


@pytest.mark.parametrize(
    'arg, message',
    [
        ('', 'Error: slapos requires a sub-command'),
        ('bogus', "Error: unknown sub-command 'bogus'"),
        ('start', 'Error: slapos start requires a partition'),
        ('stop', 'Error: slapos stop requires a partition'),
        ('startall x', 'Error: slapos startall accepts no arguments'),
        ('sync x', 'Error: slapos sync accepts no arguments'),
        ('status "unclosed', 'Error: No closing quotation'),
    ],
)
def test_usage_errors_print_help_and_set_exit_status(ctl, arg, message):
    out = run(ctl, arg)
    assert out.startswith(message + '\n')
    assert 'slapos status [P ...]\t' in out
    assert ctl.exitstatus == 1
    assert ctl.slapos.calls == []


# help


def help_output(ctl, topic):
    """What ``help <topic>`` prints with the default plugin and ours, in
    supervisorctl's order."""
    ctl.options.plugins.append(DefaultControllerPlugin(ctl))
    ctl.options.plugins.append(
        controllerplugin.make_slapos_controllerplugin(ctl)
    )
    ctl.do_help(topic)
    return ctl.stdout.getvalue()


def test_unknown_supervisorctl_help_stays_its_own_and_says_so(
    ctl, monkeypatch, capsys
):
    # supervisorctl's Controller.do_help as 4.2.5 and 4.3.0 have it is what
    # the routing replaces; another one stays
    monkeypatch.setattr(internals, 'HELP_SOURCES', frozenset())
    ctl.options.plugins.append(DefaultControllerPlugin(ctl))
    ctl.options.plugins.append(
        controllerplugin.make_slapos_controllerplugin(ctl)
    )
    assert 'do_help' not in vars(ctl)
    assert capsys.readouterr().err == (
        'supervisor_slapos: help <topic> asks every plugin: '
        'Controller.do_help is not a known one (checked: supervisor 4.2.5 '
        f'and 4.3.0; sha256 {internals.source_digest(Controller.do_help)})\n'
    )


def test_help_lists_every_sub_command(ctl):
    lines = help_output(ctl, 'slapos').splitlines()
    commands = [
        line.split('\t')[0].split()[1]
        for line in lines
        if line.startswith('slapos ')
    ]
    assert commands == [
        'status',
        'start',
        'stop',
        'destroy',
        'update',
        'startall',
        'sync',
        'check',
    ]
    assert '*** No help' not in '\n'.join(lines)


def test_help_ends_with_the_package_version(ctl):
    from supervisor_slapos import __version__

    lines = help_output(ctl, 'slapos').splitlines()
    assert lines[-1] == f'(supervisor_slapos {__version__})'


def test_help_of_a_builtin_topic_prints_only_its_own(ctl):
    out = help_output(ctl, 'status')
    assert out.startswith('status <name>\t')
    assert 'slapos' not in out and '*** No help' not in out


def test_help_of_an_unknown_topic_says_so_once(ctl):
    assert help_output(ctl, 'frobnicate') == '*** No help on frobnicate\n'


def test_help_without_topic_lists_every_plugin(ctl):
    out = help_output(ctl, '')
    assert 'default commands (type help <topic>):' in out
    assert 'slapos commands (type help <topic>): slapos\n' in out


# check, on dummies (tests/test_slapos_check.py: on real supervisords)


def test_check_of_a_plugin_older_than_getPluginVersion_says_restart(ctl):
    ctl.slapos.errors['getPluginVersion'] = xmlrpc.client.Fault(
        SupervisorFaults.UNKNOWN_METHOD, 'UNKNOWN_METHOD'
    )
    loaded = controllerplugin.SlaposControllerPlugin._loaded_version(
        ctl.slapos
    )
    assert loaded is nodecheck.OLDER
    assert nodecheck.plugin_line(loaded, '0.2.0') == nodecheck.Line(
        'FAIL',
        'plugin',
        'supervisord still runs an older supervisor_slapos, '
        '0.2.0 is installed: restart supervisord (a reload keeps the loaded '
        'code; README, "Upgrade")',
    )


@pytest.mark.parametrize(
    'text, argv',
    [
        (
            '# c\n'
            '@reboot root /opt/slapos/bin/slapos node supervisord >> l 2>&1\n',
            ['/opt/slapos/bin/slapos', 'node', 'supervisord'],
        ),
        (
            "@reboot root '/my node/l' --slapos-cfg /a\\%b.cfg --slapos /s\n",
            ['/my node/l', '--slapos-cfg', '/a%b.cfg', '--slapos', '/s'],
        ),
        ('* * * * * root /bin/true\n', None),
        ('@reboot root\n', None),
    ],
)
def test_boot_command_is_the_reboot_line_up_to_its_redirection(text, argv):
    assert nodecheck.boot_command(text) == argv


def test_missing_in_the_boot_command_its_command_slapos_and_cfg(tmp_path):
    cfg = tmp_path / 'slapos.cfg'
    cfg.write_text('')
    launcher = sys.executable
    assert (
        nodecheck.missing_in(
            [launcher, '--slapos-cfg', str(cfg), '--slapos', launcher]
        )
        is None
    )
    assert nodecheck.missing_in(
        [launcher, '--slapos-cfg', str(cfg), '--slapos', '/nowhere/slapos']
    ) == ('/nowhere/slapos', 'an executable file')
    assert nodecheck.missing_in([launcher, '--cfg', '/nowhere.cfg']) == (
        '/nowhere.cfg',
        'a file',
    )
    assert nodecheck.missing_in([str(cfg)]) == (str(cfg), 'an executable file')


@pytest.mark.parametrize(
    'soft, level',
    [
        (None, 'ok'),
        (1024, 'ok'),
        (nodecheck.descriptors_needed(100), 'warn'),
        (nodecheck.descriptors_needed(100) - 1, 'FAIL'),
    ],
)
def test_descriptors_line_levels(soft, level):
    line = nodecheck.descriptors_line((soft, 4096), 100, 42)
    assert line.level == level


def test_partition_lines_one_per_partition_in_trouble():
    infos = [
        dict(INFO, last_error=''),
        dict(stopped_info('slappart1'), last_error='PROCESS_FAILED: x'),
        dict(stopped_info('slappart2'), state='destroying', last_error=''),
    ]
    assert [
        (line.level, line.text.split()[0])
        for line in nodecheck.partition_lines(infos)
    ] == [('warn', 'slappart1:'), ('warn', 'slappart2')]
    assert nodecheck.exit_status(nodecheck.partition_lines(infos[:1])) == 0


@pytest.mark.parametrize(
    'serverurl, local',
    [
        ('unix:///srv/slapgrid/sv.sock', True),
        ('http://127.0.0.1:9001', True),
        ('http://localhost:9001', True),
        ('http://[::1]:9001', True),
        ('http://node7.example.com:9001', False),
        ('http://10.0.0.7:9001', False),
    ],
)
def test_check_looks_at_this_host_only_for_a_local_supervisord(
    serverurl, local
):
    assert nodecheck.is_local(serverurl) is local
