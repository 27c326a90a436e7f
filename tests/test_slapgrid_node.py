"""The plugin beside slapgrid, on a node slapos.core's own code runs.

Each test builds a node (tests/slapgrid_node.py): slapgrid's supervisord,
a ``slapos proxy`` master, one instance requested on ``slappart0``, real
``slapos node instance`` / ``slapos node report`` runs. The plugin is
installed as the README says: ``supervisor-slapos-setup --cfg slapos.cfg``
then ``supervisorctl -c <instance_root>/etc/supervisord.conf reload``.
"""
import os
import statistics
import time
import xmlrpc.client

import pytest

from tests.listener_node import recorded_since
from tests.polling import wait_until
from tests.slapgrid import import_partition_class
from tests.slapgrid_node import (DESTROYED, STARTED, STOPPED, NodeMaster,
                                 SlapgridNode, make_root, remove_root)
from tests.slapos_master import COMPUTER_ID, FORMAT, LIST, REPORT_STATE

_, NO_SLAPGRID = import_partition_class()
pytestmark = pytest.mark.skipif(
    NO_SLAPGRID is not None,
    reason=f'needs slapgrid (slapos.grid.SlapObject): {NO_SLAPGRID}')

PID = 'slappart0'
GROUP_WEB = f'{PID}:web'
# slapgrid runs and reloads per test; the measure's repetitions
RUNS = int(os.environ.get('SLAPGRID_NODE_RUNS', '2'))
MEASURE_RUNS = int(os.environ.get('SLAPGRID_NODE_MEASURE_RUNS', '3'))
NODE_FILES = ('firewall.conf', 'dbus.conf')


@pytest.fixture
def node():
    root = make_root()
    master = NodeMaster(root / 'master')
    node = SlapgridNode(root, master)
    try:
        node.prepare()
        node.request(state='started')
        yield node
    finally:
        node.cleanup()
        master.close()
        remove_root(root)


def install_plugin(node):
    """The README's two steps (the pip install is this venv's)."""
    node.setup()
    reload_with_listener(node)


def reload_with_listener(node):
    """Reload; return when the new listener has made its start."""
    since = time.time()
    node.reload()
    wait_listener_started(node, since)


def wait_listener_started(node, since):
    """A listener started after ``since`` (wall clock) has made its start
    attempt: its offline start and its format report are done (it records
    the attempt in the sync state last)."""
    def attempted():
        try:
            return recorded_since(node, since)
        except (OSError, xmlrpc.client.Error):
            return False
    wait_until(attempted, 60, what='the listener\'s start')


def web_pid(node):
    return node.wait_group_running(PID)['web']['pid']


def has_slapos_namespace(node):
    return 'slapos.getAPIVersion' in node.rpc.system.listMethods()


def slapgrid_reports(node, endpoint):
    return node.master.front.count(endpoint, computer_partition_id=PID)


def file_stamp(path):
    st = path.stat()
    return path.read_bytes(), st.st_ino, st.st_mtime_ns


# installing, and surviving slapgrid

def test_node_files_survive_slapgrid_runs_and_reloads(node):
    node.instance()
    install_plugin(node)
    node_file = node.include_dir / 'supervisor_slapos.conf'
    written = node_file.read_bytes()
    listener_pid = node.processes('slapos')['slapos']['pid']
    for _ in range(RUNS):
        node.instance('--force')
        assert node_file.read_bytes() == written
        assert has_slapos_namespace(node)
        # slapgrid's reloadConfig/update left the listener alone
        assert node.processes('slapos')['slapos']['pid'] == listener_pid
    # slapgrid rewrote its main configuration: nothing of the plugin's
    assert 'supervisor_slapos' not in node.main_config.read_text()
    reload_with_listener(node)
    assert node_file.read_bytes() == written
    assert has_slapos_namespace(node)
    web_pid(node)  # the offline start ran


def test_offline_start_after_each_reload_master_unreachable(node, capsys):
    node.instance()
    install_plugin(node)
    node.master.front.refuse()
    durations = []
    for _ in range(RUNS):
        before = web_pid(node)
        since = time.time()
        started = node.reload()
        reloaded = time.monotonic()
        # the partition's services come back by themselves
        after = web_pid(node)
        durations.append((reloaded - started, time.monotonic() - reloaded))
        assert after != before
        wait_listener_started(node, since)
        assert node.rpc.slapos.getPartitionInfo(PID)['state'] == 'started'
    with capsys.disabled():
        print(f'\nslapgrid node, master unreachable: reload, then offline '
              f'start to {PID} RUNNING: '
              + ', '.join(f'{a:.2f} s + {b:.2f} s' for a, b in durations))


def test_full_restart_by_slapgrid_loads_the_plugin(node):
    """The README's upgrade: shutdown, then slapgrid starts supervisord
    again (launchSupervisord, empty environment) with the plugin."""
    node.instance()
    install_plugin(node)
    old = node.supervisord_pid()
    result = node.ctl('-c', str(node.main_config), 'shutdown')
    assert result.returncode == 0, result.stdout + result.stderr
    wait_until(lambda: not os.path.exists(f'/proc/{old}'), 60,
               what='supervisord gone')
    since = time.time()
    node.instance()
    assert node.supervisord_pid() != old
    assert has_slapos_namespace(node)
    wait_listener_started(node, since)
    web_pid(node)


def test_remove_then_reload_unloads_the_plugin(node):
    node.instance()
    install_plugin(node)
    node.setup('--remove')
    assert not node.client_config.exists()
    node.reload()
    assert not has_slapos_namespace(node)
    assert node.processes('slapos') == {}
    node.instance('--force')
    web_pid(node)


# no fight over the states

def test_listener_reports_nothing_slapgrid_reports_once_each(node):
    """slapgrid reports after its buildout and promises, once per pass; the
    listener in --slapgrid mode reports nothing, not even at a reload."""
    install_plugin(node)  # before slapgrid ever deployed the partition
    assert not (node.include_dir / f'{PID}.conf').exists()
    node.instance()
    web_pid(node)
    assert slapgrid_reports(node, STARTED) == 1
    node.request(state='stopped')
    node.instance()
    assert slapgrid_reports(node, STOPPED) == 1
    assert not (node.include_dir / f'{PID}.conf').exists()
    assert node.processes(PID) == {}
    reload_with_listener(node)
    # the listener never reports nor asks for the instance list
    assert node.master.front.count(REPORT_STATE) == 0
    assert node.master.front.count(LIST) == 0
    assert (slapgrid_reports(node, STARTED),
            slapgrid_reports(node, STOPPED)) == (1, 1)
    # and its offline start left the stopped partition stopped
    assert node.processes(PID) == {}


def test_destroy_runs_prerm_to_its_end(node):
    proof, release = node.ask_prerm(PID)
    node.instance()
    install_plugin(node)
    node.request(state='destroyed')
    node.report()  # stops the partition, starts its prerm script
    wait_until(lambda: proof.exists() and 'start' in proof.read_text(),
               30, what='prerm started')
    node.report()  # prerm still running: slapgrid waits
    assert slapgrid_reports(node, DESTROYED) == 0
    assert node.processes(f'{PID}-prerm')['cleanup']['statename'] == 'RUNNING'
    release.touch()  # the cleanup ends now

    def prerm_exited():
        info = node.processes(f'{PID}-prerm').get('cleanup')
        return info is not None and info['statename'] == 'EXITED'
    wait_until(prerm_exited, 30, what='prerm exited')
    assert proof.read_text() == 'start\nend\n'
    node.report()
    assert slapgrid_reports(node, DESTROYED) == 1
    assert os.listdir(node.instance_root / PID) == []
    assert not [name for name in os.listdir(node.include_dir)
                if name.startswith(PID)]
    info = node.rpc.slapos.getPartitionInfo(PID)
    assert (info['state'], info['files'], info['groups']) == (
        'stopped', [], [])


def test_format_report_reaches_the_master_once(node):
    """The one thing the listener sends beside slapgrid: what
    ``slapos node format`` prepared (``[slapformat] computer_json``)."""
    install_plugin(node)
    [report] = node.master.front.calls(FORMAT)
    assert report['computer_guid'] == COMPUTER_ID
    assert sorted(p['partition_id'] for p in
                  report['compute_partition_list']) == list(node.partitions)
    sync = node.slapos_ctl('sync')
    assert 'mode: online' in sync.stdout, sync.stdout
    reload_with_listener(node)
    assert node.master.front.count(FORMAT) == 1  # unchanged: not again
    node.instance()  # the master still knows the partition's instance
    web_pid(node)


# taking turns

def test_slapgrid_and_plugin_p_conf_alternate_pids_unchanged(node):
    node.instance()
    install_plugin(node)
    p_conf = node.include_dir / f'{PID}.conf'
    slapgrid_text = p_conf.read_bytes()
    pid = web_pid(node)
    for _ in range(RUNS):
        result = node.slapos_ctl('start', PID)
        assert result.returncode == 0, result.stdout + result.stderr
        assert p_conf.read_bytes() == slapgrid_text
        assert web_pid(node) == pid
        node.instance('--force')
        assert p_conf.read_bytes() == slapgrid_text
        assert web_pid(node) == pid
    assert node.rpc.supervisor.reloadConfig() == [[[], [], []]]


def test_supervisorctl_slapos_status_with_the_client_configuration(node):
    node.instance()
    install_plugin(node)
    pid = web_pid(node)
    result = node.slapos_ctl('status', PID)
    assert result.returncode == 0, result.stdout + result.stderr
    [partition_line, process_line] = result.stdout.splitlines()
    assert partition_line.split()[:2] == [PID, 'started']
    assert process_line.split() == [GROUP_WEB, 'RUNNING', 'pid', str(pid)]
    sync = node.slapos_ctl('sync')
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert node.master.url in sync.stdout


def test_firewall_and_dbus_conf_never_touched(node):
    node.instance()
    install_plugin(node)
    stamps = {name: file_stamp(node.include_dir / name)
              for name in NODE_FILES}
    status = node.slapos_ctl('status')
    assert status.returncode == 0, status.stdout + status.stderr
    listed = {line.split()[0] for line in status.stdout.splitlines()
              if not line.startswith(' ')}
    assert listed == {PID}
    for command in ('destroy', 'stop', 'start'):
        for name in ('firewall', 'dbus'):
            refused = node.slapos_ctl(command, name)
            assert refused.returncode != 0
            assert 'INVALID_NAME' in refused.stdout
    assert node.slapos_ctl('startall').returncode == 0
    node.instance('--force')
    reload_with_listener(node)
    assert {name: file_stamp(node.include_dir / name)
            for name in NODE_FILES} == stamps
    groups = {info['group'] for info in
              node.rpc.supervisor.getAllProcessInfo()}
    assert {'firewall', 'dbus'} <= groups


# figures

def test_measure_slapgrid_run_with_and_without_plugin(node, capsys):
    """Not a timing assertion: prints a slapgrid run's duration on the
    same node without, then with, the plugin."""
    def runs():
        durations = []
        for _ in range(MEASURE_RUNS):
            started = time.monotonic()
            node.instance('--force')
            durations.append(time.monotonic() - started)
        web_pid(node)
        return statistics.median(durations)
    node.instance()
    without = runs()
    install_plugin(node)
    with_plugin = runs()
    assert has_slapos_namespace(node)
    with capsys.disabled():
        print(f'\nslapgrid node: slapos node instance --force, median of '
              f'{MEASURE_RUNS}: without the plugin {without:.2f} s, with '
              f'{with_plugin:.2f} s (ratio {with_plugin / without:.2f})')
