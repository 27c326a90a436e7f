"""``supervisor-slapos-setup``: the two texts, and the command's behaviour
on a directory laid out as slapgrid lays out an instance root."""
import configparser
import os
import stat
import subprocess
import sys

import pytest
from supervisor.options import ClientOptions, ServerOptions

from supervisor_slapos import nodesetup
from supervisor_slapos.nodesetup import NodePaths

LISTENER = '/opt/slapos/bin/supervisor-slapos-listener'


def sections(text):
    parser = configparser.RawConfigParser(strict=True)
    parser.read_string(text)
    return {name: dict(parser.items(name)) for name in parser.sections()}


@pytest.fixture
def node(tmp_path):
    """An instance root as slapgrid prepares it, and its slapos.cfg."""
    root = tmp_path / 'srv' / 'slapgrid'
    (root / 'etc' / 'supervisord.conf.d').mkdir(parents=True)
    (root / 'var' / 'log').mkdir(parents=True)
    cfg = tmp_path / 'slapos.cfg'
    cfg.write_text(f'[slapos]\ninstance_root = {root}\n'
                   f'master_url = http://127.0.0.1:1\ncomputer_id = C\n')
    return NodePaths(str(root)), cfg


def run(*args):
    return subprocess.run(
        [sys.executable, '-m', 'supervisor_slapos.nodesetup', *map(str, args)],
        capture_output=True, text=True, timeout=60)


def listing(root):
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob('*')) if p.is_file()}


# the texts

def test_node_file_declares_the_plugin_and_the_listener_in_slapgrid_mode():
    paths = NodePaths('/srv/slapgrid')
    text = nodesetup.node_file_text(paths, '/etc/opt/slapos/slapos.cfg',
                                    LISTENER)
    assert sections(text) == {
        'rpcinterface:slapos': {
            'supervisor.rpcinterface_factory':
                'supervisor_slapos.rpcinterface:make_slapos_rpcinterface',
            'instance_root': '/srv/slapgrid',
            'include_dir': '/srv/slapgrid/etc/supervisord.conf.d',
            'state_dir': '/srv/slapgrid/var/supervisor_slapos'},
        'eventlistener:slapos': {
            'command': f'{LISTENER} --cfg /etc/opt/slapos/slapos.cfg '
                       f'--slapgrid',
            'events': 'SUPERVISOR_STATE_CHANGE_RUNNING,TICK_60',
            'buffer_size': '100',
            'autorestart': 'true',
            'startsecs': '0',
            'stderr_logfile':
                '/srv/slapgrid/var/log/supervisor-slapos-listener.log',
            'stderr_logfile_maxbytes': '10MB',
            'stderr_logfile_backups': '3'},
    }


def test_client_file_points_supervisorctl_at_slapgrid_socket():
    paths = NodePaths('/srv/slapgrid')
    text = nodesetup.client_file_text(paths, '/etc/slapos.cfg',
                                      paths.socket(exists=lambda p: False))
    assert sections(text) == {
        'supervisorctl': {'serverurl': 'unix:///srv/slapgrid/sv.sock'},
        'ctlplugin:slapos': {
            'supervisor.ctl_factory': 'supervisor_slapos.controllerplugin'
                                      ':make_slapos_controllerplugin'}}


def test_socket_is_the_legacy_one_where_it_exists():
    paths = NodePaths('/srv/slapgrid')
    legacy = '/srv/slapgrid/supervisord.socket'
    assert paths.socket(exists=lambda p: p == legacy) == legacy


def test_listener_by_absolute_path_beside_python_else_dash_m():
    python = '/opt/slapos/bin/python3'
    assert nodesetup.listener_command(python, exists=lambda p: True) == (
        '/opt/slapos/bin/supervisor-slapos-listener')
    assert nodesetup.listener_command(python, exists=lambda p: False) == (
        '/opt/slapos/bin/python3 -m supervisor_slapos.listener')


def test_supervisord_reads_both_texts_as_written(node, tmp_path):
    """supervisord takes the plugin from the include file; supervisorctl
    takes the ctl plugin and the socket from the client file."""
    paths, cfg = node
    assert run('--cfg', cfg).returncode == 0
    main = tmp_path / 'supervisord.conf'
    main.write_text(f'[supervisord]\nlogfile = {tmp_path}/unused.log\n'
                    f'[include]\nfiles = {paths.include_dir}/*.conf\n')
    server = ServerOptions()
    server.configfile = str(main)
    server.process_config(do_usage=False)
    factories = {name: config for name, _, config
                 in server.configroot.supervisord.rpcinterface_factories}
    assert factories['slapos']['include_dir'] == paths.include_dir
    [listener] = [g for g in server.process_group_configs
                  if g.name == 'slapos']
    assert listener.process_configs[0].command.endswith(
        f'--cfg {cfg} --slapgrid')
    client = ClientOptions()
    client.configfile = paths.client_file
    client.process_config(do_usage=False)
    assert client.serverurl == f'unix://{paths.socket()}'
    assert 'slapos' in [name for name, _, _ in client.plugin_factories]


# the command

def test_setup_writes_both_files_and_says_when_they_take_effect(node):
    paths, cfg = node
    result = run('--cfg', cfg)
    assert result.returncode == 0, result.stderr
    assert f'wrote {paths.node_file}' in result.stdout
    assert f'wrote {paths.client_file}' in result.stdout
    assert 'next start or reload of supervisord' in result.stdout
    assert 'restarts every process' in result.stdout
    for path in (paths.node_file, paths.client_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    command = sections(open(paths.node_file).read())[
        'eventlistener:slapos']['command']
    assert os.path.isabs(command.split()[0])
    assert os.path.exists(command.split()[0])


def test_setup_writes_the_same_bytes_at_every_run(node, tmp_path):
    paths, cfg = node
    assert run('--cfg', cfg).returncode == 0
    first = listing(tmp_path)
    assert run('--cfg', cfg).returncode == 0
    assert listing(tmp_path) == first


def test_remove_deletes_both_files_and_only_them(node, tmp_path):
    paths, cfg = node
    (tmp_path / 'srv/slapgrid/etc/supervisord.conf.d/firewall.conf'
     ).write_text('[program:firewall]\ncommand = true\n')
    before = listing(tmp_path)
    assert run('--cfg', cfg).returncode == 0
    result = run('--cfg', cfg, '--remove')
    assert result.returncode == 0, result.stderr
    assert f'removed {paths.node_file}' in result.stdout
    assert 'restarts every process' in result.stdout
    assert listing(tmp_path) == before
    again = run('--cfg', cfg, '--remove')
    assert again.returncode == 0
    assert f'not there: {paths.node_file}' in again.stdout


@pytest.mark.parametrize('cfg_text, message', [
    ('[slapos]\nmaster_url = http://x\n', 'no [slapos] instance_root'),
    ('no section\n', 'does not parse'),
    ('[slapos]\ninstance_root = {tmp_path}/nowhere\n', 'does not exist'),
], ids=['no-instance-root', 'broken', 'no-node-yet'])
@pytest.mark.parametrize('remove', [False, True], ids=['setup', 'remove'])
def test_bad_cfg_is_one_clear_line_and_writes_nothing(node, tmp_path,
                                                      cfg_text, message,
                                                      remove):
    paths, good_cfg = node
    if remove:
        assert run('--cfg', good_cfg).returncode == 0
    cfg = tmp_path / 'bad.cfg'
    cfg.write_text(cfg_text.format(tmp_path=tmp_path))
    before = listing(tmp_path)
    result = run('--cfg', cfg, *(['--remove'] if remove else []))
    assert result.returncode == 1
    assert result.stdout == ''
    [line] = result.stderr.splitlines()
    assert line.startswith('supervisor-slapos-setup: error: ')
    assert message in line
    assert listing(tmp_path) == before


def test_unreadable_cfg_is_an_error(tmp_path):
    result = run('--cfg', tmp_path / 'missing.cfg')
    assert result.returncode == 1
    assert 'cannot read' in result.stderr
    assert str(tmp_path / 'missing.cfg') in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cfg_is_required():
    result = run()
    assert result.returncode == 2
    assert '--cfg' in result.stderr
