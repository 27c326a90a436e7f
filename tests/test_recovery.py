"""Recovery: a corrupt or truncated include file left by another tool.

The plugin writes every file atomically, but an older tool (or a power
loss under a tool that does not fsync) may leave a ``P.conf`` truncated,
zero-filled or otherwise broken while supervisord runs the partition from
the good version it read before. Then:

- ``updatePartition(P)`` refuses with BAD_CONFIG (303), naming the file
  and the line, and changes nothing: P's processes keep running;
- every other partition is managed as usual (update, start, stop, write
  and remove a manager file, startAllPartitions), and the processes that
  should not move keep their pids;
- ``startPartition(P)`` rewrites ``P.conf`` from etc/run and etc/service:
  it repairs the file, and when the result is what is loaded already, the
  processes keep running untouched;
- ``stopPartition(P)`` and ``destroyPartition(P)`` work on a broken file
  (they remove it);
- a broken manager file ``P-x.conf`` makes ``updatePartition(P)`` and
  ``startPartition(P)`` refuse, naming that file, until the manager
  rewrites or removes it (``removeGroupConfig`` works on it).

supervisord itself, however, refuses to start, or to reload, with a
broken include file: that last test records it.
"""

import re
import shutil
import xmlrpc.client

import pytest

from supervisor_slapos.faults import Faults
from supervisor_slapos.partitionconf import generate_partition_conf

SLEEP = shutil.which('sleep')
VICTIM, OTHER = 'slappart0', 'slappart1'


def line_of(text, needle):
    """1-based number of the first line of ``text`` containing needle."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(needle)


def cut_after(text, needle):
    """``text`` up to and including the first ``needle``."""
    return text[: text.index(needle) + len(needle)]


# Each corruption: good P.conf text -> (bytes on disk, expected line).
def truncated_in_header(text):
    # "[program:slappart0_r1" reads as an option of the section before it,
    # which supervisor's message names (saying, wrongly, that it names
    # the program that no longer exists).
    return (
        cut_after(text, '[program:slappart0_r1').encode(),
        line_of(text, '[program:slappart0_r0]'),
    )


def truncated_in_option(text):
    start = text.index('[program:slappart0_r1]')
    body = text[: text.index('stopwaitsecs', start) + len('stopwai')]
    return body.encode(), len(body.splitlines())


def truncated_after_directory(text):
    start = text.index('[program:slappart0_r1]')
    body = text[: text.index('\n', text.index('directory=', start)) + 1]
    return body.encode(), line_of(text, '[program:slappart0_r1]')


def zero_filled(text):
    return b'\0' * len(text.encode()), 1


def not_utf8(text):
    number = line_of(text, 'process_name=r1')
    lines = text.splitlines(keepends=True)
    lines[number - 1] = 'process_name=r\xff1\n'
    return ''.join(lines).encode('latin-1'), number


def foreign_section(text):
    return (text + '\n[supervisord]\nnodaemon=true\n').encode(), len(
        text.splitlines()
    ) + 2


def bad_value(text):
    start = text.index('[program:slappart0_r1]')
    at = text.index('startsecs=0', start)
    body = text[:at] + 'startsecs=soon' + text[at + len('startsecs=0') :]
    return body.encode(), line_of(text, '[program:slappart0_r1]')


def unknown_program(text):
    body = text.replace(
        'programs=slappart0_r0,', 'programs=slappart0_gone,slappart0_r0,', 1
    )
    return body.encode(), line_of(text, '[group:slappart0]')


CORRUPTIONS = [
    truncated_in_header,
    truncated_in_option,
    truncated_after_directory,
    zero_filled,
    not_utf8,
    foreign_section,
    bad_value,
    unknown_program,
]


@pytest.fixture
def two_partitions(make_node):
    """A node running VICTIM (2 run, 1 service) and OTHER (1 run, and a
    manager group)."""
    node = make_node()
    node.make_partition(VICTIM, run=['r0', 'r1'], service=['w'])
    node.make_partition(OTHER, run=['r0'])
    node.start()
    for pid in (VICTIM, OTHER):
        assert node.rpc.slapos.startPartition(pid) is True
    node.rpc.slapos.writeGroupConfig(
        OTHER,
        'keep',
        f'[program:{OTHER}-keep]\ncommand={SLEEP} 3600\nstartsecs=0\n',
    )
    for group in (VICTIM, OTHER, f'{OTHER}-keep'):
        node.wait_execed(group)
    return node


def corrupt(node, corruption, basename=f'{VICTIM}.conf'):
    path = node.include_file(basename)
    data, line = corruption(path.read_text())
    path.write_bytes(data)
    return path, line


def assert_bad_config(call, path, line):
    with pytest.raises(xmlrpc.client.Fault) as info:
        call()
    fault = info.value
    assert fault.faultCode == Faults.BAD_CONFIG, fault
    assert fault.faultString.startswith('BAD_CONFIG: '), fault.faultString
    assert str(path) in fault.faultString, fault.faultString
    # configparser says "line: 1" or "[line  4]", the plugin "line 4"
    assert re.search(rf'\bline:? +{line}\b', fault.faultString), (
        fault.faultString
    )
    return fault


@pytest.mark.parametrize(
    'corruption', CORRUPTIONS, ids=[c.__name__ for c in CORRUPTIONS]
)
def test_corrupt_partition_conf_is_reported_and_blocks_nobody(
    two_partitions, corruption
):
    node = two_partitions
    slapos = node.rpc.slapos
    victim_pids = node.pids(VICTIM)
    path, line = corrupt(node, corruption)
    listing = node.include_listing()

    # reported, with the file and the line; nothing changes
    assert_bad_config(lambda: slapos.updatePartition(VICTIM), path, line)
    assert node.include_listing() == listing
    assert node.pids(VICTIM) == victim_pids
    info = slapos.getPartitionInfo(VICTIM)
    assert info['state'] == 'started'
    assert {p['statename'] for p in info['processes']} == {'RUNNING'}

    # the other partition is managed as usual
    other_pids = node.pids(OTHER)
    keep_pids = node.pids(f'{OTHER}-keep')
    assert slapos.updatePartition(OTHER) == [[], [], []]
    assert slapos.startPartition(OTHER) is True
    assert node.pids(OTHER) == other_pids
    assert slapos.writeGroupConfig(
        OTHER,
        'new',
        f'[program:{OTHER}-new]\ncommand={SLEEP} 3600\n'
        f'startsecs=0\nautostart=false\n',
    ) == [[f'{OTHER}-new'], [], []]
    assert slapos.removeGroupConfig(OTHER, 'new') is True
    assert slapos.stopPartition(OTHER) is True
    assert slapos.getPartitionInfo(OTHER)['state'] == 'stopped'
    assert slapos.startPartition(OTHER) is True
    node.wait_execed(OTHER)
    assert all(r['status'] == 80 for r in slapos.startAllPartitions())
    assert len(slapos.getAllPartitionInfo()) == 2
    assert node.pids(f'{OTHER}-keep') == keep_pids
    assert node.pids(VICTIM) == victim_pids
    assert node.include_file(path.name).read_bytes() == listing[path.name]

    # startPartition rewrites P.conf: repaired, nothing restarted
    assert slapos.startPartition(VICTIM) is True
    assert path.read_text() == generate_partition_conf(
        str(node.instance_root), VICTIM
    )
    assert node.pids(VICTIM) == victim_pids
    assert slapos.updatePartition(VICTIM) == [[], [], []]


@pytest.mark.parametrize('method', ['stopPartition', 'destroyPartition'])
@pytest.mark.parametrize(
    'corruption',
    [truncated_in_option, not_utf8, zero_filled],
    ids=lambda c: c.__name__,
)
def test_corrupt_partition_conf_can_be_stopped_or_destroyed(
    two_partitions, corruption, method
):
    node = two_partitions
    slapos = node.rpc.slapos
    node.rpc.slapos.writeGroupConfig(
        VICTIM,
        'm',
        f'[program:{VICTIM}-m]\ncommand={SLEEP} 3600\nstartsecs=0\n',
    )
    node.wait_execed(f'{VICTIM}-m')
    corrupt(node, corruption)
    other = node.include_listing()
    assert getattr(slapos, method)(VICTIM) is True
    info = slapos.getPartitionInfo(VICTIM)
    assert info['state'] == 'stopped'
    if method == 'stopPartition':
        assert info['files'] == [f'{VICTIM}-m.conf']
        assert info['groups'] == [f'{VICTIM}-m']
    else:
        assert info['files'] == [] and info['groups'] == []
    del other[f'{VICTIM}.conf']
    other.pop(f'{VICTIM}-m.conf')
    assert {
        k: v
        for k, v in node.include_listing().items()
        if not k.startswith(f'{VICTIM}-')
    } == other


MANAGER_TEXT = (
    f'[program:{VICTIM}-m]\ncommand={SLEEP} 3600\nstartsecs=0\n'
    f'stopwaitsecs=5\n'
)
# broken manager file: (text, line of the error)
BROKEN_MANAGER = {
    'truncated': (
        MANAGER_TEXT[: MANAGER_TEXT.index('stopwai') + 7].encode(),
        4,
    ),
    'bad-value': (
        MANAGER_TEXT.replace('startsecs=0', 'startsecs=soon').encode(),
        1,
    ),
    'not-utf8': (MANAGER_TEXT.encode().replace(b'3600', b'36\xff00'), 2),
}


@pytest.mark.parametrize('broken', sorted(BROKEN_MANAGER))
def test_corrupt_manager_file_blocks_its_partition_only(
    two_partitions, broken
):
    node = two_partitions
    slapos = node.rpc.slapos
    slapos.writeGroupConfig(VICTIM, 'm', MANAGER_TEXT)
    node.wait_execed(f'{VICTIM}-m')
    manager_pids = node.pids(f'{VICTIM}-m')
    victim_pids = node.pids(VICTIM)
    path = node.include_file(f'{VICTIM}-m.conf')
    data, line = BROKEN_MANAGER[broken]
    path.write_bytes(data)
    listing = node.include_listing()

    assert_bad_config(lambda: slapos.updatePartition(VICTIM), path, line)
    assert_bad_config(lambda: slapos.startPartition(VICTIM), path, line)
    assert node.include_listing() == listing
    assert node.pids(VICTIM) == victim_pids
    assert node.pids(f'{VICTIM}-m') == manager_pids
    assert slapos.updatePartition(OTHER) == [[], [], []]

    # the manager rewrites its file, or removes it
    assert slapos.writeGroupConfig(VICTIM, 'm', MANAGER_TEXT) == [[], [], []]
    assert node.pids(f'{VICTIM}-m') == manager_pids
    path.write_bytes(data)
    assert slapos.removeGroupConfig(VICTIM, 'm') is True
    assert not path.exists()
    assert slapos.startPartition(VICTIM) is True
    assert node.pids(VICTIM) == victim_pids


def test_supervisord_itself_refuses_a_broken_include(two_partitions):
    """What the plugin cannot help: supervisord parses every include file
    at start and at reload, before any plugin runs, and refuses them all
    for one broken file. Hence atomic writes, and the advice to repair
    (startPartition) or remove such a file before a restart."""
    node = two_partitions
    path, _ = corrupt(node, truncated_in_option)
    with pytest.raises(xmlrpc.client.Fault) as info:
        node.rpc.supervisor.reloadConfig()
    assert str(path) in info.value.faultString
    node.shutdown()
    node.process.stderr.close()
    with pytest.raises(AssertionError, match='supervisord exited'):
        node.start()
    node.process = None  # exited; nothing left to clean
