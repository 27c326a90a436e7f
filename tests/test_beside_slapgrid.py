"""The plugin beside slapgrid, on a node slapos.core's own code runs.

Each test builds a node (testbed/slapgrid_node.py): slapgrid's supervisord,
a ``slapos proxy`` master, one instance requested on ``slappart0``, real
``slapos node instance`` / ``slapos node report`` runs. The plugin is
installed as the README says: ``supervisor-slapos-setup --cfg slapos.cfg``
then ``supervisorctl -c <instance_root>/etc/supervisord.conf reload``.
"""

import os
import signal
import stat
import statistics
import subprocess
import time
import xmlrpc.client

import pytest

from testbed import stacks
from testbed.cron import run_reboot_entry
from testbed.polling import wait_until
from testbed.proc import cmdline, is_alive
from testbed.slapgrid_node import (
    DESTROYED,
    STARTED,
    STOPPED,
    NodeFront,
    fresh_node,
)
from testbed.slapos_master import COMPUTER_ID, FORMAT, LIST, REPORT_STATE
from tests.listener_node import recorded_since

# slapgrid's code of the run's stack (testbed/stacks.py): each test skips,
# saying why, where that stack's slapgrid cannot run
pytestmark = pytest.mark.real_slapgrid

PID = 'slappart0'
GROUP_WEB = f'{PID}:web'
# slapgrid runs and reloads per test; the measure's repetitions
RUNS = int(os.environ.get('SLAPGRID_NODE_RUNS', '2'))
MEASURE_RUNS = int(os.environ.get('SLAPGRID_NODE_MEASURE_RUNS', '3'))
NODE_FILES = ('firewall.conf', 'dbus.conf')


@pytest.fixture
def slapgrid_node():
    with fresh_node() as slapgrid_node:
        slapgrid_node.prepare()
        slapgrid_node.request(state='started')
        yield slapgrid_node


def install_plugin(slapgrid_node):
    """The README's two steps (the pip install is this venv's)."""
    slapgrid_node.setup()
    reload_with_listener(slapgrid_node)


def reload_with_listener(slapgrid_node):
    """Reload; return when the new listener has made its start."""
    since = time.time()
    slapgrid_node.reload()
    wait_listener_started(slapgrid_node, since)


def wait_listener_started(slapgrid_node, since):
    """A listener started after ``since`` (wall clock) has made its start
    attempt: its offline start and its format report are done (it records
    the attempt in the sync state last)."""

    def attempted():
        try:
            return recorded_since(slapgrid_node, since)
        except (OSError, xmlrpc.client.Error):
            return False

    wait_until(attempted, 60, what='the listener\'s start')


def web_pid(slapgrid_node):
    return slapgrid_node.wait_group_running(PID)['web']['pid']


def has_slapos_namespace(slapgrid_node):
    return 'slapos.getAPIVersion' in slapgrid_node.rpc.system.listMethods()


def slapgrid_reports(slapgrid_node, endpoint):
    return slapgrid_node.master.front.count(
        endpoint, computer_partition_id=PID
    )


def file_stamp(path):
    st = path.stat()
    return path.read_bytes(), st.st_ino, st.st_mtime_ns


# installing, and surviving slapgrid


def test_node_files_survive_slapgrid_runs_and_reloads(slapgrid_node):
    slapgrid_node.instance()
    install_plugin(slapgrid_node)
    node_file = slapgrid_node.include_dir / 'supervisor_slapos.conf'
    written = node_file.read_bytes()
    listener_pid = slapgrid_node.processes('slapos')['slapos']['pid']
    for _ in range(RUNS):
        slapgrid_node.instance('--force')
        assert node_file.read_bytes() == written
        assert has_slapos_namespace(slapgrid_node)
        # slapgrid's reloadConfig/update left the listener alone
        listener = slapgrid_node.processes('slapos')['slapos']
        assert listener['pid'] == listener_pid
    # slapgrid rewrote its main configuration: nothing of the plugin's
    assert 'supervisor_slapos' not in slapgrid_node.main_config.read_text()
    reload_with_listener(slapgrid_node)
    assert node_file.read_bytes() == written
    assert has_slapos_namespace(slapgrid_node)
    web_pid(slapgrid_node)  # the offline start ran


def test_offline_start_after_each_reload_master_unreachable(
    slapgrid_node, capsys
):
    slapgrid_node.instance()
    install_plugin(slapgrid_node)
    slapgrid_node.master.front.refuse()
    durations = []
    for _ in range(RUNS):
        before = web_pid(slapgrid_node)
        since = time.time()
        started = slapgrid_node.reload()
        reloaded = time.monotonic()
        # the partition's services come back by themselves
        after = web_pid(slapgrid_node)
        durations.append((reloaded - started, time.monotonic() - reloaded))
        assert after != before
        wait_listener_started(slapgrid_node, since)
        info = slapgrid_node.rpc.slapos.getPartitionInfo(PID)
        assert info['state'] == 'started'
    with capsys.disabled():
        print(
            f'\nslapgrid node, master unreachable: reload, then offline '
            f'start to {PID} RUNNING: '
            + ', '.join(f'{a:.2f} s + {b:.2f} s' for a, b in durations)
        )


def test_full_restart_by_slapgrid_loads_the_plugin(slapgrid_node):
    """The README's upgrade: shutdown, then slapgrid starts supervisord
    again (launchSupervisord, empty environment) with the plugin."""
    slapgrid_node.instance()
    install_plugin(slapgrid_node)
    old = slapgrid_node.supervisord_pid()
    result = slapgrid_node.ctl(
        '-c', str(slapgrid_node.main_config), 'shutdown'
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wait_until(lambda: not is_alive(old), 60, what='supervisord gone')
    since = time.time()
    slapgrid_node.instance()
    assert slapgrid_node.supervisord_pid() != old
    assert has_slapos_namespace(slapgrid_node)
    wait_listener_started(slapgrid_node, since)
    web_pid(slapgrid_node)


def test_remove_then_reload_unloads_the_plugin(slapgrid_node):
    slapgrid_node.instance()
    install_plugin(slapgrid_node)
    slapgrid_node.setup('--remove')
    assert not slapgrid_node.client_config.exists()
    slapgrid_node.reload()
    assert not has_slapos_namespace(slapgrid_node)
    assert slapgrid_node.processes('slapos') == {}
    slapgrid_node.instance('--force')
    web_pid(slapgrid_node)


# no fight over the states


def test_listener_reports_nothing_slapgrid_reports_once_each(slapgrid_node):
    """slapgrid reports after its buildout and promises, once per pass; the
    listener in --slapgrid mode reports nothing, not even at a reload."""
    # before slapgrid ever deployed the partition
    install_plugin(slapgrid_node)
    assert not (slapgrid_node.include_dir / f'{PID}.conf').exists()
    slapgrid_node.instance()
    web_pid(slapgrid_node)
    assert slapgrid_reports(slapgrid_node, STARTED) == 1
    slapgrid_node.request(state='stopped')
    slapgrid_node.instance()
    assert slapgrid_reports(slapgrid_node, STOPPED) == 1
    assert not (slapgrid_node.include_dir / f'{PID}.conf').exists()
    assert slapgrid_node.processes(PID) == {}
    reload_with_listener(slapgrid_node)
    # the listener never reports nor asks for the instance list
    assert slapgrid_node.master.front.count(REPORT_STATE) == 0
    assert slapgrid_node.master.front.count(LIST) == 0
    assert (
        slapgrid_reports(slapgrid_node, STARTED),
        slapgrid_reports(slapgrid_node, STOPPED),
    ) == (1, 1)
    # and its offline start left the stopped partition stopped
    assert slapgrid_node.processes(PID) == {}


def start_destroy_with_prerm(slapgrid_node):
    """The plugin installed, a destroy of PID requested and reported:
    its prerm script has started. Return the script's proof and release
    files (testbed/slapgrid_node.py)."""
    proof, release = slapgrid_node.ask_prerm(PID)
    slapgrid_node.instance()
    install_plugin(slapgrid_node)
    slapgrid_node.request(state='destroyed')
    slapgrid_node.report()  # stops the partition, starts its prerm script
    wait_until(
        lambda: proof.exists() and 'start' in proof.read_text(),
        30,
        what='prerm started',
    )
    return proof, release


def end_prerm(slapgrid_node, release):
    """Let the prerm script end; wait until it has exited."""
    release.touch()

    def prerm_exited():
        info = slapgrid_node.processes(f'{PID}-prerm').get('cleanup')
        return info is not None and info['statename'] == 'EXITED'

    wait_until(prerm_exited, 30, what='prerm exited')


def test_destroy_runs_prerm_to_its_end(slapgrid_node):
    proof, release = start_destroy_with_prerm(slapgrid_node)
    slapgrid_node.report()  # prerm still running: slapgrid waits
    assert slapgrid_reports(slapgrid_node, DESTROYED) == 0
    prerm = slapgrid_node.processes(f'{PID}-prerm')['cleanup']
    assert prerm['statename'] == 'RUNNING'
    end_prerm(slapgrid_node, release)
    assert proof.read_text() == 'start\nend\n'
    slapgrid_node.report()
    assert slapgrid_reports(slapgrid_node, DESTROYED) == 1
    assert os.listdir(slapgrid_node.instance_root / PID) == []
    assert not [
        name
        for name in os.listdir(slapgrid_node.include_dir)
        if name.startswith(PID)
    ]
    info = slapgrid_node.rpc.slapos.getPartitionInfo(PID)
    assert (info['state'], info['files'], info['groups']) == (
        'stopped',
        [],
        [],
    )


def test_a_reload_during_a_destroy_revives_only_its_prerm(slapgrid_node):
    """slapgrid's prerm manager writes P.conf again beside P-prerm.conf
    while the prerm scripts run; a reload then must start the prerm
    script again (the reload killed it), never P's own services."""
    proof, release = start_destroy_with_prerm(slapgrid_node)
    # slapgrid's marker of a destroy in progress, and P.conf written again
    assert (
        slapgrid_node.instance_root / PID / '.slapos-report-wait-service-list'
    ).is_file()
    assert (slapgrid_node.include_dir / f'{PID}.conf').exists()
    reload_with_listener(slapgrid_node)  # the offline start has run
    wait_until(
        lambda: proof.read_text() == 'start\nstart\n',
        30,
        what='prerm started again',
    )
    assert {
        name: info['statename']
        for name, info in slapgrid_node.processes(PID).items()
    } == {'web': 'STOPPED'}
    slapgrid_node.report()  # prerm still running: slapgrid waits
    assert slapgrid_reports(slapgrid_node, DESTROYED) == 0
    end_prerm(slapgrid_node, release)
    assert proof.read_text() == 'start\nstart\nend\n'
    slapgrid_node.report()
    assert slapgrid_reports(slapgrid_node, DESTROYED) == 1
    assert slapgrid_node.processes(PID) == {}


def test_slapgrids_offline_pass_during_a_destroy_leaves_its_services(
    slapgrid_node,
):
    """The master unreachable, slapgrid's own offline pass calls
    supervisor.startAllProcesses(): during a destroy, the partition's own
    services stay stopped (its prerm script runs on)."""
    proof, release = start_destroy_with_prerm(slapgrid_node)
    assert (slapgrid_node.include_dir / f'{PID}.conf').exists()
    assert slapgrid_node.processes(PID)['web']['statename'] == 'STOPPED'
    slapgrid_node.master.front.refuse()
    try:
        result = slapgrid_node.instance(check=False)
    finally:
        slapgrid_node.master.front.reopen()
    assert 'Processing computer partitions offline' in (
        result.stdout + result.stderr
    )
    assert slapgrid_node.processes(PID)['web']['statename'] == 'STOPPED'
    assert (
        slapgrid_node.processes(f'{PID}-prerm')['cleanup']['statename']
        == 'RUNNING'
    )
    end_prerm(slapgrid_node, release)
    slapgrid_node.report()
    assert slapgrid_reports(slapgrid_node, DESTROYED) == 1


def test_format_report_reaches_the_master_once(slapgrid_node):
    """The one thing the listener sends beside slapgrid: what
    ``slapos node format`` prepared (``[slapformat] computer_json``)."""
    install_plugin(slapgrid_node)
    [report] = slapgrid_node.master.front.calls(FORMAT)
    assert report['computer_guid'] == COMPUTER_ID
    assert sorted(
        p['partition_id'] for p in report['compute_partition_list']
    ) == list(slapgrid_node.partitions)
    sync = slapgrid_node.slapos_ctl('sync')
    assert 'mode: online' in sync.stdout, sync.stdout
    reload_with_listener(slapgrid_node)
    # unchanged: not again
    assert slapgrid_node.master.front.count(FORMAT) == 1
    slapgrid_node.instance()  # the master still knows the partition's instance
    web_pid(slapgrid_node)


# taking turns


def test_slapgrid_and_plugin_p_conf_alternate_pids_unchanged(slapgrid_node):
    slapgrid_node.instance()
    install_plugin(slapgrid_node)
    p_conf = slapgrid_node.include_dir / f'{PID}.conf'
    slapgrid_text = p_conf.read_bytes()
    pid = web_pid(slapgrid_node)
    for _ in range(RUNS):
        result = slapgrid_node.slapos_ctl('start', PID)
        assert result.returncode == 0, result.stdout + result.stderr
        assert p_conf.read_bytes() == slapgrid_text
        assert web_pid(slapgrid_node) == pid
        slapgrid_node.instance('--force')
        assert p_conf.read_bytes() == slapgrid_text
        assert web_pid(slapgrid_node) == pid
    assert slapgrid_node.rpc.supervisor.reloadConfig() == [[[], [], []]]


def test_supervisorctl_slapos_status_with_the_client_configuration(
    slapgrid_node,
):
    slapgrid_node.instance()
    install_plugin(slapgrid_node)
    pid = web_pid(slapgrid_node)
    result = slapgrid_node.slapos_ctl('status', PID)
    assert result.returncode == 0, result.stdout + result.stderr
    [partition_line, process_line] = result.stdout.splitlines()
    assert partition_line.split()[:2] == [PID, 'started']
    assert process_line.split() == [GROUP_WEB, 'RUNNING', 'pid', str(pid)]
    sync = slapgrid_node.slapos_ctl('sync')
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert slapgrid_node.master.url in sync.stdout


def test_slapos_check_on_a_slapgrid_node(slapgrid_node):
    """On a node installed by the setup: every line ok, the boot entry
    the setup recorded included; with that boot entry gone, a failure
    naming it."""
    slapgrid_node.instance()
    install_plugin(slapgrid_node)
    web_pid(slapgrid_node)
    result = slapgrid_node.slapos_ctl('check')
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ['ok'] * len(lines)
    assert f'boot entry   {slapgrid_node.boot_entry} runs ' in result.stdout
    slapgrid_node.boot_entry.unlink()
    result = slapgrid_node.slapos_ctl('check')
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        f'FAIL  boot entry   {slapgrid_node.boot_entry} is missing'
        in result.stdout
    )
    # the setup finds its record: --remove needs no --cron-dir
    removed = subprocess.run(
        slapgrid_node.setup_command('--cfg', slapgrid_node.cfg, '--remove'),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert removed.returncode == 0, removed.stderr
    assert '/etc/cron.d' not in removed.stdout


def test_firewall_and_dbus_conf_never_touched(slapgrid_node):
    slapgrid_node.instance()
    install_plugin(slapgrid_node)
    stamps = {
        name: file_stamp(slapgrid_node.include_dir / name)
        for name in NODE_FILES
    }
    status = slapgrid_node.slapos_ctl('status')
    assert status.returncode == 0, status.stdout + status.stderr
    listed = {
        line.split()[0]
        for line in status.stdout.splitlines()
        if not line.startswith(' ')
    }
    assert listed == {PID}
    for command in ('destroy', 'stop', 'start'):
        for name in ('firewall', 'dbus'):
            refused = slapgrid_node.slapos_ctl(command, name)
            assert refused.returncode != 0
            assert 'INVALID_NAME' in refused.stdout
    assert slapgrid_node.slapos_ctl('startall').returncode == 0
    slapgrid_node.instance('--force')
    reload_with_listener(slapgrid_node)
    assert {
        name: file_stamp(slapgrid_node.include_dir / name)
        for name in NODE_FILES
    } == stamps
    groups = {
        info['group']
        for info in slapgrid_node.rpc.supervisor.getAllProcessInfo()
    }
    assert {'firewall', 'dbus'} <= groups


# figures


def test_measure_slapgrid_run_with_and_without_plugin(slapgrid_node, capsys):
    """Not a timing assertion: prints a slapgrid run's duration on the
    same node without, then with, the plugin."""

    def runs():
        durations = []
        for _ in range(MEASURE_RUNS):
            started = time.monotonic()
            slapgrid_node.instance('--force')
            durations.append(time.monotonic() - started)
        web_pid(slapgrid_node)
        return statistics.median(durations)

    slapgrid_node.instance()
    without = runs()
    install_plugin(slapgrid_node)
    with_plugin = runs()
    assert has_slapos_namespace(slapgrid_node)
    with capsys.disabled():
        print(
            f'\nslapgrid node: slapos node instance --force, median of '
            f'{MEASURE_RUNS}: without the plugin {without:.2f} s, with '
            f'{with_plugin:.2f} s (ratio {with_plugin / without:.2f})'
        )


# the boot entry: one node for every case (each leaves it running)

BOOT_PARTITIONS = ('slappart0', 'slappart1', 'slappart2')
BOOT_STARTED = ('slappart0', 'slappart1')
BOOT_STOPPED = 'slappart2'


@pytest.fixture(scope='module')
def boot_node():
    """Two started partitions and a stopped one (started once, then
    stopped by slapgrid), the plugin installed; the partitions' addresses
    are loopback ones this host can bind."""
    with fresh_node(partitions=BOOT_PARTITIONS) as slapgrid_node:
        slapgrid_node.prepare()
        for i in range(len(BOOT_PARTITIONS)):
            slapgrid_node.request(state='started', title=f'inst{i}')
        slapgrid_node.instance()
        slapgrid_node.request(state='stopped', title='inst2')
        slapgrid_node.instance()
        # deployed, its services there to be started (and not)
        assert (
            slapgrid_node.instance_root / BOOT_STOPPED / 'etc' / 'run' / 'web'
        ).exists()
        install_plugin(slapgrid_node)
        yield slapgrid_node


@pytest.fixture
def boot(boot_node):
    """The shared node, installed with its own slapos.cfg and reachable
    master again whatever the last case did."""
    boot_node.master.front.reopen()
    boot_node.setup()
    yield boot_node
    boot_node.master.front.reopen()


def setup_files(slapgrid_node):
    return {
        path: path.read_bytes()
        for path in (
            slapgrid_node.include_dir / 'supervisor_slapos.conf',
            slapgrid_node.client_config,
            slapgrid_node.boot_entry,
        )
        if path.exists()
    }


def reboot(slapgrid_node):
    """A power cut, then what boot does with the plugin: only the boot
    entry's command, run as cron runs it. Return the new supervisord's pid
    once every started partition's processes are RUNNING (the stopped one
    has none)."""
    before = slapgrid_node.supervisord_pid()
    slapgrid_node.kill()
    result = run_reboot_entry(slapgrid_node.boot_entry)
    assert result.returncode == 0, result.stdout + result.stderr
    assert slapgrid_node.supervisord_pid() != before
    for pid in BOOT_STARTED:
        slapgrid_node.wait_group_running(pid)
    infos = slapgrid_node.rpc.supervisor.getAllProcessInfo()
    assert not [
        i
        for i in infos
        if i['group'] == BOOT_STOPPED and i['statename'] != 'STOPPED'
    ], infos
    return slapgrid_node.supervisord_pid()


def test_boot_entry_bytes_same_at_every_run_removed_by_remove(boot):
    slapgrid_node = boot
    slapos = slapgrid_node.stack.slapos
    log = (
        slapgrid_node.instance_root
        / 'var'
        / 'log'
        / 'supervisor-slapos-boot.log'
    )
    [line] = [
        line
        for line in slapgrid_node.boot_entry.read_text().splitlines()
        if not line.startswith('#')
    ]
    # the plugin's launcher, in the Python and sys.path of that slapos
    assert line.startswith('@reboot root /')
    assert line.endswith(
        f' --slapos-cfg {slapgrid_node.cfg} --slapos {slapos} >> {log} 2>&1'
    )
    assert stat.S_IMODE(slapgrid_node.boot_entry.stat().st_mode) == 0o644
    written = setup_files(slapgrid_node)
    inode = slapgrid_node.boot_entry.stat().st_ino
    again = slapgrid_node.setup()
    assert 'Nothing changed' in again
    assert setup_files(slapgrid_node) == written
    assert slapgrid_node.boot_entry.stat().st_ino == inode
    removed = slapgrid_node.setup('--remove')
    assert f'removed {slapgrid_node.boot_entry}' in removed
    assert setup_files(slapgrid_node) == {}
    slapgrid_node.setup()
    assert setup_files(slapgrid_node) == written


def test_no_slapos_on_path_is_a_clear_error_and_writes_nothing(boot):
    slapgrid_node = boot
    slapgrid_node.setup('--remove')
    etc = {
        p: p.read_bytes() for p in slapgrid_node.etc.rglob('*') if p.is_file()
    }
    result = subprocess.run(
        slapgrid_node.setup_command(
            '--cfg', slapgrid_node.cfg, '--cron-dir', slapgrid_node.cron_dir
        ),
        capture_output=True,
        text=True,
        timeout=60,
        env={'PATH': str(slapgrid_node.root / 'run')},
    )
    assert result.returncode == 1
    [message] = result.stderr.splitlines()
    assert message.startswith(
        'supervisor-slapos-setup: error: no slapos command on PATH'
    ), message
    assert '--slapos' in message
    assert result.stdout == ''
    assert {
        p: p.read_bytes() for p in slapgrid_node.etc.rglob('*') if p.is_file()
    } == etc
    assert list(slapgrid_node.cron_dir.iterdir()) == []


@pytest.mark.parametrize('master', ['refusing', 'hanging'])
def test_after_a_reboot_the_boot_entry_alone_starts_the_started(
    boot, master, capsys
):
    """Neither slapgrid nor the master: slapos node supervisord starts
    slapgrid's supervisord, the listener's offline start does the rest."""
    slapgrid_node = boot
    getattr(
        slapgrid_node.master.front,
        {'refusing': 'refuse', 'hanging': 'hang'}[master],
    )()
    started = time.monotonic()
    reboot(slapgrid_node)
    elapsed = time.monotonic() - started
    log = (
        slapgrid_node.instance_root
        / 'var'
        / 'log'
        / 'supervisor-slapos-boot.log'
    )
    assert 'Launching supervisord' in log.read_text()
    with capsys.disabled():
        print(
            f'\nslapgrid node, master {master}: a reboot, the boot entry, '
            f'then every started partition RUNNING in {elapsed:.1f} s'
        )


@pytest.mark.parametrize(
    'name',
    ['slapos-100%.cfg', 'my node/slapos.cfg', 'a ;b/it\'s "q".cfg'],
    ids=['percent', 'space', 'semicolon-quotes'],
)
def test_a_cfg_at_an_odd_path_boots_and_the_listener_reads_it(boot, name):
    """The node's only slapos.cfg is at an odd path: cron's line, the node
    file and the listener's command line all carry it intact. (The
    listener reads --cfg before anything else and exits 2 when it cannot:
    the partitions its offline start ran show that it read that file.)"""
    slapgrid_node = boot
    odd = slapgrid_node.root / 'odd' / name
    odd.parent.mkdir(parents=True, exist_ok=True)
    slapgrid_node.cfg.rename(odd)
    try:
        slapgrid_node.setup(cfg=odd)
        reboot(slapgrid_node)
        listener = slapgrid_node.processes('slapos')['slapos']
        assert listener['statename'] == 'RUNNING'
        argv = cmdline(listener['pid'])
        assert argv.decode().split('\0')[-4:-1] == [
            '--cfg',
            str(odd),
            '--slapgrid',
        ]
    finally:
        odd.rename(slapgrid_node.cfg)


def test_boot_entry_and_slapgrid_find_the_booted_supervisord_running(boot):
    """After the boot entry: run again (by hand, or a late cron) it
    changes nothing; slapgrid's next run, master up, uses that supervisord
    and leaves the partitions' services as they are."""
    slapgrid_node = boot
    supervisord = reboot(slapgrid_node)
    pids = {
        pid: slapgrid_node.wait_group_running(pid)['web']['pid']
        for pid in BOOT_STARTED
    }
    result = run_reboot_entry(slapgrid_node.boot_entry)
    assert result.returncode == 0, result.stdout + result.stderr
    assert slapgrid_node.supervisord_pid() == supervisord
    slapgrid_node.instance()
    assert slapgrid_node.supervisord_pid() == supervisord
    assert {
        pid: slapgrid_node.wait_group_running(pid)['web']['pid']
        for pid in BOOT_STARTED
    } == pids
    assert slapgrid_node.processes(BOOT_STOPPED) == {}


def test_slapos_node_supervisord_never_asks_the_master(tmp_path):
    """What the boot entry relies on (slapos.core 1.26.1): ``slapos node
    supervisord`` writes slapgrid's supervisord.conf and launches it
    without a word to the master (here one that accepts and never
    answers; no plugin, so no listener either)."""
    front = NodeFront()
    front.hang()
    instance_root = tmp_path / 'srv'
    instance_root.mkdir()
    cfg = tmp_path / 'slapos.cfg'
    cfg.write_text(
        f'[slapos]\ninstance_root = {instance_root}\n'
        f'master_url = {front.url}\ncomputer_id = C\n'
    )
    result = subprocess.run(
        [
            stacks.require_slapgrid().slapos,
            'node',
            'supervisord',
            '--cfg',
            str(cfg),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={},
    )
    pidfile = instance_root / 'var' / 'run' / 'supervisord.pid'
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert 'Launching supervisord' in result.stdout + result.stderr
        assert front.hung_connections() == 0
    finally:
        if pidfile.exists():
            pid = int(pidfile.read_text())
            os.kill(pid, signal.SIGTERM)
            wait_until(
                lambda: not is_alive(pid), 60, what='supervisord stopped'
            )
        front.close()
