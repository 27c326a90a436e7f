"""supervisor-slapos-supervisord: supervisord with its first
configuration read through the linear parser, otherwise unchanged."""

import os
import subprocess
import sys

import pytest
import supervisor.options
import supervisor.supervisord

from supervisor_slapos import (
    incrementalread,
    internals,
    linearread,
    linearstart,
)
from testbed.proc import cmdline, environ
from testbed.slapgrid_node import fresh_node


def test_main_installs_linear_parser_before_supervisords_first_read(
    monkeypatch,
):
    monkeypatch.setattr(
        supervisor.options, 'UnhosedConfigParser', linearread.PLAIN
    )
    monkeypatch.setattr(
        supervisor.options.ServerOptions,
        'read_config',
        internals.PLAIN_READ_CONFIG,
    )
    seen = []
    monkeypatch.setattr(
        supervisor.supervisord,
        'main',
        lambda args: seen.append(
            (
                args,
                supervisor.options.UnhosedConfigParser,
                supervisor.options.ServerOptions.read_config,
            )
        ),
    )
    linearstart.main(['-n', '-c', 'x.conf'])
    assert seen == [
        (
            ['-n', '-c', 'x.conf'],
            linearread.LinearConfigParser,
            incrementalread.read_config,
        )
    ]


def test_node_started_by_it_runs_the_same_processes(make_node):
    tables = []
    for module in ('supervisor.supervisord', 'supervisor_slapos.linearstart'):
        node = make_node(module.replace('.', '-'))
        node.make_partition('slappart0', run=['a', 'b'])
        node.start(module=module)
        assert node.rpc.slapos.startPartition('slappart0') is True
        assert node.rpc.supervisor.reloadConfig() == [[[], [], []]]
        tables.append(
            [
                (group, name, state)
                for group, name, _, state in node.process_table()
            ]
        )
    assert (
        tables[1]
        == tables[0]
        == [('slappart0', 'a', 'RUNNING'), ('slappart0', 'b', 'RUNNING')]
    )


def test_the_plugin_keeps_the_reads_it_installed_first(make_node):
    """Started by it, supervisord's later re-reads are linear and
    incremental too: the plugin, loading after the first read, finds
    that read's own read_config in place and keeps it."""
    node = make_node()
    node.start(module='supervisor_slapos.linearstart')
    log = node.log_text()
    assert 'slapos: linear configuration re-read installed' in log, log
    assert 'slapos: incremental configuration re-read installed' in log, log


@pytest.mark.real_slapgrid
def test_slapos_cfg_starts_slapgrids_supervisord_as_slapgrid_does():
    with fresh_node() as node:
        node.prepare(linear_start=True)
        pid = node.supervisord_pid()
        # slapgrid's configuration file, an empty environment (as
        # slapos.core's launchSupervisord gives it), this command's main()
        assert environ(pid) == {}
        code = cmdline(pid).split(b'\0')[2].decode()
        assert (
            'from supervisor_slapos.linearstart import main_when_told' in code
        )
        assert f"main_when_told(['-c', '{node.main_config}'])" in code
        # told to go through a pipe, it then reads /dev/null as before
        assert os.readlink(f'/proc/{pid}/fd/0') == os.devnull
        assert node.rpc.supervisor.getState()['statename'] == 'RUNNING'


def test_a_ready_supervisord_never_told_runs_nothing(tmp_path):
    """The launcher found a supervisord running (or failed): the
    interpreter it started ahead reads end of file and exits, without
    starting supervisord."""
    conf = tmp_path / 'supervisord.conf'
    log = tmp_path / 'supervisord.log'
    conf.write_text(
        f'[supervisord]\nlogfile = {log}\npidfile = {tmp_path}/pid\n'
        f'[unix_http_server]\nfile = {tmp_path}/sock\n'
    )
    result = subprocess.run(
        [
            sys.executable,
            '-c',
            'from supervisor_slapos.linearstart import main_when_told; '
            f'main_when_told(["-c", {str(conf)!r}, "-n"])',
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, '')
    assert not log.exists()


@pytest.mark.parametrize(
    'first_line, interpreter',
    [
        (
            b'#!/opt/slapos/parts/python3/bin/python3.9\n',
            ['/opt/slapos/parts/python3/bin/python3.9'],
        ),
        (b'#! /usr/bin/python3 -S  \n', ['/usr/bin/python3', '-S']),
        # the kernel passes the rest of the line as one argument
        (b'#!/usr/bin/env python3 -I\n', ['/usr/bin/env', 'python3 -I']),
    ],
)
def test_script_interpreter_as_the_kernel_reads_it(
    tmp_path, first_line, interpreter
):
    script = tmp_path / 'slapos'
    script.write_bytes(first_line + b'import sys\n')
    assert linearstart.script_interpreter(str(script)) == interpreter


@pytest.mark.parametrize('text', [b'import sys\n', b'#!\n', b''])
def test_a_slapos_without_interpreter_is_one_clear_error(tmp_path, text):
    script = tmp_path / 'slapos'
    script.write_bytes(text)
    with pytest.raises(SystemExit) as exited:
        linearstart.main(
            ['--slapos-cfg', '/nowhere.cfg', '--slapos', str(script)]
        )
    assert str(exited.value).startswith(
        f'supervisor-slapos-supervisord: --slapos {script}: '
    )


def test_the_slapos_script_sets_the_path_and_does_not_run(tmp_path):
    """What the launcher runs in the slapos command's Python: the script
    as a module (its sys.path, not its command), then slapgrid_start."""
    import subprocess
    import sys

    script = tmp_path / 'bin' / 'slapos'
    script.parent.mkdir()
    script.write_text(
        f'#!{sys.executable}\nimport sys\n'
        f'sys.path[0:0] = ["/eggs/a.egg"]\n'
        f'print(sys.path)\n'
        f'if __name__ == "__main__":\n'
        f'    raise SystemExit("ran its command")\n'
    )
    argv = linearstart.slapos_start_argv(str(tmp_path / 'no.cfg'), str(script))
    assert argv[0] == sys.executable
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    # it got as far as reading slapos.cfg, with the egg first on its path
    assert result.returncode == 1
    assert 'no.cfg' in result.stderr and 'ran its command' not in result.stderr
    assert result.stdout.startswith(f"['/eggs/a.egg', '{script.parent}'")


def test_a_slapos_whose_python_lacks_the_plugin_is_one_clear_error(tmp_path):
    import subprocess

    script = tmp_path / 'slapos'
    # a Python with its standard library only
    script.write_text('#!/usr/bin/env -S python3 -I\n')
    script.chmod(0o755)
    argv = linearstart.slapos_start_argv(str(tmp_path / 'no.cfg'), str(script))
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        env={'PATH': '/usr/bin:/bin'},
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        'supervisor-slapos-supervisord: the plugin is not importable by '
    ), result.stderr


def test_version_names_the_plugin_and_supervisor(capsys):
    from supervisor_slapos import __version__

    linearstart.main(['--version'])
    assert capsys.readouterr().out == (
        f'supervisor_slapos {__version__}, supervisor '
        f'{supervisor.options.VERSION}\n'
    )


def test_help_says_what_this_command_is_then_supervisords_help():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, '-m', 'supervisor_slapos.linearstart', '--help'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    first, usage = result.stdout.splitlines()[:2]
    assert first.startswith('supervisor-slapos-supervisord (supervisor_slapos')
    assert usage == (
        'usage: supervisor-slapos-supervisord [supervisord options]'
    )
    assert (
        'supervisord -- run a set of applications as daemons.' in result.stdout
    )
