"""SlaposListener with injected fakes: no supervisord, no master.

What it does when: at start, on each event, at the schedule's moments.
The sync pass itself is tested in test_syncpass.py, the schedule
in test_schedule.py, the protocol in test_eventloop.py.
"""

import os
import socket
import subprocess
import sys
import xmlrpc.client

import pytest

from supervisor_slapos.addresses import socket_address
from supervisor_slapos.listenerpolicy import Alone
from testbed.listener_fakes import (
    RUNNING_EVENT,
    SYNC_REQUEST,
    TICK,
    FakeRPC,
    bad_answer,
    down,
    instance,
    running_partition,
)

# start: offline fallback


def test_start_without_master_starts_all_partitions(make):
    h = make(master=False)
    h.start()
    assert h.slapos.actions() == [('startAllPartitions',)]
    state = h.sync_state()
    assert (
        state.mode,
        state.master_url,
        state.last_attempt,
        state.last_error,
    ) == ('offline', '', 0.0, '')


def test_start_asks_supervisord_for_the_state_dir(make):
    h = make(master=False)
    listener = h.start()
    assert listener.state_dir == str(h.state_dir)
    assert h.slapos.calls[0] == ('getStateDir',)


def test_start_waits_for_supervisord_to_tell_the_state_dir(make):
    h = make(master=False)
    h.slapos.fail['getStateDir'] = ConnectionRefusedError()
    listener = h.make()
    original = h.sleeps.append

    def sleep(seconds):
        original(seconds)
        if len(h.sleeps) == 3:
            del h.slapos.fail['getStateDir']

    listener.sleep = sleep
    listener.start()
    assert len(h.sleeps) == 3
    assert h.slapos.actions() == [('startAllPartitions',)]


def test_without_the_slapos_interface_it_waits_answering_events(make):
    # supervisord loaded the listener's section, not the RPC interface
    # (supervisorctl update before a reload): no exit, no crash loop
    h = make(master=False)
    h.slapos.fail['getStateDir'] = xmlrpc.client.Fault(1, 'UNKNOWN_METHOD')
    listener = h.start()
    assert h.sleeps == []  # no point asking 20 times: said at once
    assert h.log().count('waiting for the slapos RPC interface') == 1
    assert 0 < listener.seconds_until_due() <= 60
    for event in (TICK, RUNNING_EVENT, TICK):
        h.clock.advance(30)
        listener.handle_event(event, '')
    assert h.log().count('waiting for the slapos RPC interface') == 1
    listener.handle_event(*SYNC_REQUEST)
    assert 'still waiting for the slapos RPC interface' in h.log()
    assert h.slapos.actions() == []
    assert h.slapos.calls.count(('getStateDir',)) == 5
    # the interface is there (in practice after a reload): it starts
    del h.slapos.fail['getStateDir']
    h.clock.advance(listener.seconds_until_due())
    listener.due()
    assert 'the slapos RPC interface is loaded: starting' in h.log()
    assert h.slapos.actions() == [('startAllPartitions',)]
    assert h.sync_state().mode == 'offline'


def test_supervisord_never_telling_the_state_dir_is_a_wait_too(make):
    h = make(master=False)
    h.slapos.fail['getStateDir'] = ConnectionRefusedError()
    listener = h.start()
    assert len(h.sleeps) == 20
    assert 'getStateDir() failed: ConnectionRefusedError' in h.log()
    assert h.slapos.actions() == []
    del h.slapos.fail['getStateDir']
    h.tick()
    assert h.slapos.actions() == [('startAllPartitions',)]
    assert listener.state_dir == str(h.state_dir)


@pytest.mark.parametrize('error', [down(), bad_answer()])
def test_start_with_master_failing_starts_all_at_once(make, error):
    h = make()
    h.master.error = error
    h.start()
    assert h.slapos.actions() == [('startAllPartitions',)]
    # no retry before falling back
    assert h.master.calls == [('list',)]
    state = h.sync_state()
    assert state.mode == 'offline'
    assert state.master_url == 'http://master.invalid'
    assert state.last_attempt == h.clock.now
    assert state.last_success == 0.0
    assert str(error) in state.last_error


def test_start_all_failure_does_not_kill_the_listener(make):
    h = make()
    h.master.error = down()
    h.slapos.fail['startAllPartitions'] = ConnectionRefusedError('gone')
    h.start()
    assert 'startAllPartitions failed' in h.log()


def test_start_all_logs_processes_that_failed(make):
    h = make(master=False)
    h.slapos.startAllPartitions = lambda: [
        {'name': 'a', 'group': 'slappart0', 'status': 80, 'description': 'OK'},
        {
            'name': 'b',
            'group': 'slappart0',
            'status': 50,
            'description': 'SPAWN_ERROR: b',
        },
    ]
    h.start()
    assert (
        'startAllPartitions: started 1 processes of 1 partitions: '
        'slappart0; 1 failed: slappart0:b'
    ) in h.log()
    assert 'slappart0:b: SPAWN_ERROR: b' in h.log()


def test_start_all_that_started_nothing_logs_nothing(make):
    h = make(master=False)
    h.slapos.startAllPartitions = lambda: []
    h.start()
    assert 'startAllPartitions' not in h.log()


def test_start_with_master_answering_syncs_then_starts_all(make):
    h = make(
        partitions={'slappart0': {}},
        instances=[instance('slappart0', 'started')],
    )
    h.start()
    # the sync first, then the managers' groups, as an offline start would
    assert h.slapos.actions() == [
        ('startPartition', 'slappart0'),
        ('startAllPartitions',),
    ]
    state = h.sync_state()
    assert (state.mode, state.last_error) == ('online', '')
    assert state.last_success == h.clock.now


def test_start_keeps_the_previous_last_success(make):
    h = make()
    h.start()
    success = h.clock.now
    h.clock.advance(100)
    h.master.error = down()
    h.start()
    assert h.sync_state().last_success == success


# SUPERVISOR_STATE_CHANGE_RUNNING


def test_running_right_after_start_is_not_a_second_attempt(make):
    h = make()
    listener = h.start()
    h.clock.advance(5)
    listener.handle_event(RUNNING_EVENT, '')
    assert h.master.calls == [('list',)]


def test_running_later_is_an_attempt_with_fallback(make):
    h = make()
    listener = h.start()
    h.master.error = down()
    h.clock.advance(3600)
    listener.handle_event(RUNNING_EVENT, '')
    assert h.master.calls == [('list',), ('list',)]
    # once at the start (online), once at the later RUNNING (offline)
    assert h.slapos.actions() == [
        ('startAllPartitions',),
        ('startAllPartitions',),
    ]


def test_tick_online_syncs_without_starting_all(make):
    h = make(
        partitions={'slappart0': running_partition('slappart0')},
        instances=[instance('slappart0', 'started')],
    )
    listener = h.start()
    h.slapos.calls.clear()
    h.clock.advance(60)
    listener.handle_event(TICK, 'when:1234567')
    assert h.slapos.actions() == []


@pytest.mark.parametrize(
    'headers', [{}, {'eventname': 'PROCESS_STATE'}, {'eventname': 'TICK'}]
)
def test_other_events_are_ignored_quietly(make, headers):
    h = make()
    listener = h.start()
    listener.handle_event(headers, 'garbage')
    assert 'ERROR' not in h.log()


# command line


def test_listener_from_args_without_master():
    from supervisor_slapos.listenercli import listener_from_args

    listener = listener_from_args([], rpc='rpc')
    assert (listener.rpc, listener.master) == ('rpc', None)


def test_listener_from_args_builds_the_master_client():
    from supervisor_slapos.listenercli import listener_from_args

    listener = listener_from_args(
        [
            '--master-url',
            'https://master.example/api/',
            '--computer-id',
            'COMP-1',
            '--cert-file',
            'c.pem',
            '--key-file',
            'k.pem',
            '--ca-file',
            'ca.pem',
            '--timeout',
            '4.5',
            '--computer-json',
            '/etc/opt/slapos/slapos.json',
        ]
    )
    master = listener.master
    assert master.url == 'https://master.example/api'
    assert master.computer_id == 'COMP-1'
    assert master.timeout == 4.5
    assert master._session.cert == ('c.pem', 'k.pem')
    assert master.verify == 'ca.pem'
    assert listener.computer_json == '/etc/opt/slapos/slapos.json'


def test_parse_args_defaults():
    from supervisor_slapos.listenercli import ListenerArgs, parse_args

    assert parse_args([]) == ListenerArgs(
        master_url=None,
        computer_id=None,
        cert_file=None,
        key_file=None,
        ca_file=None,
        timeout=10.0,
        computer_json=None,
        slapgrid=False,
        phase=None,
        address_wait=120.0,
    )


def test_phase_comes_from_the_computer_id_or_the_command_line():
    from supervisor_slapos.listenercli import listener_from_args
    from supervisor_slapos.schedule import phase_of

    node = ['--master-url', 'http://m', '--computer-id', 'COMP-1']
    assert listener_from_args(node).schedule.phase == phase_of('COMP-1')
    assert (
        listener_from_args([*node, '--phase', '12.25']).schedule.phase == 12.25
    )


@pytest.mark.parametrize(
    'argv',
    [
        ['--master-url', 'http://m'],
        ['--master-url', 'ftp://m', '--computer-id', 'C'],
        ['--master-url', 'm', '--computer-id', 'C'],
        ['--key-file', 'k'],
        ['--timeout', '0'],
        ['--timeout', '-1'],
        ['--timeout', 'x'],
        ['--timeout', 'inf'],
        ['--timeout', 'nan'],
        ['--phase', '60'],
        ['--phase', '-0.5'],
        ['--phase', 'x'],
        ['--address-wait', '-1'],
        ['--address-wait', 'inf'],
        ['--address-wait', 'nan'],
        ['--address-wait', 'x'],
        ['--unknown'],
    ],
)
def test_parse_args_refuses(argv, capsys):
    from supervisor_slapos.listenercli import parse_args

    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert capsys.readouterr().out == ''


def test_main_needs_supervisor(monkeypatch, capsys):
    from supervisor_slapos.listenercli import main

    monkeypatch.delenv('SUPERVISOR_SERVER_URL', raising=False)
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 1
    out, err = capsys.readouterr()
    assert out == ''
    assert 'SUPERVISOR_SERVER_URL' in err


def test_logs_never_show_credentials(make):
    from supervisor_slapos.listenercli import listener_from_args

    h = make()
    listener = listener_from_args(
        [
            '--master-url',
            'http://user:s3cret@127.0.0.1:9/',
            '--computer-id',
            'COMP-1',
            '--timeout',
            '0.5',
        ],
        rpc=FakeRPC(h.slapos),
        stdout=h.stdout,
        stderr=h.stderr,
        clock=h.clock,
        rng=h.random,
    )
    listener.start()
    state = h.sync_state()
    assert state.master_url == 'http://127.0.0.1:9'
    assert 's3cret' not in h.log() + state.last_error
    assert h.slapos.actions() == [('startAllPartitions',)]


# --cfg, --slapgrid, --help

SLAPOS_CFG = """\
[slapos]
master_url = https://master.example/api
computer_id = COMP-CFG
cert_file = /etc/opt/slapos/ssl/computer.crt
key_file = /etc/opt/slapos/ssl/computer.key

[slapformat]
computer_json = /etc/opt/slapos/slapos.json
"""


def test_cfg_gives_the_master_and_the_format_dump(tmp_path):
    from supervisor_slapos.listenercli import parse_args

    cfg = tmp_path / 'slapos.cfg'
    cfg.write_text(SLAPOS_CFG)
    config = parse_args(['--cfg', str(cfg)])
    assert (
        config.master_url,
        config.computer_id,
        config.cert_file,
        config.key_file,
        config.computer_json,
    ) == (
        'https://master.example/api',
        'COMP-CFG',
        '/etc/opt/slapos/ssl/computer.crt',
        '/etc/opt/slapos/ssl/computer.key',
        '/etc/opt/slapos/slapos.json',
    )


def test_command_line_options_win_over_cfg(tmp_path):
    from supervisor_slapos.listenercli import parse_args

    cfg = tmp_path / 'slapos.cfg'
    cfg.write_text(SLAPOS_CFG)
    config = parse_args(
        [
            '--cfg',
            str(cfg),
            '--computer-id',
            'COMP-ARG',
            '--master-url',
            'http://127.0.0.1:1',
        ]
    )
    assert (config.master_url, config.computer_id) == (
        'http://127.0.0.1:1',
        'COMP-ARG',
    )
    assert config.cert_file == '/etc/opt/slapos/ssl/computer.crt'


@pytest.mark.parametrize('content', [None, '[slapos\nx', b'\xff\xfe'])
def test_unreadable_cfg_is_a_command_line_error(tmp_path, capsys, content):
    from supervisor_slapos.listenercli import parse_args

    cfg = tmp_path / 'slapos.cfg'
    if isinstance(content, bytes):
        cfg.write_bytes(content)
    elif content is not None:
        cfg.write_text(content)
    with pytest.raises(SystemExit) as info:
        parse_args(['--cfg', str(cfg)])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ''
    assert '--cfg: ' in err and str(cfg) in err


def test_help_works_outside_supervisord():
    env = {
        k: v for k, v in os.environ.items() if not k.startswith('SUPERVISOR_')
    }
    result = subprocess.run(
        [sys.executable, '-m', 'supervisor_slapos.listener', '--help'],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('usage: supervisor-slapos-listener')
    for option in ('--cfg', '--slapgrid', '--master-url', '--address-wait'):
        assert option in result.stdout


def test_slapgrid_mode_starts_all_and_never_asks_for_instances(make):
    h = make(
        partitions={
            'slappart0': running_partition('slappart0', statename='EXITED'),
            'slappart1': {},
        },
        instances=[
            instance('slappart0', 'destroyed'),
            instance('slappart1', 'started'),
        ],
    )
    listener = h.start(slapgrid=True)
    h.clock.advance(60)
    listener.handle_event(TICK, '')
    listener.handle_event(
        {'eventname': 'REMOTE_COMMUNICATION'}, 'type:slapos-sync\n'
    )
    assert h.slapos.actions() == [('startAllPartitions',)]
    assert h.master.calls == []
    assert h.sync_state().mode == 'unknown'  # no contact with the master


# the offline log line says one thing


def test_offline_log_gives_the_next_attempt_only(make):
    h = make()
    h.master.error = down()
    h.start()
    line = next(
        line for line in h.log().splitlines() if 'master not usable' in line
    )
    assert line.endswith('offline, next attempt in 60 s'), line
    assert 'backoff' not in line


# beside slapgrid: what the sync state says


def test_slapgrid_without_computer_json_records_that_it_never_contacts(make):
    from supervisor_slapos.syncstate import NO_CONTACT_BESIDE_SLAPGRID

    h = make()
    h.start(slapgrid=True)
    h.tick()
    state = h.sync_state()
    assert (state.mode, state.last_attempt, state.last_error) == (
        'unknown',
        0.0,
        NO_CONTACT_BESIDE_SLAPGRID,
    )
    assert h.master.calls == []


def test_slapgrid_last_attempt_is_the_last_contact(make):
    h = make(dump={'reference': 'COMP-TEST', 'partition_list': []})
    h.start(slapgrid=True)
    contact = h.clock()
    assert h.sync_state().mode == 'online'
    assert h.sync_state().last_attempt == contact
    # nothing to send: no contact, the mode is as old as the last one
    h.tick()
    h.start(slapgrid=True)
    h.tick()
    assert h.master.formats() and len(h.master.formats()) == 1
    state = h.sync_state()
    assert (state.mode, state.last_attempt, state.last_success) == (
        'online',
        contact,
        contact,
    )


# beside slapgrid: addresses first

ADDRESSES = ['10.0.0.1', 'fd00::1']


def address_dump(addresses=ADDRESSES):
    return {
        'reference': 'COMP-TEST',
        'partition_list': [
            {
                'reference': f'slappart{n}',
                'address_list': [{'addr': addr, 'netmask': '255.255.255.255'}],
            }
            for n, addr in enumerate(addresses)
        ],
    }


def waiting_listener(h, appear_after=None, **kwargs):
    """A listener beside slapgrid whose sleep advances the fake clock;
    the addresses appear after ``appear_after`` sleeps (None: never)."""
    h.addresses = set()
    listener = h.make(slapgrid=True, **kwargs)

    def sleep(seconds):
        h.sleeps.append(seconds)
        h.clock.advance(seconds)
        if appear_after is not None and len(h.sleeps) >= appear_after:
            h.addresses = set(ADDRESSES)

    listener.sleep = sleep
    return listener


def test_offline_start_waits_for_the_addresses(make):
    h = make(master=False, dump=address_dump())
    begin = h.clock()
    listener = waiting_listener(h, appear_after=3)
    original = h.slapos.startAllPartitions

    def start_all():
        assert h.addresses == set(ADDRESSES)  # not before
        return original()

    h.slapos.startAllPartitions = start_all
    listener.start()
    assert h.clock() - begin == 1.5
    assert (
        'waiting up to 120 s for 2 of the partitions\' 2 addresses' in h.log()
    )
    assert 'every address is there after 1.5 s' in h.log()
    assert h.slapos.actions() == [('startAllPartitions',)]


def test_address_wait_is_bounded_and_names_the_missing(make):
    h = make(master=False, dump=address_dump())
    h.addresses = {'10.0.0.1'}
    begin = h.clock()
    listener = waiting_listener(h, address_wait=10)
    h.addresses = {'10.0.0.1'}
    listener.start()
    assert h.clock() - begin == 10
    assert (
        'starting anyway after 10.0 s: 1 addresses still missing: '
        'fd00::1' in h.log()
    )
    assert h.slapos.actions() == [('startAllPartitions',)]


def test_address_wait_deadline_is_checked_within_a_pass(make):
    """Each address tried may be slow (a bind never is, but whatever it
    costs): the wait ends at its bound, not at the end of a pass."""
    many = [f'10.0.{n // 250}.{n % 250 + 1}' for n in range(1000)]
    h = make(master=False, dump=address_dump(many))
    begin = h.clock()
    listener = waiting_listener(h, address_wait=10)

    def slow_bind(address):
        h.clock.advance(1)
        return False

    listener.policy.bindable = slow_bind
    listener.start()
    assert h.clock() - begin <= 11
    assert 'starting anyway after' in h.log()
    assert h.slapos.actions() == [('startAllPartitions',)]


@pytest.mark.parametrize(
    'text',
    [
        '10.0.0.300',
        'node-0.example',
        'fe80::1%nosuchif',
        '',
        '1.2.3',
        '010.0.0.1',
        3,
        None,
    ],
)
def test_socket_address_refuses_what_is_no_numeric_address(text):
    with pytest.raises(ValueError):
        socket_address(text)


@pytest.mark.parametrize(
    'text, expected',
    [
        ('10.0.0.1', (socket.AF_INET, ('10.0.0.1', 0))),
        ('FD00:0::05', (socket.AF_INET6, ('fd00::5', 0, 0, 0))),
        ('fe80::1%1', (socket.AF_INET6, ('fe80::1', 0, 0, 1))),
        (
            'fe80::1%lo',
            (socket.AF_INET6, ('fe80::1', 0, 0, socket.if_nametoindex('lo'))),
        ),
    ],
)
def test_socket_address_of_numeric_addresses(text, expected):
    assert socket_address(text) == expected


def test_anything_but_numeric_addresses_is_logged_once_and_skipped(make):
    h = make(
        master=False,
        dump=address_dump(['10.0.0.1', 'node-0.example', '10.0.0.300']),
    )
    tried = []
    listener = waiting_listener(h, address_wait=10)
    listener.policy.bindable = lambda address: tried.append(address)
    listener.start()
    assert set(tried) == {'10.0.0.1'}
    assert (
        h.log().count("no name is resolved): 'node-0.example', '10.0.0.300'")
        == 1
    )


@pytest.mark.parametrize(
    'case',
    ['all there', 'not beside slapgrid', 'no dump', 'broken dump', 'zero'],
)
def test_no_address_wait(make, case):
    dump = {'no dump': None, 'broken dump': '[' * 100000}.get(
        case, address_dump()
    )
    h = make(master=False, dump=dump)
    listener = waiting_listener(h, address_wait=0 if case == 'zero' else 60)
    if case == 'all there':
        h.addresses = set(ADDRESSES)
    if case == 'not beside slapgrid':
        listener.policy = Alone()
    listener.start()
    assert h.sleeps == []
    assert 'waiting up to' not in h.log()
    assert h.slapos.actions() == [('startAllPartitions',)]
    if case == 'broken dump':
        assert 'nested too deeply' in h.log()


def test_beside_slapgrid_plugin_offline_start_is_not_run_again(make):
    """The plugin ran this start's offline start (getOfflineStart: by
    plugin), after its own address wait: the listener neither waits nor
    runs it again."""
    h = make(dump=address_dump())
    h.master.error = down()
    h.slapos.offline_start_by = 'plugin'
    listener = waiting_listener(h)
    listener.start()
    for _ in range(5):
        h.tick()
    assert h.slapos.actions() == []
    assert h.sleeps == []
