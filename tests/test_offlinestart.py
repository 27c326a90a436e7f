"""``offlinestart``'s pieces on their own: the loop driver in a socket
map, the listener's command line, and its traps (each named)."""

import gc
import socket

import pytest
from supervisor.tests.base import DummyLogger, DummyOptions, DummySupervisor

from supervisor_slapos import clients, offlinestart
from supervisor_slapos.offlinestart import (
    LoopDriver,
    OfflineStart,
    listener_arguments,
    listener_configs,
    plugin_config,
)


def make_driver(socket_map, due=lambda: False, work=lambda: None):
    logger = DummyLogger()
    return LoopDriver(socket_map, due, work, logger), logger


# the first turn, then only while there is work


def test_driver_wakes_the_first_poll_only():
    socket_map = {}
    driver, _ = make_driver(socket_map)
    assert socket_map == {driver.fd: driver}
    assert driver.writable()
    driver.handle_write_event()
    assert not driver.writable()
    assert not driver.readable()
    driver.stop()
    assert socket_map == {}


def test_trap_driver_is_no_waiting_client():
    """A pending wake byte made "a client is waiting" true, which ended
    the offline start's time slices after one spawn: the driver holds no
    byte, and its fd is never readable."""
    socket_map = {}
    driver, _ = make_driver(socket_map, due=lambda: True)
    assert driver.writable()
    assert not clients.waiting(socket_map)
    driver.stop()


def test_trap_exceptions_never_reach_supervisords_loop():
    """What the offline start raises is logged; the driver then leaves
    the loop alone."""

    def broken():
        raise RuntimeError('boom')

    socket_map = {}
    driver, logger = make_driver(socket_map, due=lambda: True, work=broken)
    driver.handle_write_event()  # no exception
    assert not driver.writable()
    assert any('boom' in line for line in logger.data)
    driver, logger = make_driver(socket_map, due=broken)
    driver.handle_write_event()
    assert not driver.writable()  # no exception
    assert any('boom' in line for line in logger.data)


def test_trap_stale_driver_of_a_reload_leaves_the_map():
    """supervisord's cleanup at a reload closes the old driver's pipe
    (its fd may be another file's by then): the new driver drops the old
    entry without closing anything."""
    socket_map = {}
    old, _ = make_driver(socket_map)
    sentinel = object()
    socket_map[1000] = sentinel  # another dispatcher stays
    new, _ = make_driver(socket_map)
    assert socket_map == {new.fd: new, 1000: sentinel}
    # the old pipe was not closed by the new driver
    assert socket.socket  # (fds of the old one are ours to close here)
    old.detach()  # not in the map any more: closes nothing
    new.stop()


def test_stop_while_registered_waits_for_the_write_event():
    """Leaving the map while supervisord's poller holds the fd would
    leave a registered fd that is in no map (supervisor 4.2.5 then polls
    it at every turn): it leaves at the next write event."""
    socket_map = {}
    driver, _ = make_driver(socket_map, due=lambda: True)
    assert driver.writable()  # registered by the loop
    driver.stop()
    assert socket_map == {driver.fd: driver}
    driver.handle_write_event()
    assert not driver.writable()
    assert socket_map == {}


# the offline start's steps


class FakeJob:
    done = False


def test_offline_start_waits_for_addresses_without_blocking():
    now = [0.0]
    present = set()
    job = FakeJob()
    start = OfflineStart(
        lambda: job,
        lambda: None,
        DummyLogger(),
        addresses=['10.0.0.1', '10.0.0.2'],
        address_wait=10,
        clock=lambda: now[0],
        bindable=present.__contains__,
    )
    start.begin()  # tries once
    assert start.state == offlinestart.WAITING
    assert not start.due()  # not before POLL_INTERVAL
    now[0] += 1
    assert start.due()
    start.work()  # still missing
    assert not start.due()
    present.update({'10.0.0.1', '10.0.0.2'})
    now[0] += 1
    assert start.due()
    start.work()
    assert start.state == offlinestart.STARTING
    job.done = True
    start.work()
    assert start.state == offlinestart.DONE
    assert not start.due()


def test_offline_start_starts_anyway_at_the_bound():
    now = [0.0]
    job = FakeJob()
    logger = DummyLogger()
    start = OfflineStart(
        lambda: job,
        lambda: None,
        logger,
        addresses=['10.0.0.1'],
        address_wait=3,
        clock=lambda: now[0],
        bindable=lambda a: False,
    )
    start.begin()
    now[0] = 3.5
    start.work()
    assert start.state == offlinestart.STARTING
    assert any('starting anyway' in line for line in logger.data)


# who runs it: the listener's command line


@pytest.mark.parametrize(
    'command, expected',
    [
        ('/x/bin/supervisor-slapos-listener --slapgrid', ['--slapgrid']),
        ('/usr/bin/python3 -m supervisor_slapos.listener', []),
        (
            'python -u -m supervisor_slapos.listener --cfg "a b"',
            ['--cfg', 'a b'],
        ),
        ('python -m other.listener --slapgrid', None),
        ('cat', None),
        ('unbalanced "quote', None),
    ],
)
def test_listener_arguments(command, expected):
    assert listener_arguments(command) == expected


@pytest.mark.parametrize(
    'arguments, by_plugin',
    [
        (['--slapgrid'], True),
        ([], True),
        (['--master-url', 'http://m', '--computer-id', 'C'], False),
        (
            ['--master-url', 'http://m', '--computer-id', 'C', '--slapgrid'],
            True,
        ),
    ],
)
def test_plugin_config(arguments, by_plugin):
    command = ' '.join(['supervisor-slapos-listener', *arguments])
    configs = listener_configs([(command, None), ('cat', None)])
    assert (plugin_config(configs) is not None) == by_plugin


def test_no_listener_or_a_bad_one_leaves_it_to_the_listener():
    assert plugin_config(listener_configs([('cat', None)])) is None
    assert (
        listener_configs(
            [('supervisor-slapos-listener --no-such-option', None)]
        )
        is None
    )
    assert plugin_config(None) is None


# one install per supervisord


def test_trap_install_per_supervisord_not_per_id(monkeypatch):
    """A guard on id() misfired after a reload: the new supervisord may
    have the old one's id. Each supervisord object gets its own."""
    made = []
    monkeypatch.setattr(
        offlinestart,
        '_install',
        lambda s, jobs, start_all: made.append(s) or s,
    )
    assert (
        offlinestart.install(
            DummySupervisor(), None, None, enabled=False
        ).as_dict()['by']
        == 'listener'
    )
    made.clear()
    first = DummySupervisor()
    first.options = DummyOptions()
    assert offlinestart.install(first, None, None) is first
    assert offlinestart.install(first, None, None) is first  # 2nd server
    old_id = id(first)
    del first
    gc.collect()
    for _ in range(100):  # a new one, at the old one's address if we can
        second = DummySupervisor()
        if id(second) == old_id:
            break
    second.options = DummyOptions()
    assert offlinestart.install(second, None, None) is second
    assert len(made) == 2


def test_relative_paths_are_the_listeners(tmp_path):
    """A relative --computer-json is read from the listener's directory."""
    configs = listener_configs(
        [
            (
                'supervisor-slapos-listener --slapgrid --computer-json d.json',
                str(tmp_path),
            )
        ]
    )
    assert configs[0].computer_json == str(tmp_path / 'd.json')
