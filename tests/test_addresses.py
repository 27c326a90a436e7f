"""The wait for the partitions' addresses, written once
(``addresses.AddressWait``): stepped on a fake clock here, slept between
by the listener, stepped by supervisord's loop in the plugin, with the
same words in both logs."""

import io
import json
import logging
import re

from supervisor.tests.base import DummyLogger

from supervisor_slapos import offlinestart
from supervisor_slapos.addresses import AddressWait
from supervisor_slapos.listener import make_logger
from supervisor_slapos.listenercli import parse_args
from supervisor_slapos.listenerpolicy import BesideSlapgrid, ListenerParts
from supervisor_slapos.offlinestart import OfflineStart
from testbed.listener_fakes import FakeClock, RecordingActions

ADDRESSES = ['10.0.0.1', 'fd00::1']


class Log:
    def __init__(self):
        self.lines = []

    def __call__(self, level, text):
        self.lines.append((logging.getLevelName(level), text))


def test_address_wait_steps_until_every_address_is_there():
    clock, log, present = FakeClock(), Log(), set()
    wait = AddressWait(ADDRESSES, 10, clock, log, present.__contains__)
    wait.begin()
    assert not wait.done
    assert wait.seconds_to_next_try() == 0.5
    clock.advance(0.5)
    wait.step()
    assert not wait.done
    present.update(ADDRESSES)
    clock.advance(0.5)
    wait.step()
    assert wait.done
    assert log.lines == [
        (
            'INFO',
            "waiting up to 10 s for 2 of the partitions' 2 addresses "
            'before the offline start: 10.0.0.1, fd00::1',
        ),
        ('INFO', 'every address is there after 1.0 s'),
    ]


def test_address_wait_ends_at_its_bound_naming_the_missing():
    clock, log = FakeClock(), Log()
    wait = AddressWait(ADDRESSES, 3, clock, log, {'10.0.0.1'}.__contains__)
    wait.begin()
    steps = 0
    while not wait.done:
        clock.advance(wait.seconds_to_next_try())
        wait.step()
        steps += 1
    assert steps == 6
    assert log.lines[-1] == (
        'WARNING',
        'starting anyway after 3.0 s: 1 addresses still missing: fd00::1',
    )


def test_address_wait_checks_its_bound_before_each_address():
    clock, log = FakeClock(), Log()
    many = [f'10.0.{n // 250}.{n % 250 + 1}' for n in range(1000)]

    def slow_bind(address):
        clock.advance(1)
        return False

    wait = AddressWait(many, 10, clock, log, slow_bind)
    begin = clock()
    wait.begin()
    wait.step()
    assert wait.done and clock() - begin == 10
    assert len(wait.missing) == 1000


def test_nothing_to_wait_for_is_done_at_once():
    for addresses, seconds in ((ADDRESSES, 0), ([], 10)):
        log = Log()
        wait = AddressWait(
            addresses, seconds, FakeClock(), log, lambda address: False
        )
        wait.begin()
        assert wait.done and log.lines == []


def messages(lines, prefix):
    """The texts of log ``lines``, ``prefix`` (a regular expression)
    taken off."""
    return [re.sub(prefix, '', line) for line in lines]


def test_the_listener_and_the_plugin_say_the_same_words(tmp_path):
    """The listener's blocking wait (beside slapgrid) and the plugin's
    stepped one, on the same dump and the same timing, log the same
    lines but for their prefixes."""
    dump = tmp_path / 'slapos.json'
    dump.write_text(
        json.dumps(
            {
                'reference': 'COMP-1',
                'partition_list': [
                    {
                        'reference': 'slappart0',
                        'address_list': [
                            {'addr': a, 'netmask': '255.255.255.0'}
                            for a in ADDRESSES
                        ],
                    },
                    {
                        'reference': 'slappart1',
                        'address_list': [
                            {
                                'addr': 'node.example',
                                'netmask': '255.255.255.0',
                            }
                        ],
                    },
                ],
            }
        )
    )

    # the listener: the policy sleeps; the addresses come after 3 sleeps
    clock, stream, present, sleeps = FakeClock(), io.StringIO(), set(), []

    def sleep(seconds):
        sleeps.append(seconds)
        clock.advance(seconds)
        if len(sleeps) == 3:
            present.update(ADDRESSES)

    policy = BesideSlapgrid(address_wait=10, bindable=present.__contains__)
    policy.begin(
        RecordingActions(),
        ListenerParts(
            None,
            None,
            str(tmp_path),
            str(dump),
            make_logger(stream),
            clock,
            sleep,
        ),
    )
    policy.before_offline_start()
    listener = messages(
        stream.getvalue().splitlines(), r'^\S+ \S+ (INFO|WARNING) '
    )

    # the plugin: the loop turns every 0.5 s, same timing
    clock, logger, present, turns = FakeClock(), DummyLogger(), set(), 0
    config = parse_args(
        ['--slapgrid', '--address-wait', '10', '--computer-json', str(dump)]
    )

    class Job:
        done = True

    start = OfflineStart(
        lambda: Job(),
        lambda: None,
        logger,
        offlinestart._addresses(config, logger),
        10,
        clock,
        present.__contains__,
    )
    start.begin()
    while start.state == offlinestart.WAITING:
        clock.advance(0.5)
        turns += 1
        if turns == 3:
            present.update(ADDRESSES)
        if start.due():
            start.work()
    plugin = messages(logger.data, r'^slapos: ')
    assert listener == plugin
    assert [line.split(':')[0] for line in plugin] == [
        'not waiting for 1 entries of computer_json that are no numeric '
        'address of this host (no name is resolved)',
        "waiting up to 10 s for 2 of the partitions' 2 addresses before "
        'the offline start',
        'every address is there after 1.5 s',
    ]
