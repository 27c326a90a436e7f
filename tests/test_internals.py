"""The guard of supervisor's internals: the floor spawn is used only on
the supervisor and Python versions it was checked against."""
import os
import pwd

from supervisor.tests.base import DummyOptions, DummyPConfig

from supervisor.process import Subprocess

from supervisor_slapos import fastspawn, internals


def subprocess_of(options):
    config = DummyPConfig(options, 'p', '/bin/true')
    return Subprocess(config)


def test_checked_versions_are_supported():
    for version in ('4.2.5', '4.3.0'):
        for python in ((3, 11), (3, 12), (3, 13)):
            assert internals.spawn_unsupported(version, python) is None


def test_unknown_supervisor_version_says_why():
    why = internals.spawn_unsupported(version='4.4.0', python=(3, 12))
    assert why.startswith('supervisor 4.4.0 is not one the floor spawn')


def test_unknown_python_says_why():
    why = internals.spawn_unsupported(version='4.3.0', python=(3, 99))
    assert 'Python 3.99' in why


def test_process_already_replaced_says_why():
    process = subprocess_of(DummyOptions())
    assert internals.process_unsupported(process) is None
    process.spawn = lambda: None
    assert 'already replaced' in internals.process_unsupported(process)


def test_floor_spawn_on_unknown_version_is_supervisors_own_and_logged(
        monkeypatch):
    options = DummyOptions()
    process = subprocess_of(options)
    monkeypatch.setattr(internals, 'SUPERVISOR_VERSION', '9.9')
    with fastspawn.floor_spawn(process):
        assert 'spawn' not in vars(process)
    assert any("supervisor's own spawn for every process: supervisor 9.9"
               in line
               for line in options.logger.data)


def test_floor_spawn_replaces_spawn_only_within_the_block():
    process = subprocess_of(DummyOptions())
    with fastspawn.floor_spawn(process):
        assert 'spawn' in vars(process)
    assert 'spawn' not in vars(process)


# fastspawn.privilege_args: the user switch, or why not

def config_with(tmp_path, **kwargs):
    options = DummyOptions()
    config = DummyPConfig(options, 'p', '/bin/true', **kwargs)
    return Subprocess(config)


def test_no_user_no_switch(tmp_path):
    process = config_with(tmp_path)
    assert fastspawn.privilege_args(process, '/bin/true', ['/bin/true']) \
        == ([], None)


def test_own_uid_no_switch(tmp_path):
    process = config_with(tmp_path, uid=65534)
    assert fastspawn.privilege_args(
        process, '/bin/true', ['/bin/true'], getuid=lambda: 65534) == ([], None)


def test_switch_needs_root(tmp_path):
    process = config_with(tmp_path, uid=65534)
    args, why = fastspawn.privilege_args(
        process, '/bin/true', ['/bin/true'], getuid=lambda: 1000)
    assert args is None and why == 'supervisord is not root'


def test_unknown_uid_says_so(tmp_path):
    process = config_with(tmp_path, uid=987654)
    assert fastspawn.privilege_args(
        process, '/bin/true', ['/bin/true'], getuid=lambda: 0) == (
        None, 'no uid 987654')


def test_switch_without_setpriv_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(fastspawn, '_setpriv', None)
    process = config_with(tmp_path, uid=65534)
    args, why = fastspawn.privilege_args(
        process, '/bin/true', ['/bin/true'], getuid=lambda: 0)
    assert args is None and 'no setpriv' in why


def test_switch_of_a_command_found_on_path_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(fastspawn, '_setpriv', '/usr/bin/setpriv')
    process = config_with(tmp_path, uid=65534)
    args, why = fastspawn.privilege_args(
        process, '/bin/true', ['true'], getuid=lambda: 0)
    assert args is None and 'PATH' in why


def test_switch_into_a_directory_the_user_may_not_enter_says_so(
        tmp_path, monkeypatch):
    monkeypatch.setattr(fastspawn, '_setpriv', '/usr/bin/setpriv')
    closed = tmp_path / 'closed'
    closed.mkdir(mode=0o700)
    process = config_with(tmp_path, uid=65534, directory=str(closed))
    args, why = fastspawn.privilege_args(
        process, '/bin/true', ['/bin/true'], getuid=lambda: 0)
    assert args is None and why == f'user nobody may not enter {closed}'


def test_switch_is_setpriv_with_supervisors_ids_and_groups(
        tmp_path, monkeypatch):
    monkeypatch.setattr(fastspawn, '_setpriv', '/usr/bin/setpriv')
    process = config_with(tmp_path, uid=65534, directory='/')
    record = pwd.getpwuid(65534)
    groups = ','.join(map(str, os.getgrouplist(record.pw_name,
                                               record.pw_gid)))
    assert fastspawn.privilege_args(
        process, '/bin/true', ['/bin/true'], getuid=lambda: 0) == (
        ['/usr/bin/setpriv', '--reuid=65534', f'--regid={record.pw_gid}',
         f'--groups={groups}', '--'], None)


# supervisord's loop (offlinestart)

def test_loop_is_a_checked_one():
    assert internals.loop_unsupported_reason() is None


def test_unknown_loop_says_why_and_leaves_it_to_the_listener(monkeypatch):
    import supervisor.supervisord
    from supervisor.tests.base import DummyOptions, DummySupervisor

    from supervisor_slapos import offlinestart

    def runforever(self):
        """another loop"""
    monkeypatch.setattr(supervisor.supervisord.Supervisor, 'runforever',
                        runforever)
    assert 'runforever is not a known one' in (
        internals.loop_unsupported_reason())
    supervisord = DummySupervisor()
    supervisord.options = DummyOptions()
    socket_map = {}
    supervisord.options.get_socket_map = lambda: socket_map
    state = offlinestart.install(supervisord, None, None)
    assert state.as_dict() == {'by': 'listener', 'state': ''}
    assert socket_map == {}  # no loop driver
    assert any('runforever' in line
               for line in supervisord.options.logger.data)


def test_listener_commands_from_a_real_configuration(tmp_path):
    from supervisor.options import ServerOptions
    conf = tmp_path / 'supervisord.conf'
    conf.write_text(
        '[supervisord]\n'
        f'logfile = {tmp_path}/log\n'
        '[eventlistener:slapos]\n'
        'command = /x/supervisor-slapos-listener --slapgrid\n'
        f'directory = {tmp_path}\n'
        'events = TICK_60\n'
        '[program:other]\ncommand = cat\n')
    options = ServerOptions()
    options.realize(['-c', str(conf)])
    assert internals.listener_commands(options) == [
        ('/x/supervisor-slapos-listener --slapgrid', str(tmp_path))]
