"""Operations that outlive their call, on a real supervisord.

A call with ``wait=False``, a call queued behind another on the same
partition, a client that went away: whatever error such an operation
meets (a full or read-only filesystem, a partition directory gone) ends
that operation only. supervisord keeps running, the error is in its log
and in ``getPartitionInfo(P)['last_error']``, and every caller gets the
outcome of its own call. An answered stop is final: a reload or the
offline start never brings its processes back. The filesystem cases use
a small tmpfs and a read-only bind mount (skipped where the machine
refuses to mount).
"""

import concurrent.futures
import shutil
import socket
import subprocess
import xmlrpc.client

import pytest

from supervisor_slapos.faults import Faults
from supervisor_slapos.partitionconf import generate_partition_conf
from supervisor_slapos.partitionparse import MAX_FILE_SIZE
from testbed.node import SLEEPER, dedent
from testbed.polling import wait_until
from testbed.proc import handles_sigterm
from testbed.slapos_master import free_port

PID = 'slappart0'
SLEEP = shutil.which('sleep')
# Takes stopwaitsecs (2 s) to stop: TERM is ignored (also by the exec'd
# sleep, which inherits the ignored disposition), then KILL.
STUBBORN = dedent(f"""
    [program:{PID}-m]
    command=/bin/sh -c "trap '' TERM; exec {SLEEP} 3600"
    startsecs=0
    stopwaitsecs=2
    stopasgroup=true
    killasgroup=true
    """)
MANAGER = f'[program:{PID}-n]\ncommand={SLEEP} 3600\nstartsecs=0\n'
# A service that takes 2 s to stop after its TERM.
SLOW_STOPPER = (
    "#!/bin/sh\ntrap 'sleep 2; exit 0' TERM\nwhile :; do sleep 0.1; done\n"
)


# mounts


def run_mount(*args):
    result = subprocess.run(['mount', *args], capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f'mount {" ".join(args)} refused: {result.stderr}')


@pytest.fixture
def mounts():
    """``tmpfs(path, size)`` and ``read_only(path)``; all undone after."""
    targets = []

    class Mounts:
        def tmpfs(self, path, size):
            run_mount('-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path))
            targets.append(path)

        def read_only(self, path):
            run_mount('--bind', str(path), str(path))
            targets.append(path)
            run_mount('-o', 'remount,ro,bind', str(path))

    yield Mounts()
    for path in reversed(targets):
        subprocess.run(['umount', '-l', str(path)], check=True)


# clients


@pytest.fixture
def pool():
    with concurrent.futures.ThreadPoolExecutor(4) as executor:
        yield executor


def call(rpc, method, *args):
    """The result of ``slapos.method(*args)``, or the Fault it raised."""
    try:
        return getattr(rpc.slapos, method)(*args)
    except xmlrpc.client.Fault as fault:
        return fault


def call_and_leave(node, method, *args):
    """Send one XML-RPC call and close the connection without an answer,
    as a client that was killed or timed out."""
    body = xmlrpc.client.dumps(args, f'slapos.{method}').encode()
    head = (
        f'POST /RPC2 HTTP/1.0\r\nContent-Type: text/xml\r\n'
        f'Content-Length: {len(body)}\r\n\r\n'
    ).encode()
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(node.socket))
        client.sendall(head + body)


# what the node shows


def log_text(node):
    return (node.root / 'supervisord.log').read_text(errors='replace')


def wait_logged(node, text):
    wait_until(lambda: text in log_text(node), what=f'{text!r} in the log')


def wait_state(node, group, statename):
    wait_until(
        lambda: (
            {i['statename'] for i in node.processes(group).values()}
            == {statename}
        ),
        what=f'{group} {statename}',
    )


def wait_term_handled(node, group, name=None):
    """Wait until process ``name`` of ``group`` (its only one by default)
    has set its TERM trap: before that, a stop ends it at once."""
    wait_until(
        lambda: (
            lambda infos: (
                infos
                and handles_sigterm(infos[name or next(iter(infos))]['pid'])
            )
        )(node.processes(group)),
        what=f'{group} handling TERM',
    )


def assert_running(node):
    assert node.rpc.supervisor.getState()['statename'] == 'RUNNING'
    assert node.process.poll() is None


def no_temporaries(node):
    return not [
        p for p in node.include_dir.iterdir() if p.name.endswith('.tmp')
    ]


@pytest.fixture
def stubborn(make_node):
    """A node (log level debug: it logs queued jobs) whose partition has a
    manager group that takes 2 s to stop."""
    node = make_node(loglevel='debug').start()
    assert call(node.rpc, 'writeGroupConfig', PID, 'm', STUBBORN) == [
        [f'{PID}-m'],
        [],
        [],
    ]
    node.wait_execed(f'{PID}-m')
    return node


def start_removal(node, pool, rpc=None, wait=True):
    """removeGroupConfig of the stubborn group, which then stops for 2 s:
    the future of its answer, once its job is under way."""
    wait_term_handled(node, f'{PID}-m')
    future = pool.submit(
        call, rpc or node.rpc, 'removeGroupConfig', PID, 'm', wait
    )
    wait_state(node, f'{PID}-m', 'STOPPING')
    return future


def write_failing_after_its_client_left(node, mounts):
    """A write queued behind a removal (started before), its client gone,
    the include directory then read-only: the removal ends, then the write
    runs and fails, both on supervisord's TICKs. Returns the partition's
    info with that ``last_error``."""
    call_and_leave(node, 'writeGroupConfig', PID, 'n', MANAGER)
    wait_logged(node, f'writeGroupConfig({PID}) queued behind')
    mounts.read_only(node.include_dir)
    return wait_until(
        lambda: (lambda i: i if i['last_error'] else None)(
            node.rpc.slapos.getPartitionInfo(PID)
        ),
        what='last_error',
        timeout=60,
    )


# 1. nothing a job raises reaches supervisord's loop


def test_job_failing_after_its_client_left_is_logged_and_shown(
    stubborn, pool, mounts
):
    node = stubborn
    assert start_removal(node, pool, wait=False).result() is True
    info = write_failing_after_its_client_left(node, mounts)
    assert info['last_error'].startswith(
        'FILE_ERROR: Read-only file system'
    ), info
    assert info['groups'] == [] and info['files'] == []
    assert_running(node)
    log = log_text(node)
    assert f'writeGroupConfig({PID}) failed: FILE_ERROR: Read-only' in log
    assert no_temporaries(node)


def test_failing_stop_without_wait_is_refused_and_changes_nothing(
    make_node, mounts
):
    node = make_node()
    node.make_partition(PID, run=['a'])
    node.start()
    node.rpc.slapos.startPartition(PID)
    node.wait_execed(PID)
    before = node.process_table()
    mounts.read_only(node.include_dir)
    fault = call(node.rpc, 'stopPartition', PID, False)
    assert fault.faultCode == Faults.FILE_ERROR, fault
    assert 'Read-only file system' in fault.faultString
    assert node.rpc.slapos.getPartitionInfo(PID)['state'] == 'started'
    assert node.process_table() == before
    assert_running(node)


# 2. each caller gets its own outcome


def test_queued_failure_reaches_its_own_caller_only(stubborn, pool, mounts):
    node = stubborn
    removal = start_removal(node, pool)
    write = pool.submit(call, node.rpc, 'writeGroupConfig', PID, 'n', MANAGER)
    wait_logged(node, f'writeGroupConfig({PID}) queued behind')
    mounts.read_only(node.include_dir)
    assert removal.result() is True
    fault = write.result()
    assert fault.faultCode == Faults.FILE_ERROR, fault
    assert 'Read-only file system' in fault.faultString
    # the caller got it: it is no operation's unseen failure
    assert node.rpc.slapos.getPartitionInfo(PID)['last_error'] == ''
    assert node.processes(f'{PID}-m') == {}
    assert node.processes(f'{PID}-n') == {}
    assert_running(node)


# 3. a full disk


def test_full_disk_is_a_fault_naming_it_and_writes_nothing(make_node, mounts):
    node = make_node()
    node.make_partition(PID, run=['a'])
    mounts.tmpfs(node.include_dir, '64k')
    node.start()
    with pytest.raises(OSError), open(node.include_dir / 'filler', 'wb') as f:
        while True:
            f.write(b'\0' * 4096)
            f.flush()
    before = node.include_listing()
    for method, args in (
        ('startPartition', (PID,)),
        ('writeGroupConfig', (PID, 'n', MANAGER)),
    ):
        fault = call(node.rpc, method, *args)
        assert fault.faultCode == Faults.FILE_ERROR, (method, fault)
        assert 'No space left on device' in fault.faultString, fault
        assert node.include_listing() == before
        assert node.processes(PID) == {} and node.processes(f'{PID}-n') == {}
    result = node.ctl('slapos', 'start', PID)
    assert 'No space left on device' in result.stdout + result.stderr
    assert result.returncode != 0
    assert_running(node)


# 4. an answered stop is final


@pytest.fixture
def slow_to_stop(make_node):
    """A started partition: 'quick' stops at once, 'slow' 2 s after its
    TERM."""
    node = make_node()
    node.make_partition(PID, run={'quick': SLEEPER, 'slow': SLOW_STOPPER})
    node.start()
    node.rpc.slapos.startPartition(PID)
    node.wait_execed(PID)
    wait_term_handled(node, PID, 'slow')
    return node


def test_answered_stop_is_final_across_a_reload(slow_to_stop):
    node = slow_to_stop
    assert node.rpc.slapos.stopPartition(PID, False) is True
    assert node.rpc.slapos.getPartitionInfo(PID)['state'] == 'stopped'
    assert node.ctl('reload').returncode == 0
    node.wait_running()
    results = node.rpc.slapos.startAllPartitions()  # the offline start
    assert [r for r in results if r['group'] == PID] == []
    info = node.rpc.slapos.getPartitionInfo(PID)
    assert info['state'] == 'stopped' and info['processes'] == []


def test_startAllPartitions_never_restarts_a_partition_being_stopped(
    slow_to_stop,
):
    node = slow_to_stop
    assert node.rpc.slapos.stopPartition(PID, False) is True
    wait_until(
        lambda: node.processes(PID)['quick']['statename'] == 'STOPPED',
        what='quick stopped while slow stops',
    )
    results = node.rpc.slapos.startAllPartitions()
    assert [r for r in results if r['group'] == PID] == []
    assert node.processes(PID)['quick']['statename'] == 'STOPPED'
    wait_until(lambda: node.processes(PID) == {}, what='group removed')


# 13. one queue per supervisord


def test_calls_through_two_servers_are_serialized(make_node, pool):
    port = free_port()
    node = make_node(extra=f'\n[inet_http_server]\nport = 127.0.0.1:{port}\n')
    node.start()
    inet = xmlrpc.client.ServerProxy(f'http://127.0.0.1:{port}')
    for round_ in ('first start', 'after a reload'):
        if round_ == 'after a reload':  # the factory runs again
            assert node.ctl('reload').returncode == 0
            node.wait_running()
        assert call(inet, 'writeGroupConfig', PID, 'm', STUBBORN)[0] in (
            [f'{PID}-m'],
            [],
        ), round_
        node.wait_execed(f'{PID}-m')
        removal = start_removal(node, pool)  # through the unix socket
        # queued behind the removal, so it adds the group back after it
        assert call(inet, 'writeGroupConfig', PID, 'm', STUBBORN) == [
            [f'{PID}-m'],
            [],
            [],
        ], round_
        assert removal.result() is True
        assert node.include_file(f'{PID}-m.conf').exists(), round_
        node.wait_execed(f'{PID}-m')  # added back, so it runs


# 14. suspected cases


def test_queued_call_without_wait_gets_its_own_refusal(stubborn, pool):
    node = stubborn
    node.make_partition(PID, run=['a'])
    start_removal(node, pool, wait=False)
    start = pool.submit(call, node.rpc, 'startPartition', PID, False)
    wait_logged(node, f'startPartition({PID}) queued behind')
    shutil.rmtree(node.instance_root / PID)
    fault = start.result()
    assert fault.faultCode == Faults.NO_PARTITION, fault
    assert not node.include_file(f'{PID}.conf').exists()


def test_startAllPartitions_reports_no_failure_for_changes_between_slices(
    make_node, pool
):
    node = make_node()
    pids = [f'slappart{i}' for i in range(6)]
    for pid in pids:
        node.make_partition(pid, run=[f'r{i}' for i in range(8)])
    node.start()
    for pid in pids:
        node.rpc.slapos.startPartition(pid)
    for round_ in range(3):
        for pid in pids:  # a TERM before exec would be lost (see SPEC)
            node.wait_execed(pid)
        node.rpc.supervisor.stopAllProcesses()
        startall = pool.submit(node.rpc.slapos.startAllPartitions)
        moved = 0
        while not startall.done():
            pid = pids[moved % len(pids)]
            node.rpc.slapos.stopPartition(pid)
            node.rpc.slapos.startPartition(pid)
            node.wait_execed(pid)
            moved += 1
        failed = [r for r in startall.result() if r['status'] != 80]
        assert failed == [], (round_, moved, failed)


def test_partition_conf_larger_than_the_manager_cap_starts(make_node):
    node = make_node()
    # a deep instance root makes each program's text long: about 100
    # entries exceed the cap (on a node, about 1,900 do)
    node.instance_root = node.root.joinpath(*['i' * 200] * 12)
    node.write_config()
    entries = []
    while (
        not entries
        or len(generate_partition_conf(str(node.instance_root), PID))
        <= MAX_FILE_SIZE
    ):
        entries += [f'r{len(entries) + i}' for i in range(10)]
        node.make_partition(PID, run=entries)
    node.start()
    assert node.rpc.slapos.startPartition(PID) is True
    assert node.include_file(f'{PID}.conf').stat().st_size > MAX_FILE_SIZE
    assert node.rpc.slapos.updatePartition(PID) == [[], [], []]
    assert len(node.processes(PID)) == len(entries)


# 7. a manager file may not take P.conf's program names


def test_manager_file_may_not_take_a_program_name_of_partition_conf(make_node):
    node = make_node()
    node.make_partition(PID, run=['a'])
    node.start()
    for name in ('a', 'not_an_entry_yet'):
        text = f'[program:{PID}_{name}]\ncommand={SLEEP} 3600\n'
        fault = call(node.rpc, 'writeGroupConfig', PID, 'y', text)
        assert fault.faultCode == Faults.BAD_CONFIG, fault
        assert f'{PID}-y.conf' in fault.faultString, fault
        assert node.include_listing() == {}
    # a file an older version accepted: the start blames it, not P.conf
    node.include_file(f'{PID}-y.conf').write_text(
        f'[program:{PID}_a]\ncommand={SLEEP} 3600\n'
    )
    fault = call(node.rpc, 'startPartition', PID)
    assert fault.faultCode == Faults.BAD_CONFIG, fault
    assert fault.faultString.startswith(
        f"BAD_CONFIG: section [program:{PID}_a] (file: "
        f"'{node.include_file(f'{PID}-y.conf')}'"
    ), fault
    assert not node.include_file(f'{PID}.conf').exists()
    node.rpc.slapos.removeGroupConfig(PID, 'y')
    assert node.rpc.slapos.startPartition(PID) is True


# 9. the cleanup at start


def test_cleanup_at_start_removes_only_the_plugins_temporaries(make_node):
    node = make_node()
    ours = f'.{PID}.conf.k2j3.supervisor_slapos.tmp'
    others = ['.passwd.tmp', f'.{PID}.conf.abc.tmp', 'x.tmp']
    for directory in (node.include_dir, node.include_dir.parent):
        for name in [ours, *others]:
            (directory / name).write_text('x')
    node.start()
    for directory in (node.include_dir, node.include_dir.parent):
        names = {p.name for p in directory.iterdir()}
        assert ours not in names and set(others) <= names, directory


def test_calls_on_a_vanished_include_directory_are_file_errors(node):
    node.make_partition(PID, run=['a'])
    shutil.rmtree(node.include_dir)
    for method, args in (
        ('getPartitionInfo', (PID,)),
        ('getAllPartitionInfo', ()),
        ('startPartition', (PID,)),
    ):
        fault = call(node.rpc, method, *args)
        assert fault.faultCode == Faults.FILE_ERROR, (method, fault)
        assert 'No such file or directory' in fault.faultString, fault
    assert_running(node)


def test_slapos_check_warns_of_a_failure_nobody_saw(stubborn, pool, mounts):
    """The failure of a job whose client left is a ``slapos check``
    warning naming the partition and the fault (a partition that still
    has a file: ``getAllPartitionInfo`` lists no other)."""
    node = stubborn
    call(
        node.rpc,
        'writeGroupConfig',
        PID,
        'k',
        MANAGER.replace(f'{PID}-n', f'{PID}-k'),
    )
    assert start_removal(node, pool, wait=False).result() is True
    info = write_failing_after_its_client_left(node, mounts)
    result = node.ctl('slapos', 'check')
    [line] = [line for line in result.stdout.splitlines() if PID in line]
    assert line.split(None, 2)[:2] == ['warn', 'partition']
    assert line.endswith(
        f'{PID}: last error: {info["last_error"]} '
        f'(slapos status {PID}; run the operation again)'
    )
