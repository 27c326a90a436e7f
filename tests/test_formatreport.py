"""The format report: the computer_json dump sent as compute_node_format.

Pure functions and the listener with fakes first, then a real supervisord
against a real ``slapos proxy``.
"""

import io
import json
import time

import pytest

from supervisor_slapos.formatreport import (
    FormatFileError,
    FormatReport,
    partition_list_from_dump,
    payload_hash,
    read_dump,
)
from supervisor_slapos.listener import make_logger
from testbed.listener_fakes import (
    MISSING,
    FakeMaster,
    ListenerHarness,
    bad_answer,
    down,
    instance,
    running_partition,
)
from testbed.polling import wait_until
from testbed.slapos_master import COMPUTER_ID, FORMAT, LIST, write_dump
from tests.listener_node import EVENTS, restart_listener, trigger_sync

DUMP = {
    'reference': COMPUTER_ID,
    'address': '10.0.0.1',
    'netmask': '255.0.0.0',
    'instance_root': '/srv/slapgrid',
    'partition_list': [
        {
            'reference': 'slappart0',
            'path': '/srv/slapgrid/slappart0',
            'address_list': [
                {'addr': '10.0.0.2', 'netmask': '255.255.255.0'},
                {'addr': 'fd00::2', 'netmask': 'ffff:ffff:ffff:ffff::'},
            ],
            'tap': {'name': 'slaptap0', 'ipv4_addr': ''},
            'user': {'name': 'slapuser0'},
        },
        {
            'reference': 'slappart1',
            'address_list': [{'addr': '10.0.0.3', 'netmask': '255.255.255.0'}],
            'tap': {'name': ''},
        },
    ],
}

PAYLOAD = [
    {
        'partition_id': 'slappart0',
        'ip_list': [
            {
                'ip-address': '10.0.0.2',
                'netmask': '255.255.255.0',
                'network-interface': 'slaptap0',
            },
            {
                'ip-address': 'fd00::2',
                'netmask': 'ffff:ffff:ffff:ffff::',
                'network-interface': 'slaptap0',
            },
        ],
    },
    {
        'partition_id': 'slappart1',
        'ip_list': [
            {
                'ip-address': '10.0.0.3',
                'netmask': '255.255.255.0',
                'network-interface': 'slappart1',
            }
        ],
    },
]


def dump_with(**changes):
    dump = json.loads(json.dumps(DUMP))
    dump.update(changes)
    return dump


def partition_with(**changes):
    return dump_with(
        partition_list=[dict(DUMP['partition_list'][0], **changes)]
    )


# partition_list_from_dump


def test_payload_from_dump():
    assert partition_list_from_dump(DUMP, COMPUTER_ID) == PAYLOAD


def test_tap_may_be_missing_or_null():
    for tap in ({'tap': None}, {}):
        partition = {
            'reference': 'p0',
            'address_list': [{'addr': '10.0.0.9', 'netmask': '255.0.0.0'}],
            **tap,
        }
        assert partition_list_from_dump(
            dump_with(partition_list=[partition]), COMPUTER_ID
        ) == [
            {
                'partition_id': 'p0',
                'ip_list': [
                    {
                        'ip-address': '10.0.0.9',
                        'netmask': '255.0.0.0',
                        'network-interface': 'p0',
                    }
                ],
            }
        ]


def test_partition_without_addresses():
    dump = dump_with(partition_list=[{'reference': 'p0'}])
    assert partition_list_from_dump(dump, COMPUTER_ID) == [
        {'partition_id': 'p0', 'ip_list': []}
    ]


@pytest.mark.parametrize(
    'dump',
    [
        None,
        [],
        'x',
        {},
        dump_with(reference=None),
        dump_with(reference='COMP-OTHER'),
        dump_with(partition_list=None),
        dump_with(partition_list={}),
        dump_with(partition_list=['x']),
        dump_with(partition_list=[{'reference': ''}]),
        dump_with(partition_list=[{'reference': 3}]),
        dump_with(partition_list=[{'reference': 'p'}, {'reference': 'p'}]),
        partition_with(address_list={}),
        partition_with(address_list=['10.0.0.1']),
        partition_with(address_list=[{'netmask': '255.0.0.0'}]),
        partition_with(address_list=[{'addr': '10.0.0.1'}]),
        partition_with(address_list=[{'addr': '10.0.0.1', 'netmask': 8}]),
        partition_with(tap='slaptap0'),
        partition_with(tap={'name': 7}),
    ],
)
def test_bad_dumps_are_refused(dump):
    with pytest.raises(FormatFileError):
        partition_list_from_dump(dump, COMPUTER_ID)


def test_another_nodes_dump_is_refused():
    with pytest.raises(FormatFileError, match="'COMP-OTHER' is not this"):
        partition_list_from_dump(
            dump_with(reference='COMP-OTHER'), COMPUTER_ID
        )


@pytest.mark.parametrize(
    'content', [None, b'', b'{"reference": ', b'\xff\xfe', b'[]']
)
def test_read_dump_errors_name_the_file(tmp_path, content):
    path = tmp_path / 'slapos.json'
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(FormatFileError, match=str(path)):
        read_dump(str(path), COMPUTER_ID)


def test_payload_hash_depends_on_master_and_content():
    base = payload_hash('http://m', COMPUTER_ID, PAYLOAD)
    assert base == payload_hash(
        'http://m', COMPUTER_ID, json.loads(json.dumps(PAYLOAD))
    )
    assert base != payload_hash('http://other', COMPUTER_ID, PAYLOAD)
    assert base != payload_hash('http://m', COMPUTER_ID, PAYLOAD[:1])


# FormatReport


def make_report(tmp_path, dump=DUMP):
    path = tmp_path / 'slapos.json'
    if dump is not None:
        path.write_text(json.dumps(dump))
    state_dir = tmp_path / 'state'
    state_dir.mkdir(exist_ok=True)
    master = FakeMaster()
    master.computer_id, master.display_url = COMPUTER_ID, 'http://m'
    return path, FormatReport(
        str(path), master, str(state_dir), make_logger(io.StringIO())
    )


def test_report_is_due_until_accepted(tmp_path):
    path, report = make_report(tmp_path)
    payload, digest, changed = report.check()
    assert (payload, changed, report.error) == (PAYLOAD, False, '')
    assert report.check()[0] == PAYLOAD
    report.accept(digest)
    assert report.check() == (None, digest, False)
    # a new FormatReport (listener restart) remembers it
    assert make_report(tmp_path)[1].check() == (None, digest, False)


def test_changed_content_is_due_again(tmp_path):
    path, report = make_report(tmp_path)
    report.accept(report.check()[1])
    path.write_text(json.dumps(dump_with(partition_list=[])))
    assert report.check()[0] == []


def test_same_content_written_differently_is_not_due(tmp_path):
    path, report = make_report(tmp_path)
    report.accept(report.check()[1])
    path.write_text(json.dumps(DUMP, indent=4, sort_keys=True))
    assert report.check()[0] is None


def test_broken_file_error_is_flagged_once_per_change(tmp_path):
    path, report = make_report(tmp_path, dump=None)
    assert report.check() == (None, '', True)
    assert 'no such file' in report.error
    assert report.check() == (None, '', False)
    path.write_text('{')
    assert report.check() == (None, '', True)
    assert 'not valid JSON' in report.error
    path.write_text(json.dumps(DUMP))
    payload, digest, changed = report.check()
    assert (payload, changed, report.error) == (PAYLOAD, True, '')


@pytest.mark.parametrize('content', ['', '{', '[]', '{"sha256": 3}'])
def test_corrupt_state_file_means_not_accepted(tmp_path, content):
    (tmp_path / 'state').mkdir()
    (tmp_path / 'state' / 'format-report.json').write_text(content)
    assert make_report(tmp_path)[1].check()[0] == PAYLOAD


# the listener, with fakes


def harness(tmp_path, dump=DUMP, **kwargs):
    return ListenerHarness(
        tmp_path,
        dump=dump,
        partitions={'slappart0': running_partition('slappart0')},
        instances=[instance('slappart0', 'started')],
        **kwargs,
    )


@pytest.fixture
def setup(tmp_path):
    return harness(tmp_path)


def test_format_is_sent_before_the_instance_list(setup):
    setup.start()
    assert setup.master.order() == ['format', 'list']
    assert setup.master.formats() == [PAYLOAD]


def test_format_is_not_sent_again_unchanged(setup):
    setup.start()
    setup.tick()
    setup.start()  # a restarted listener
    assert setup.master.order() == ['format', 'list', 'list', 'list']


def test_changed_dump_is_sent_again_once(setup):
    setup.start()
    setup.write_dump(dump_with(partition_list=DUMP['partition_list'][:1]))
    setup.tick()
    setup.tick()
    assert setup.master.formats() == [PAYLOAD, PAYLOAD[:1]]


def test_unreachable_master_during_format_falls_back_at_once(setup):
    setup.master.format_error = down('timed out')
    setup.start()
    assert setup.master.order() == ['format']  # no list: no second timeout
    assert setup.slapos.actions() == [('startAllPartitions',)]
    assert 'timed out' in setup.error()


def test_format_retried_with_the_sync_until_accepted(setup):
    setup.master.format_error = down()
    setup.start()
    setup.master.format_error = None
    setup.tick()
    setup.tick()
    assert setup.master.formats() == [PAYLOAD, PAYLOAD]


def test_refused_format_does_not_stop_the_sync(setup):
    setup.master.format_error = bad_answer('HTTP 400: bad partition')
    setup.start()
    assert setup.master.order() == ['format', 'list']
    assert 'format report: HTTP 400' in setup.error()
    setup.master.format_error = None
    setup.tick()
    assert setup.master.formats() == [PAYLOAD, PAYLOAD]
    assert setup.error() == ''


@pytest.mark.parametrize(
    'content',
    [None, '{"reference": "COMP-TE', json.dumps(dump_with(reference='X'))],
)
def test_broken_dump_is_a_local_error(tmp_path, content):
    setup = harness(tmp_path, dump=MISSING if content is None else content)
    setup.start()
    assert setup.master.order() == ['list']
    assert setup.error().startswith('computer_json ')
    setup.tick()
    setup.tick()
    # logged once, in last_error as long as it stays broken, never sent
    assert setup.log().count('computer_json') == 1
    assert setup.error().startswith('computer_json ')
    assert setup.master.formats() == []
    # fixed: sent, and the error is gone
    setup.write_dump(DUMP)
    setup.tick()
    assert setup.master.formats() == [PAYLOAD]
    assert setup.error() == ''


def test_broken_dump_shows_while_offline_too(tmp_path):
    setup = harness(tmp_path, dump='{')
    setup.master.error = down()
    setup.start()
    assert setup.error().startswith('computer_json ')
    assert 'connection refused' in setup.error()


def mode(setup):
    return setup.sync_state().mode


def test_slapgrid_mode_reports_the_format_only(setup):
    setup.start(slapgrid=True)
    assert setup.master.order() == ['format']
    assert setup.slapos.actions() == [('startAllPartitions',)]
    assert mode(setup) == 'online'
    setup.tick()
    assert setup.master.order() == ['format']  # accepted: nothing more to say
    assert mode(setup) == 'online'


def test_slapgrid_mode_tells_a_failed_format_report(setup):
    setup.master.format_error = down()
    setup.start(slapgrid=True)
    # the offline start did not wait for the report
    assert setup.slapos.actions() == [('startAllPartitions',)]
    assert (mode(setup), setup.error()) == ('offline', 'connection refused')
    setup.master.format_error = bad_answer('HTTP 400')
    setup.tick()
    assert mode(setup) == 'offline'
    assert 'format report: HTTP 400' in setup.error()
    setup.master.format_error = None
    setup.tick()
    assert (mode(setup), setup.error()) == ('online', '')
    assert setup.master.order() == ['format'] * 3
    assert setup.slapos.actions() == [('startAllPartitions',)]


def test_no_master_means_no_format(tmp_path):
    assert harness(tmp_path, master=False).start().policy.format is None


# a real supervisord and a real slapos proxy

PARTITIONS = ('slappart0', 'slappart1')


@pytest.fixture
def formatted_node(make_node, master, tmp_path):
    """A node whose slappart0 is started locally (P.conf written), with a
    listener that reports tmp_path/slapos.json; not started."""
    dump = tmp_path / 'slapos.json'
    write_dump(dump, {'slappart0': '10.0.0.10', 'slappart1': '10.0.0.11'})
    setup = make_node('node')
    for pid in PARTITIONS:
        setup.make_partition(pid, run=['a'])
    setup.start()
    setup.rpc.slapos.startPartition('slappart0')
    setup.wait_execed('slappart0')
    setup.shutdown()
    node = make_node(
        'node',
        listener=[
            '--master-url',
            master.url,
            '--computer-id',
            COMPUTER_ID,
            '--timeout',
            '2',
            '--computer-json',
            str(dump),
        ],
        listener_events=EVENTS,
    )
    return node, master, dump


def test_format_arrives_once_when_the_master_comes_up(formatted_node):
    node, master, dump = formatted_node
    master.front.refuse()
    node.start()
    # offline start, format or not
    wait_until(
        lambda: node.group_running('slappart0'), 20, what='the offline start'
    )
    assert node.sync_state()['mode'] == 'offline'
    master.front.reopen()
    state = trigger_sync(node)
    assert (state['mode'], state['last_error']) == ('online', '')
    assert master.front.count(FORMAT) == 1
    [body] = master.front.calls(FORMAT)
    assert body['computer_guid'] == COMPUTER_ID
    # the master knows the addresses: an instance gets them
    master.proxy.supply()
    answer = master.proxy.request('inst0', state='started')
    pid = answer['compute_partition_id']
    expected = {'slappart0': '10.0.0.10', 'slappart1': '10.0.0.11'}[pid]
    assert answer['ip_list'] == [[f'slaptap{pid[-1]}', expected]]
    # format first, then the list, which the master now answers
    names = [name for name, _ in master.front.requests]
    assert names.index(FORMAT) < len(names) - 1 - names[::-1].index(LIST)
    trigger_sync(node)
    restart_listener(node)
    assert master.front.count(FORMAT) == 1
    wait_until(lambda: node.group_running(pid), 30, what='inst0 started')


def start_formatted(formatted_node):
    """Start the node; wait for its first format report and sync."""
    node, master, dump = formatted_node
    node.start()
    wait_until(
        lambda: (
            master.front.count(FORMAT) == 1
            and node.sync_state()['mode'] == 'online'
        ),
        30,
        what='the first format report',
    )
    return node, master, dump


def test_changed_dump_is_sent_again_once_and_corrupt_dump_shows(
    formatted_node,
):
    node, master, dump = start_formatted(formatted_node)
    master.proxy.supply()
    answer = master.proxy.request('inst0', state='started')
    pid = answer['compute_partition_id']
    # slapos node format ran again and changed an address
    write_dump(dump, {'slappart0': '10.0.0.20', 'slappart1': '10.0.0.21'})
    trigger_sync(node)
    trigger_sync(node)
    assert master.front.count(FORMAT) == 2
    new = {'slappart0': '10.0.0.20', 'slappart1': '10.0.0.21'}[pid]
    assert master.proxy.instance(answer['instance_guid'])['ip_list'] == [
        [f'slaptap{pid[-1]}', new]
    ]
    # a corrupt dump: shown by "supervisorctl slapos sync", nothing sent
    dump.write_text('{"reference": "COMP-TE')
    state = trigger_sync(node)
    assert state['mode'] == 'online'
    assert 'computer_json' in state['last_error']
    result = node.ctl('slapos', 'sync')
    assert 'computer_json' in result.stdout, result.stdout + result.stderr
    assert str(dump) in result.stdout
    trigger_sync(node)
    assert 'computer_json' in node.sync_state()['last_error']
    assert master.front.count(FORMAT) == 2
    log = (node.root / 'listener.log').read_text()
    assert log.count('not reporting the format until it changes') == 1


def test_listener_restart_does_not_resend_an_unchanged_format(formatted_node):
    node, master, dump = start_formatted(formatted_node)
    restart_listener(node)
    before = time.time()
    result = node.ctl('reload')
    assert result.returncode == 0, result.stderr
    node.wait_running()
    wait_until(
        lambda: (
            node.sync_state()['last_attempt'] > before
            and node.sync_state()['mode'] == 'online'
        ),
        30,
        what='the listener after reload',
    )
    assert master.front.count(FORMAT) == 1
    # rewritten with the same content by another format run: not sent
    write_dump(dump, {'slappart0': '10.0.0.10', 'slappart1': '10.0.0.11'})
    trigger_sync(node)
    assert master.front.count(FORMAT) == 1


def test_master_down_at_start_does_not_delay_the_offline_start(formatted_node):
    node, master, dump = formatted_node
    master.front.set_fault('blackhole')
    before = time.time()
    node.start()
    wait_until(
        lambda: node.group_running('slappart0'), 20, what='the offline start'
    )
    state = wait_until(
        lambda: (
            node.sync_state()['last_attempt'] > before and node.sync_state()
        ),
        30,
        what='the attempt',
    )
    assert state['mode'] == 'offline'
    # one request (the format report) timed out; the list was not asked
    assert master.front.count(FORMAT) == 1
    assert master.front.count(LIST) == 0
    master.front.set_fault(None)
    state = trigger_sync(node)
    assert state['mode'] == 'online'
    assert master.front.count(FORMAT) == 2
