"""``supervisorctl slapos check`` against real supervisords: a healthy
node, and each point broken the way an operator meets it (an upgrade not
yet restarted, no listener, a boot entry gone, a descriptor limit too low
for the node's processes, state_dir unusable, a partition's failed
background operation)."""

import shutil
import subprocess
import sys

from supervisor_slapos import __version__, nodecheck
from supervisor_slapos.setuprecord import SetupRecord, write_setup_record
from testbed.node import plugin_copy, unwritable
from testbed.polling import wait_until

BAD_INTERPRETER = '#!/nowhere/interpreter\n'


def check(node):
    """(exit status, [(level, point, text)]) of ``slapos check``."""
    result = node.ctl('slapos', 'check')
    assert result.stderr == ''
    return result.returncode, [
        (line[:5].strip(), line[6:18].strip(), line[19:])
        for line in result.stdout.splitlines()
    ]


def by_point(lines):
    return {point: (level, text) for level, point, text in lines}


def record_boot_entry(node, tmp_path, command=sys.executable):
    """What supervisor-slapos-setup records, its boot entry running
    ``command``; the boot entry's path."""
    boot = tmp_path / 'cron.d' / 'supervisor-slapos'
    boot.parent.mkdir(exist_ok=True)
    cfg = tmp_path / 'slapos.cfg'
    cfg.write_text('[slapos]\n')
    boot.write_text(
        f'# the setup\'s\n@reboot root {command} node '
        f'supervisord --cfg {cfg} >> /x.log 2>&1\n'
    )
    write_setup_record(
        str(node.state_dir),
        SetupRecord(__version__, str(cfg), str(boot), (str(boot),)),
    )
    return boot


def programs(count):
    """``count`` programs, not started, in the main configuration."""
    return ''.join(
        f'\n[program:p{i}]\ncommand = /bin/true\nautostart = false\n'
        for i in range(count)
    )


def limited_node(make_node, name, limit, count, **kwargs):
    """A node of ``count`` programs (and the listener) whose supervisord
    runs with a descriptor limit of ``limit`` (soft and hard: no raising
    it)."""
    node = make_node(
        name,
        listener=[],
        extra=programs(count),
        supervisord_options='minfds = 32\n',
        **kwargs,
    )
    node.command_prefix = ('prlimit', f'--nofile={limit}:{limit}')
    return node.start()


def test_a_healthy_node_is_all_ok(make_node, tmp_path):
    node = make_node(listener=[]).start()
    boot = record_boot_entry(node, tmp_path)
    node.make_partition('slappart0', run=['a'])
    node.start_partition('slappart0')
    wait_until(
        lambda: node.processes('slapos')['slapos']['statename'] == 'RUNNING',
        what='the listener RUNNING',
    )
    status, lines = check(node)
    listener_pid = node.processes('slapos')['slapos']['pid']
    soft, _ = nodecheck.open_files_limit(node.rpc.supervisor.getPID())
    assert lines == [
        (
            'ok',
            'plugin',
            f'supervisor_slapos {__version__} loaded in '
            f'supervisord, as installed',
        ),
        ('ok', 'listener', f'RUNNING (pid {listener_pid})'),
        ('ok', 'boot entry', f'{boot} runs {sys.executable} at boot'),
        ('ok', 'descriptors', f'limit {soft}; 2 processes need about 70'),
        ('ok', 'state_dir', f'{node.state_dir} is writable'),
        ('ok', 'partitions', '1 listed, none with a last error or destroying'),
    ]
    assert status == 0


def test_a_broken_node_fails_and_says_what_to_do(make_node, tmp_path):
    """No listener, a descriptor limit that cannot hold the processes,
    the boot entry gone, state_dir unwritable."""
    processes = 40  # not started: supervisord keeps answering
    limit = nodecheck.descriptors_needed(processes) - 1
    node = make_node(
        extra=programs(processes), supervisord_options='minfds = 32\n'
    )
    node.command_prefix = ('prlimit', f'--nofile={limit}:{limit}')
    node.start()
    boot = record_boot_entry(node, tmp_path)
    boot.unlink()
    with unwritable(node.state_dir):
        status, lines = check(node)
    points = by_point(lines)
    pid = node.rpc.supervisor.getPID()
    need = nodecheck.descriptors_needed(processes)
    assert [level for level, _, _ in lines] == [
        'ok',
        'FAIL',
        'FAIL',
        'FAIL',
        'FAIL',
        'ok',
    ]
    assert points['listener'] == (
        'FAIL',
        'no [eventlistener:slapos] in '
        'supervisord: no offline start '
        '(see README for its section)',
    )
    assert points['boot entry'] == (
        'FAIL',
        (
            f'{boot} is missing: supervisord will not start at boot; run '
            f'supervisor-slapos-setup --cfg {tmp_path}/slapos.cfg again'
        ),
    )
    assert points['descriptors'] == (
        'FAIL',
        (
            f'limit {limit} cannot hold them: {processes} processes need '
            f'about {need}; raise it: prlimit --pid {pid} --nofile='
            f'{2 * need}:{2 * need}'
        ),
    )
    level, text = points['state_dir']
    assert level == 'FAIL'
    assert text.startswith(f'{node.state_dir}: ')
    assert text.endswith(
        'the listener cannot record its state; free or fix that directory'
    )
    assert status == 2


def test_warnings_little_room_for_descriptors_state_dir_gone(
    make_node, tmp_path
):
    count = 20
    processes = count + 1  # and the listener
    limit = nodecheck.descriptors_needed(processes) + 1
    node = limited_node(
        make_node, 'node', limit, count, state_dir=tmp_path / 'state'
    )
    wait_until(
        lambda: node.processes('slapos')['slapos']['statename'] == 'RUNNING',
        what='the listener RUNNING',
    )
    wait_until(
        (node.state_dir / 'sync-state.json').exists,
        what='the listener\'s first state',
    )

    def checked_without_state_dir():
        # the listener makes it again at its next write (once a minute):
        # again if that came between
        shutil.rmtree(node.state_dir, ignore_errors=True)
        status, lines = check(node)
        return not node.state_dir.exists() and (status, lines)

    status, lines = wait_until(
        checked_without_state_dir, what='a check while state_dir is gone'
    )
    points = by_point(lines)
    need = nodecheck.descriptors_needed(processes)
    pid = node.rpc.supervisor.getPID()
    assert points['descriptors'] == (
        'warn',
        (
            f'limit {limit}, little room: {processes} processes need about '
            f'{need}; raise it: prlimit --pid {pid} --nofile='
            f'{2 * need}:{2 * need}'
        ),
    )
    assert points['state_dir'] == (
        'warn',
        (
            f'{node.state_dir} is missing: the listener makes it again at its '
            f'next write (what it had recorded is lost)'
        ),
    )
    assert [level for level, _, _ in lines] == [
        'ok',
        'ok',
        'warn',
        'warn',
        'ok',
    ]
    assert status == 1


def test_a_destroy_under_way_is_a_warning(node):
    node.make_partition('slappart0', run=['a'])
    node.start_partition('slappart0')
    wait_list = (
        node.instance_root / 'slappart0' / '.slapos-report-wait-service-list'
    )
    wait_list.write_text('')
    assert (
        node.rpc.slapos.getPartitionInfo('slappart0')['state'] == 'destroying'
    )
    _, lines = check(node)
    assert by_point(lines)['partition'] == (
        'warn',
        (
            "slappart0 is destroying (slapgrid's "
            ".slapos-report-wait-service-list): only its prerm group runs "
            "until slapgrid ends the destroy; "
            "with no slapgrid run under way, it died half-way: slapos node "
            "instance"
        ),
    )


def test_a_boot_entry_running_a_missing_command_fails(node, tmp_path):
    boot = record_boot_entry(node, tmp_path, command='/nowhere/slapos')
    status, lines = check(node)
    assert by_point(lines)['boot entry'] == (
        'FAIL',
        (
            f'{boot} names /nowhere/slapos, which is not an executable file; '
            f'run supervisor-slapos-setup --cfg {tmp_path}/slapos.cfg again '
            f'(--slapos PATH)'
        ),
    )
    assert status == 2


def test_after_an_upgrade_check_and_setup_say_restart(make_node, tmp_path):
    """supervisord still runs the version it loaded; the installed one is
    newer: check fails, and the setup (its files unchanged) says so."""
    node = make_node(
        listener=[], environ=plugin_copy(tmp_path / 'old', '0.0.1')
    )
    node.cwd = tmp_path
    node.start()
    status, lines = check(node)
    assert lines[0] == (
        'FAIL',
        'plugin',
        (
            f'supervisord still runs supervisor_slapos 0.0.1, '
            f'{__version__} is '
            f'installed: restart supervisord (a reload keeps the loaded code; '
            f'README, "Upgrade")'
        ),
    )
    assert status == 2
    # the setup run after the upgrade
    assert (
        f'Supervisord still runs supervisor_slapos 0.0.1, {__version__} '
        f'is installed: restart supervisord'
    ) in setup_beside(node, tmp_path)


def test_setup_beside_a_supervisord_without_the_plugin_says_no_restart(
    make_node, tmp_path
):
    node = make_node(plugin=False).start()
    assert 'still runs' not in setup_beside(node, tmp_path)


def setup_beside(node, tmp_path):
    """The output of supervisor-slapos-setup on an instance root (in
    ``tmp_path``) whose supervisord socket is ``node``'s."""
    root = tmp_path / 'srv'
    (root / 'etc' / 'supervisord.conf.d').mkdir(parents=True)
    (root / 'sv.sock').symlink_to(node.socket)
    cfg = tmp_path / 'slapos.cfg'
    cfg.write_text(f'[slapos]\ninstance_root = {root}\n')
    (tmp_path / 'cron.d').mkdir()
    setup = subprocess.run(
        [
            sys.executable,
            '-m',
            'supervisor_slapos.nodesetup',
            '--cfg',
            str(cfg),
            '--cron-dir',
            str(tmp_path / 'cron.d'),
            '--slapos',
            sys.executable,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert setup.returncode == 0, setup.stderr
    return setup.stdout


def test_no_plugin_loaded_fails(make_node):
    node = make_node(listener=[])
    node.config.write_text(
        node.config.read_text().replace('[rpcinterface:slapos]', '[x]')
    )
    node.start()
    status, lines = check(node)
    assert lines[0] == (
        'FAIL',
        'plugin',
        (
            f'supervisord at unix://{node.socket} has no slapos namespace: '
            f'the '
            f'plugin is not loaded ([rpcinterface:slapos], then restart or '
            f'reload supervisord)'
        ),
    )
    assert [point for _, point, _ in lines] == [
        'plugin',
        'listener',
        'descriptors',
    ]
    assert status == 2


def test_an_unreachable_supervisord_exits_4(make_node):
    node = make_node()  # never started
    result = node.ctl('slapos', 'check')
    assert (result.returncode, result.stdout) == (
        4,
        f'unix://{node.socket} no such file\n',
    )


def test_a_listener_stopped_by_hand_fails(make_node):
    node = make_node(listener=[]).start()
    wait_until(
        lambda: node.processes('slapos')['slapos']['statename'] == 'RUNNING',
        what='the listener RUNNING',
    )
    node.rpc.supervisor.stopProcess('slapos')
    status, lines = check(node)
    assert by_point(lines)['listener'] == (
        'FAIL',
        'STOPPED (by hand): no offline start; supervisorctl start slapos',
    )
    assert status == 2
