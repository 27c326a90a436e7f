"""``supervisor-slapos-setup``: the three texts, supervisord's and cron's
syntax, and the command's behaviour on a directory laid out as slapgrid
lays out an instance root."""

import configparser
import json
import os
import shlex
import stat
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
from supervisor.options import ClientOptions, ServerOptions

from supervisor_slapos import nodesetup
from supervisor_slapos.nodesetup import NodePaths
from testbed.cron import cron_split, reboot_entries

LISTENER = '/opt/slapos/bin/supervisor-slapos-listener'
SLAPOS = '/opt/slapos/bin/slapos'
LAUNCHER = '/opt/slapos/parts/python3/bin/supervisor-slapos-supervisord'
# paths that supervisord's and cron's syntax must carry intact
ODD_NAMES = [
    'slapos-100%.cfg',
    'my node',
    'a ;b',
    'a;b',
    'a #b',
    "it's",
    'say "hi"',
    '%(here)s',
    '100%%',
    'back\\slash%',
    'tab\there',
    'end ',
    '$(true)',
    '`true`',
    '(x)',
    'é',
]


def sections(text):
    parser = configparser.RawConfigParser(strict=True)
    parser.read_string(text)
    return {name: dict(parser.items(name)) for name in parser.sections()}


Layout = namedtuple('Layout', 'paths cfg cron_dir slapos args')


def make_layout(tmp_path, cfg_name='slapos.cfg'):
    """An instance root as slapgrid prepares it, its slapos.cfg (at
    ``cfg_name`` under ``tmp_path``), a cron directory, a slapos command,
    and the arguments that name the last two."""
    root = tmp_path / 'srv' / 'slapgrid'
    (root / 'etc' / 'supervisord.conf.d').mkdir(parents=True)
    (root / 'var' / 'log').mkdir(parents=True)
    cfg = tmp_path / cfg_name
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        f'[slapos]\ninstance_root = {root}\n'
        f'master_url = http://127.0.0.1:1\ncomputer_id = C\n'
    )
    cron_dir = tmp_path / 'cron.d'
    cron_dir.mkdir()
    slapos = tmp_path / 'bin' / 'slapos'
    slapos.parent.mkdir()
    slapos.write_text('#!/bin/sh\nexit 0\n')
    slapos.chmod(0o755)
    return Layout(
        NodePaths(str(root)),
        cfg,
        cron_dir,
        slapos,
        ['--cron-dir', cron_dir, '--slapos', slapos],
    )


@pytest.fixture
def layout(tmp_path):
    return make_layout(tmp_path)


def run(*args, path=None):
    """The command as an operator runs it (``path``: its PATH)."""
    env = dict(os.environ)
    if path is not None:
        env['PATH'] = str(path)
    return subprocess.run(
        [sys.executable, '-m', 'supervisor_slapos.nodesetup', *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def listing(root):
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob('*'))
        if p.is_file()
    }


def supervisord_reads(tmp_path, include_text):
    """What supervisord 4.3.0's own parser reads from an include file with
    ``include_text``: (rpcinterface options by name, the listener's argv
    as supervisord splits its command)."""
    include = tmp_path / 'read' / 'include'
    include.mkdir(parents=True)
    (include / 'node.conf').write_text(include_text)
    main = tmp_path / 'read' / 'supervisord.conf'
    main.write_text(
        f'[supervisord]\nlogfile = {tmp_path}/unused.log\n'
        f'[include]\nfiles = {include}/*.conf\n'
    )
    server = ServerOptions()
    server.configfile = str(main)
    server.process_config(do_usage=False)
    supervisord = server.configroot.supervisord
    factories = {
        name: config for name, _, config in supervisord.rpcinterface_factories
    }
    [listener] = [
        g for g in server.process_group_configs if g.name == 'slapos'
    ]
    config = listener.process_configs[0]
    # supervisord's Subprocess.get_execv_args splits it so
    return factories, shlex.split(config.command), config.stderr_logfile


def assert_refused(result, message, root, before):
    """One clear line naming ``message``, exit 1, and the files under
    ``root`` as they were (``before``: their listing)."""
    assert result.returncode == 1
    assert result.stdout == ''
    [line] = result.stderr.splitlines()
    assert line.startswith('supervisor-slapos-setup: error: ')
    assert message in line
    assert listing(root) == before


def instance_root(tmp_path, name):
    """NodePaths for ``tmp_path/name`` (supervisord wants its log
    directory)."""
    paths = NodePaths(str(tmp_path / name))
    os.makedirs(os.path.dirname(paths.listener_log))
    return paths


# the texts


def test_node_file_declares_the_plugin_and_the_listener_in_slapgrid_mode():
    paths = NodePaths('/srv/slapgrid')
    text = nodesetup.node_file_text(
        paths, '/etc/opt/slapos/slapos.cfg', [LISTENER]
    )
    assert sections(text) == {
        'rpcinterface:slapos': {
            'supervisor.rpcinterface_factory': (
                'supervisor_slapos.rpcinterface:make_slapos_rpcinterface'
            ),
            'instance_root': '/srv/slapgrid',
            'include_dir': '/srv/slapgrid/etc/supervisord.conf.d',
            'state_dir': '/srv/slapgrid/var/supervisor_slapos',
        },
        'eventlistener:slapos': {
            'command': f'{LISTENER} --cfg /etc/opt/slapos/slapos.cfg '
            f'--slapgrid',
            'events': 'SUPERVISOR_STATE_CHANGE_RUNNING,TICK_60',
            'buffer_size': '100',
            'autorestart': 'true',
            'startsecs': '0',
            'stderr_logfile': (
                '/srv/slapgrid/var/log/supervisor-slapos-listener.log'
            ),
            'stderr_logfile_maxbytes': '10MB',
            'stderr_logfile_backups': '3',
        },
    }


def test_client_file_points_supervisorctl_at_slapgrid_socket():
    paths = NodePaths('/srv/slapgrid')
    text = nodesetup.client_file_text(
        paths, '/etc/slapos.cfg', paths.socket(exists=lambda p: False)
    )
    assert sections(text) == {
        'supervisorctl': {'serverurl': 'unix:///srv/slapgrid/sv.sock'},
        'ctlplugin:slapos': {
            'supervisor.ctl_factory': 'supervisor_slapos.controllerplugin'
            ':make_slapos_controllerplugin'
        },
    }


def test_boot_file_starts_slapgrid_supervisord_at_reboot_as_root():
    paths = NodePaths('/srv/slapgrid')
    text = nodesetup.boot_file_text(
        paths, '/etc/opt/slapos/slapos.cfg', SLAPOS, [LAUNCHER]
    )
    assert text.endswith('\n')
    assert [
        line for line in text.splitlines() if not line.startswith('#')
    ] == [
        f'@reboot root {LAUNCHER} --slapos-cfg '
        f'/etc/opt/slapos/slapos.cfg --slapos {SLAPOS} >> '
        f'/srv/slapgrid/var/log/supervisor-slapos-boot.log 2>&1'
    ]


def test_socket_is_the_legacy_one_where_it_exists():
    paths = NodePaths('/srv/slapgrid')
    legacy = '/srv/slapgrid/supervisord.socket'
    assert paths.socket(exists=lambda p: p == legacy) == legacy


def test_listener_by_absolute_path_beside_python_else_dash_m():
    python = '/opt/slapos/bin/python3'
    assert nodesetup.listener_command(python, 'x', lambda p: True) == [
        '/opt/slapos/bin/supervisor-slapos-listener'
    ]
    assert nodesetup.listener_command(python, 'x', lambda p: False) == [
        python,
        '-m',
        'supervisor_slapos.listener',
    ]


def test_supervisorctl_of_this_installation_setup_script_dir_first():
    """A buildout's bin/ holds the console scripts, its Python is
    elsewhere; a virtualenv's bin/ holds both."""
    python = '/opt/slapos/parts/python3/bin/python3'
    setup = '/opt/slapos/bin/supervisor-slapos-setup'
    assert nodesetup.supervisorctl_command(python, setup, lambda p: True) == [
        '/opt/slapos/bin/supervisorctl'
    ]
    assert nodesetup.supervisorctl_command(
        python, '/x/nodesetup.py', lambda p: True
    ) == ['/opt/slapos/parts/python3/bin/supervisorctl']
    assert nodesetup.supervisorctl_command(python, setup, lambda p: False) == [
        python,
        '-m',
        'supervisor.supervisorctl',
    ]


# supervisord's syntax and cron's


@pytest.mark.parametrize('name', ODD_NAMES)
def test_supervisord_reads_every_cfg_path_and_listener_path_intact(
    tmp_path, name
):
    """The listener's argv, as supervisord splits its command, is exactly
    the one written, whatever the paths hold."""
    cfg = f'/etc/{name}/slapos.cfg'
    listener = [f'/opt/{name}/bin/python3', '-m', 'supervisor_slapos.x']
    text = nodesetup.node_file_text(
        instance_root(tmp_path, 'srv'), cfg, listener
    )
    _, argv, _ = supervisord_reads(tmp_path, text)
    assert argv == [*listener, '--cfg', cfg, '--slapgrid']


@pytest.mark.parametrize(
    'name',
    [n for n in ODD_NAMES if n not in ('a ;b', 'a #b', '%(here)s', 'end ')],
)
def test_supervisord_reads_every_instance_root_intact(tmp_path, name):
    paths = instance_root(tmp_path, name)
    text = nodesetup.node_file_text(paths, '/etc/slapos.cfg', [LISTENER])
    factories, _, log = supervisord_reads(tmp_path, text)
    assert {
        key: factories['slapos'][key]
        for key in ('instance_root', 'include_dir', 'state_dir')
    } == {
        'instance_root': paths.instance_root,
        'include_dir': paths.include_dir,
        'state_dir': paths.state_dir,
    }
    assert log == paths.listener_log
    client = ClientOptions()
    client.configfile = str(tmp_path / 'client.conf')
    (tmp_path / 'client.conf').write_text(
        nodesetup.client_file_text(paths, '/etc/slapos.cfg', '/s/100%')
    )
    client.process_config(do_usage=False)
    assert client.serverurl == 'unix:///s/100%'


@pytest.mark.parametrize(
    'value, reason',
    [
        ('/srv/a ;b', 'before a ";" or "#"'),
        ('/srv/a\t#b', 'before a ";" or "#"'),
        ('/srv/%(here)s', '%(here)s'),
        ('/srv/end ', 'whitespace'),
        ('/srv/two\nlines', 'line break'),
        ('/srv/two\rlines', 'line break'),
    ],
)
def test_supervisord_value_refuses_what_supervisord_would_not_read_back(
    value, reason
):
    with pytest.raises(ValueError) as raised:
        nodesetup.supervisord_value(value)
    assert reason in str(raised.value)


@pytest.mark.parametrize('name', ODD_NAMES)
def test_cron_runs_the_boot_command_with_its_words_intact(tmp_path, name):
    """cron's processing of the line (testbed/cron.py), then /bin/sh with an
    empty environment: the words arrive intact, the output is appended."""
    log = tmp_path / f'log {name}'
    script = (
        'import json, sys; '
        'print(json.dumps(sys.argv[1:]), flush=True); '
        'print("err", file=sys.stderr)'
    )
    words = ['--cfg', f'/etc/{name}/slapos.cfg', name]
    command = nodesetup.cron_command(
        [sys.executable, '-c', script, *words], str(log)
    )
    shell_command, stdin = cron_split(command)
    assert stdin == ''
    for _ in range(2):
        result = subprocess.run(
            ['/bin/sh', '-c', shell_command],
            env={},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (result.returncode, result.stdout, result.stderr) == (0, '', '')
    lines = log.read_text().splitlines()
    assert lines == [json.dumps(words), 'err'] * 2


def test_cron_split_as_cron_reads_percent_signs():
    assert cron_split('a \\% b') == ('a % b', '')
    assert cron_split('a % b%c') == ('a ', ' b\nc')
    assert cron_split('a\\b\\\\%c') == ('a\\b\\\\', 'c')


def test_a_line_break_is_refused_everywhere():
    paths = NodePaths('/srv/slapgrid')
    for text in (
        lambda: nodesetup.node_file_text(paths, '/a\nb', [LISTENER]),
        lambda: nodesetup.client_file_text(paths, '/a\nb', '/s'),
        lambda: nodesetup.boot_file_text(paths, '/a\nb', SLAPOS, [LAUNCHER]),
        lambda: nodesetup.boot_file_text(paths, '/a', '/b\rc', [LAUNCHER]),
        lambda: nodesetup.boot_file_text(paths, '/a', SLAPOS, ['/b\nc']),
    ):
        with pytest.raises(ValueError, match='line break'):
            text()


# the command


def test_supervisord_reads_both_texts_as_written(layout, tmp_path):
    """supervisord takes the plugin from the include file; supervisorctl
    takes the ctl plugin and the socket from the client file."""
    paths, cfg = layout.paths, layout.cfg
    assert run('--cfg', cfg, *layout.args).returncode == 0
    factories, argv, _ = supervisord_reads(
        tmp_path, Path(paths.node_file).read_text()
    )
    assert factories['slapos']['include_dir'] == paths.include_dir
    assert argv[-3:] == ['--cfg', str(cfg), '--slapgrid']
    client = ClientOptions()
    client.configfile = paths.client_file
    client.process_config(do_usage=False)
    assert client.serverurl == f'unix://{paths.socket()}'
    assert 'slapos' in [name for name, _, _ in client.plugin_factories]


def test_setup_writes_three_files_and_says_when_they_take_effect(layout):
    paths, cfg = layout.paths, layout.cfg
    result = run('--cfg', cfg, *layout.args)
    assert result.returncode == 0, result.stderr
    boot = layout.cron_dir / 'supervisor-slapos'
    for path in (paths.node_file, paths.client_file, boot):
        assert f'wrote {path}' in result.stdout
    assert 'next start or reload of supervisord' in result.stdout
    assert 'restarts every process' in result.stdout
    for path in (paths.node_file, paths.client_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # cron ignores a cron.d file that group or others may write
    assert stat.S_IMODE(boot.stat().st_mode) == 0o644
    [(user, command)] = reboot_entries(boot.read_text())
    assert user == 'root'
    # the launcher beside this Python (the setup's)
    assert shlex.split(command) == [
        os.path.join(
            os.path.dirname(sys.executable), 'supervisor-slapos-supervisord'
        ),
        '--slapos-cfg',
        str(cfg),
        '--slapos',
        str(layout.slapos),
        '>>',
        paths.boot_log,
        '2>&1',
    ]
    argv = shlex.split(
        sections(Path(paths.node_file).read_text())['eventlistener:slapos'][
            'command'
        ]
    )
    assert os.path.isabs(argv[0])
    assert os.path.exists(argv[0])


def test_setup_advice_names_the_supervisorctl_that_has_the_plugin(layout):
    """Only this installation's supervisorctl has the ctl plugin: the
    advice names it by absolute path, and it works as printed."""
    paths, cfg = layout.paths, layout.cfg
    result = run('--cfg', cfg, *layout.args)
    [advice] = [
        line
        for line in result.stdout.splitlines()
        if line.startswith('Then: ')
    ]
    ctl = os.path.join(os.path.dirname(sys.executable), 'supervisorctl')
    assert shlex.split(advice[len('Then: ') :]) == [
        ctl,
        '-c',
        paths.client_file,
        'slapos',
        'check',
    ]
    assert f'({ctl} -c {paths.main_config} reload)' in result.stdout
    # no supervisord here: the plugin loads, then cannot connect
    ran = subprocess.run(
        shlex.split(advice[len('Then: ') :]),
        capture_output=True,
        text=True,
        timeout=60,
        env={},
    )
    assert 'cannot be resolved' not in ran.stdout + ran.stderr
    assert 'no such file' in ran.stdout.lower(), ran.stdout


def test_setup_writes_the_same_bytes_at_every_run_and_says_so(
    layout, tmp_path
):
    assert run('--cfg', layout.cfg, *layout.args).returncode == 0
    first = listing(tmp_path)
    again = run('--cfg', layout.cfg, *layout.args)
    assert again.returncode == 0
    assert listing(tmp_path) == first
    assert 'Nothing changed' in again.stdout
    assert 'wrote' not in again.stdout
    assert 'reload' not in again.stdout
    assert f'unchanged: {layout.paths.node_file}' in again.stdout


def test_setup_rewrites_a_boot_entry_whose_mode_changed(layout):
    assert run('--cfg', layout.cfg, *layout.args).returncode == 0
    boot = layout.cron_dir / 'supervisor-slapos'
    boot.chmod(0o666)
    again = run('--cfg', layout.cfg, *layout.args)
    assert f'wrote {boot}' in again.stdout
    assert 'reload' not in again.stdout  # the node file did not change
    assert stat.S_IMODE(boot.stat().st_mode) == 0o644


def test_setup_finds_slapos_on_path_by_absolute_path(layout):
    result = run(
        '--cfg',
        layout.cfg,
        '--cron-dir',
        layout.cron_dir,
        path=f'relative-nowhere:{layout.slapos.parent}',
    )
    assert result.returncode == 0, result.stderr
    [(_, command)] = reboot_entries(
        (layout.cron_dir / 'supervisor-slapos').read_text()
    )
    assert shlex.split(command)[1:5] == [
        '--slapos-cfg',
        str(layout.cfg),
        '--slapos',
        str(layout.slapos),
    ]


@pytest.mark.parametrize(
    'slapos, cron_dir, message',
    [
        (None, 'cron.d', 'no slapos command on PATH'),
        ('/nowhere/slapos', 'cron.d', 'not an executable file'),
        ('bin/slapos', 'nowhere', 'not a directory'),
    ],
    ids=['no-slapos-on-path', 'slapos-missing', 'no-cron-dir'],
)
def test_missing_slapos_or_cron_dir_is_one_clear_line_and_writes_nothing(
    layout, tmp_path, slapos, cron_dir, message
):
    empty = tmp_path / 'empty'
    empty.mkdir()
    args = ['--cron-dir', tmp_path / cron_dir]
    if slapos is not None:
        args += ['--slapos', tmp_path / slapos]
    before = listing(tmp_path)
    result = run('--cfg', layout.cfg, *args, path=empty)
    assert_refused(result, message, tmp_path, before)


def test_a_directory_it_cannot_write_into_is_an_error_before_any_write(
    layout, tmp_path, monkeypatch, capsys
):
    """As a user other than root: /etc/cron.d is root's (this test runs
    as root, for whom every directory is writable: os.access says no)."""
    cron_dir = str(layout.cron_dir)
    real_access = os.access
    monkeypatch.setattr(
        os,
        'access',
        lambda path, mode: path != cron_dir and real_access(path, mode),
    )
    before = listing(tmp_path)
    assert (
        nodesetup.main(['--cfg', str(layout.cfg), *map(str, layout.args)]) == 1
    )
    assert 'cannot write into ' + cron_dir in capsys.readouterr().err
    assert listing(tmp_path) == before


@pytest.mark.parametrize(
    'cfg_name',
    [
        'slapos-100%.cfg',
        'my node/slapos.cfg',
        'a ;b/slapos.cfg',
        "it's/slapos.cfg",
    ],
)
def test_setup_with_an_odd_cfg_path_writes_what_supervisord_reads_back(
    tmp_path, cfg_name
):
    layout = make_layout(tmp_path, cfg_name)
    result = run('--cfg', layout.cfg, *layout.args)
    assert result.returncode == 0, result.stderr
    _, argv, _ = supervisord_reads(
        tmp_path, Path(layout.paths.node_file).read_text()
    )
    assert argv[-3:] == ['--cfg', str(layout.cfg), '--slapgrid']


def test_a_cfg_path_with_a_line_break_is_refused_and_writes_nothing(tmp_path):
    layout = make_layout(tmp_path, 'two\nlines.cfg')
    before = listing(tmp_path)
    result = run('--cfg', layout.cfg, *layout.args)
    assert_refused(result, 'holds a line break', tmp_path, before)


def test_remove_deletes_the_three_files_and_only_them(layout, tmp_path):
    paths, cfg = layout.paths, layout.cfg
    (
        tmp_path / 'srv/slapgrid/etc/supervisord.conf.d/firewall.conf'
    ).write_text('[program:firewall]\ncommand = true\n')
    (layout.cron_dir / 'slapos-node').write_text('* * * * * root true\n')
    before = listing(tmp_path)
    assert run('--cfg', cfg, *layout.args).returncode == 0
    result = run('--cfg', cfg, '--remove', '--cron-dir', layout.cron_dir)
    assert result.returncode == 0, result.stderr
    for path in (
        paths.node_file,
        paths.client_file,
        layout.cron_dir / 'supervisor-slapos',
    ):
        assert f'removed {path}' in result.stdout
    assert 'restarts every process' in result.stdout
    assert listing(tmp_path) == before
    again = run('--cfg', cfg, '--remove', '--cron-dir', layout.cron_dir)
    assert again.returncode == 0
    assert f'not there: {paths.node_file}' in again.stdout
    assert 'Nothing changed' in again.stdout
    assert 'reload' not in again.stdout
    # no cron on this host: nothing of the setup's can be there either
    gone = run('--cfg', cfg, '--remove', '--cron-dir', tmp_path / 'nowhere')
    assert gone.returncode == 0, gone.stderr
    assert 'Nothing changed' in gone.stdout


@pytest.mark.parametrize(
    'cfg_text, message',
    [
        ('[slapos]\nmaster_url = http://x\n', 'no [slapos] instance_root'),
        ('no section\n', 'does not parse'),
        ('[slapos]\ninstance_root = {tmp_path}/nowhere\n', 'does not exist'),
    ],
    ids=['no-instance-root', 'broken', 'no-node-yet'],
)
@pytest.mark.parametrize('remove', [False, True], ids=['setup', 'remove'])
def test_bad_cfg_is_one_clear_line_and_writes_nothing(
    layout, tmp_path, cfg_text, message, remove
):
    if remove:
        assert run('--cfg', layout.cfg, *layout.args).returncode == 0
    cfg = tmp_path / 'bad.cfg'
    cfg.write_text(cfg_text.format(tmp_path=tmp_path))
    before = listing(tmp_path)
    result = run('--cfg', cfg, *layout.args, *(['--remove'] if remove else []))
    assert_refused(result, message, tmp_path, before)


def test_unreadable_cfg_is_an_error(tmp_path):
    result = run('--cfg', tmp_path / 'missing.cfg', '--cron-dir', tmp_path)
    assert result.returncode == 1
    assert 'cannot read' in result.stderr
    assert str(tmp_path / 'missing.cfg') in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cfg_is_required():
    result = run()
    assert result.returncode == 2
    assert '--cfg' in result.stderr


def test_remove_without_cron_dir_removes_the_boot_entry_it_wrote(
    layout, tmp_path
):
    """The setup records where it wrote (in the plugin's state_dir):
    --remove needs no --cron-dir again, and leaves nothing of it."""
    before = listing(tmp_path)
    assert run('--cfg', layout.cfg, *layout.args).returncode == 0
    record = json.loads(Path(layout.paths.state_dir, 'setup.json').read_text())
    boot = str(layout.cron_dir / 'supervisor-slapos')
    assert record['boot_entry'] == boot
    assert record['cfg'] == str(layout.cfg)
    result = run('--cfg', layout.cfg, '--remove')
    assert result.returncode == 0, result.stderr
    assert f'removed {boot}' in result.stdout
    assert '/etc/cron.d' not in result.stdout
    assert listing(tmp_path) == before


def test_setup_through_a_closed_pipe_writes_everything_quietly(
    layout, tmp_path
):
    """``setup | head -1``: the reader goes after one line; the setup
    still writes every file, and says nothing of a broken pipe."""
    command = shlex.join(
        [
            sys.executable,
            '-m',
            'supervisor_slapos.nodesetup',
            '--cfg',
            str(layout.cfg),
            *map(str, layout.args),
        ]
    )
    result = subprocess.run(
        ['bash', '-c', f'set -o pipefail; {command} | head -1'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, '')
    assert result.stdout.startswith('wrote ')
    again = run('--cfg', layout.cfg, *layout.args)
    assert 'Nothing changed' in again.stdout
