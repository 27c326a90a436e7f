"""The guard of supervisor's internals: the floor spawn is used only on
the supervisor and Python versions it was checked against."""

import grp
import os
import pwd

from supervisor.process import Subprocess
from supervisor.tests.base import DummyOptions, DummyPConfig

from supervisor_slapos import floorspawn, internals


def subprocess_of(options):
    config = DummyPConfig(options, 'p', '/bin/true')
    return Subprocess(config)


def test_checked_versions_are_supported():
    for version in ('4.2.5', '4.3.0'):
        for python in ((3, 9), (3, 10), (3, 11), (3, 12), (3, 13)):
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


class Core:
    """supervisor's startProcess, as far as the floor sees it: it
    calls ``options.fork``."""

    def __init__(self, options):
        self.options = options
        self.forks = []

    def startProcess(self, namespec, wait=True):
        self.forks.append(vars(self.options).get('fork'))
        return namespec


def test_floor_on_unknown_version_is_supervisors_own_and_logged(monkeypatch):
    options = DummyOptions()
    process = subprocess_of(options)
    monkeypatch.setattr(internals, 'SUPERVISOR_VERSION', '9.9')
    core = Core(options)
    assert floorspawn.start_process(core, process, 'g:p') == 'g:p'
    assert core.forks == [None]
    assert any(
        "supervisor's own spawn for every process: supervisor 9.9" in line
        for line in options.logger.data
    )


def test_floor_replaces_fork_only_for_the_call():
    options = DummyOptions()
    core = Core(options)
    floorspawn.start_process(core, subprocess_of(options), 'g:p')
    assert callable(core.forks[0])
    assert 'fork' not in vars(options)


# the user switch, or why not


def config_with(**kwargs):
    return DummyPConfig(DummyOptions(), 'p', '/bin/true', **kwargs)


def test_no_user_no_switch():
    assert floorspawn._user_switch(
        config_with(), '/bin/true', ['/bin/true']
    ) == ([], None)


def test_own_uid_no_switch():
    config = config_with(uid=os.getuid())
    assert floorspawn._user_switch(config, '/bin/true', ['/bin/true']) == (
        [],
        None,
    )


def test_switch_needs_root(monkeypatch):
    monkeypatch.setattr(floorspawn.os, 'getuid', lambda: 1000)
    assert floorspawn._user_switch(
        config_with(uid=65534), '/bin/true', ['/bin/true']
    ) == (None, 'supervisord is not root')


def test_unknown_uid_says_so():
    assert floorspawn._user_switch(
        config_with(uid=987654), '/bin/true', ['/bin/true']
    ) == (None, 'no uid 987654')


def test_switch_without_setpriv_says_so(monkeypatch):
    monkeypatch.setattr(floorspawn, '_setpriv', None)
    monkeypatch.setattr(floorspawn.os, 'getuid', lambda: 0)
    args, why = floorspawn._user_switch(
        config_with(uid=65534), '/bin/true', ['/bin/true']
    )
    assert args is None and 'no setpriv' in why


def test_switch_of_a_command_found_on_path_says_so(monkeypatch):
    monkeypatch.setattr(floorspawn.os, 'getuid', lambda: 0)
    args, why = floorspawn._user_switch(
        config_with(uid=65534), '/bin/true', ['true']
    )
    assert args is None and 'PATH' in why


def test_environment_supervisors_child_refuses_says_so():
    assert 'illegal environment variable name' in floorspawn._bad_environment(
        {'"A=B"': 'x'}
    )
    assert 'NUL' in floorspawn._bad_environment({'A': 'a\0b'})
    assert floorspawn._bad_environment({'=A': 'x', 'B': ''}) is None


def test_exec_chain_of_a_script_and_its_interpreter(tmp_path):
    script = tmp_path / 'script'
    script.write_text('#!/bin/sh -e\n')
    chain, why = floorspawn._exec_chain(str(script), str(tmp_path))
    assert why is None
    assert chain[:2] == [str(script), '/bin/sh']
    assert len(chain) == 3  # sh's program interpreter (ld.so)


def test_exec_chain_refuses_what_setpriv_would_run_otherwise(tmp_path):
    plain = tmp_path / 'plain'
    plain.write_text('echo no #! line\n')
    chain, why = floorspawn._exec_chain(str(plain), str(tmp_path))
    assert chain is None and 'ENOEXEC' in why
    missing = tmp_path / 'missing'
    missing.write_text('#!/no/such/interpreter\n')
    chain, why = floorspawn._exec_chain(str(missing), str(tmp_path))
    assert chain is None and '/no/such/interpreter' in why


def test_supervisor_groups_are_drop_privileges_own():
    record = pwd.getpwuid(65534)
    groups = internals.supervisor_groups(record)
    assert groups[0] == record.pw_gid
    assert sorted(groups[1:]) == sorted(
        g.gr_gid for g in grp.getgrall() if record.pw_name in g.gr_mem
    )


def test_fork_exec_asks_no_id_change():
    """gid, groups and uid None, as Popen passes them: CPython then uses
    vfork (3.11 takes -1 for a change to id -1, and forks)."""
    args = internals.fork_exec_args(
        [b'true'], b'/bin/true', None, [], (0, 1, 2), -1, (8, 9)
    )
    assert len(args) == 23
    assert args[16:20] == (0, None, None, None)  # process group 0: its own


# supervisord's loop (offlinestart)


def test_loop_is_a_checked_one():
    assert internals.loop_unsupported_reason() is None


def test_unknown_loop_says_why_and_leaves_it_to_the_listener(monkeypatch):
    import supervisor.supervisord
    from supervisor.tests.base import DummyOptions, DummySupervisor

    from supervisor_slapos import offlinestart

    def runforever(self):
        """another loop"""

    monkeypatch.setattr(
        supervisor.supervisord.Supervisor, 'runforever', runforever
    )
    assert 'runforever is not a known one' in (
        internals.loop_unsupported_reason()
    )
    supervisord = DummySupervisor()
    supervisord.options = DummyOptions()
    socket_map = {}
    supervisord.options.get_socket_map = lambda: socket_map
    state = offlinestart.install(supervisord, None, None)
    assert state.as_dict() == {'by': 'listener', 'state': ''}
    assert socket_map == {}  # no loop driver
    assert any(
        'runforever' in line for line in supervisord.options.logger.data
    )


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
        '[program:other]\ncommand = cat\n'
    )
    options = ServerOptions()
    options.realize(['-c', str(conf)])
    assert internals.listener_commands(options) == [
        ('/x/supervisor-slapos-listener --slapgrid', str(tmp_path))
    ]


# one partition's files, the loaded groups by name: guarded uses


def test_partial_read_and_group_events_are_known_on_this_supervisor():
    assert internals.read_config_reason() is None
    assert internals.sections_reason() is None
    assert internals.group_events_reason() is None


def test_add_sections_reads_as_one_parser_would(tmp_path):
    text = '[program:a]\ncommand=x\n\n[program:b]\ncommand=%(here)s/y\n'
    single = internals.PLAIN_PARSER(default_section='\0')
    single.read_string(text)
    moved = internals.PLAIN_PARSER()
    internals.add_sections(moved, single)
    whole = internals.PLAIN_PARSER()
    whole.read_string(text)
    for parser in (moved, whole):
        parser.expand_here(str(tmp_path))
    assert {s: dict(moved[s]) for s in moved.sections()} == {
        s: dict(whole[s]) for s in whole.sections()
    }


def test_group_events_of_an_unknown_supervisor_are_not_followed(monkeypatch):
    monkeypatch.setattr(internals, 'GROUP_EVENTS_REASON', 'changed')
    assert internals.follow_groups(object(), print, print) == 'changed'


def test_group_events_of_a_supervisord_with_its_own_methods_are_not_followed():
    from supervisor.tests.base import DummySupervisor

    reason = internals.follow_groups(DummySupervisor(), print, print)
    assert 'add_process_group' in reason


def test_group_configs_guard_checks_addProcessGroup_too(monkeypatch):
    assert internals.group_configs_reason() is None
    monkeypatch.setattr(internals, 'ADD_GROUP_SOURCES', frozenset())
    assert 'addProcessGroup is not a known one' in (
        internals.group_configs_reason()
    )


def test_read_config_guard_says_why_on_another_supervisor(monkeypatch):
    monkeypatch.setitem(internals.READ_SOURCES, 'read_config', frozenset())
    assert 'ServerOptions.read_config is not a known one' in (
        internals.read_config_reason()
    )
