"""Addresses first, for real: beside slapgrid, the offline start at
supervisord's start waits (bounded) until the partitions' addresses of
computer_json can be bound on the host.

supervisord runs in a network namespace of the test's own (as root:
``ip netns add``), where only the test adds addresses; its unix socket is
on the filesystem, reachable from outside. Addresses stay inside the
namespace (none is ever routed anywhere).
"""

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.polling import wait_until
from testbed.proc import kill_tree
from testbed.slapos_master import FORMAT
from testbed.slapos_master import write_dump as write_master_dump
from tests.listener_node import EVENTS, listener_args
from tests.test_listener_survives import (
    PID,
    listener_log,
    started_partition_node,
    wait_offline_started,
)

MISSING_V4 = '10.213.7.5'
MISSING_V6 = 'fd00:5eed::5'
_names = itertools.count()


def ip(*args):
    return subprocess.run(
        ['ip', *args], capture_output=True, text=True, timeout=30
    )


@pytest.fixture
def netns():
    """A fresh network namespace with ``lo`` up; removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip('network namespaces need root (ip netns add)')
    name = f'sslapos-{os.getpid()}-{next(_names)}'
    try:
        made = ip('netns', 'add', name)
    except FileNotFoundError:
        pytest.skip('no ip command (iproute2) to make a network namespace')
    if made.returncode != 0:
        pytest.skip(f'cannot make a network namespace: {made.stderr.strip()}')
    try:
        assert ip('-n', name, 'link', 'set', 'lo', 'up').returncode == 0
        yield name
    finally:
        ip('netns', 'del', name)


@pytest.fixture
def hanging_resolver(netns):
    """The namespace's resolver (``ip netns exec`` puts
    /etc/netns/NAME/resolv.conf on /etc/resolv.conf) is a UDP socket on
    127.0.0.1:53 that never answers: each name lookup costs glibc's
    default timeout (5 s, twice)."""
    config = Path('/etc/netns') / netns
    config.mkdir(parents=True)
    server = None
    try:
        (config / 'resolv.conf').write_text(
            'nameserver 127.0.0.1\noptions timeout:5 attempts:2\n'
        )
        server = subprocess.Popen(
            [
                'ip',
                'netns',
                'exec',
                netns,
                sys.executable,
                '-c',
                'import socket, time; '
                's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); '
                's.bind(("127.0.0.1", 53)); print("ready", flush=True); '
                'time.sleep(3600)',
            ],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert server.stdout.readline() == 'ready\n'
        yield netns
    finally:
        if server is not None:
            kill_tree(server.pid)
            server.wait(timeout=30)
            server.stdout.close()
        shutil.rmtree(config)


def write_dump(path, addresses):
    path.write_text(
        json.dumps(
            {
                'reference': 'COMP-ADDR',
                'partition_list': [
                    {
                        'reference': PID,
                        'address_list': [
                            {
                                'addr': addr,
                                'netmask': 'ffff:ffff:ffff:ffff::'
                                if ':' in addr
                                else '255.255.255.0',
                            }
                            for addr in addresses
                        ],
                    }
                ],
            }
        )
    )
    return path


def wait_log(node):
    """Where the address wait is logged: the listener's log, or
    supervisord's when the plugin runs the offline start
    (``offlinestart``), in the same words."""
    log = node.root / 'supervisord.log'
    return listener_log(node) + (log.read_text() if log.exists() else '')


def node_in(netns, make_node, tmp_path, addresses, wait):
    dump = write_dump(tmp_path / 'slapos.json', addresses)
    node = started_partition_node(
        make_node,
        listener=[
            '--slapgrid',
            '--computer-json',
            str(dump),
            '--address-wait',
            str(wait),
        ],
        listener_events=EVENTS,
    )
    node.command_prefix = ('ip', 'netns', 'exec', netns)
    return node


def test_offline_start_waits_until_the_addresses_exist(
    netns, make_node, tmp_path
):
    node = node_in(
        netns,
        make_node,
        tmp_path,
        ['127.0.0.1', MISSING_V4, MISSING_V6],
        wait=300,
    )
    node.start()
    wait_until(
        lambda: (
            'waiting up to 300 s for 2 of the partitions\' 3 '
            'addresses' in wait_log(node)
        ),
        30,
        what='the wait',
    )
    assert f'{MISSING_V4}, {MISSING_V6}' in wait_log(node)
    assert not node.group_running(PID)
    assert (
        ip(
            '-n', netns, 'addr', 'add', f'{MISSING_V4}/32', 'dev', 'lo'
        ).returncode
        == 0
    )
    # one address is not enough
    assert not node.group_running(PID)
    assert (
        ip(
            '-n',
            netns,
            'addr',
            'add',
            f'{MISSING_V6}/128',
            'dev',
            'lo',
            'nodad',
        ).returncode
        == 0
    )
    wait_offline_started(node, 'the offline start once the addresses exist')
    assert 'every address is there after' in wait_log(node)


def test_address_wait_is_bounded(netns, make_node, tmp_path):
    node = node_in(
        netns, make_node, tmp_path, ['127.0.0.1', MISSING_V4], wait=2
    )
    node.start()
    wait_offline_started(node, 'the offline start after the bound')
    log = wait_log(node)
    assert f'1 addresses still missing: {MISSING_V4}' in log, log
    assert '127.0.0.1' not in log.split('still missing:')[1]


def test_addresses_that_exist_cause_no_wait(netns, make_node, tmp_path):
    node = node_in(netns, make_node, tmp_path, ['127.0.0.1', '::1'], wait=300)
    node.start()
    wait_offline_started(node, 'the offline start')
    assert 'waiting up to' not in wait_log(node)


def test_what_is_no_numeric_address_is_skipped_never_resolved(
    hanging_resolver, make_node, tmp_path
):
    """A name, an IPv4 address out of range, an IPv6 scope that names no
    interface: logged once, skipped, never handed to the resolver (which
    here never answers), so that --address-wait stays a bound."""
    node = node_in(
        hanging_resolver,
        make_node,
        tmp_path,
        [
            '127.0.0.1',
            MISSING_V4,
            '10.0.0.300',
            'fe80::1%nosuchif',
            'node-0.example',
            'node-1.example',
        ],
        wait=2,
    )
    node.start()
    wait_offline_started(node, 'the offline start after the bound')
    log = wait_log(node)
    assert (
        "not waiting for 4 entries of computer_json that are no numeric "
        "address of this host (no name is resolved): '10.0.0.300', "
        "'fe80::1%nosuchif', 'node-0.example', 'node-1.example'"
    ) in log, log
    assert log.count('not waiting for 4 entries') == 1
    assert f'1 addresses still missing: {MISSING_V4}' in log, log


def test_the_format_report_is_not_held_by_the_address_wait(
    make_node, master, tmp_path
):
    """The format report needs no address: it reaches the master while
    the offline start still waits for one (host's network: 10.213.7.5 is
    no address of it)."""
    dump = tmp_path / 'slapos.json'
    write_master_dump(dump, {PID: MISSING_V4})
    node = started_partition_node(
        make_node,
        listener=listener_args(
            master.url,
            '--slapgrid',
            '--computer-json',
            str(dump),
            '--address-wait',
            '300',
        ),
        listener_events=EVENTS,
    )
    node.start()
    wait_until(
        lambda: master.front.count(FORMAT) == 1, 30, what='the format report'
    )
    assert 'waiting up to 300 s' in wait_log(node)
    assert not node.group_running(PID)  # still waiting for the address
