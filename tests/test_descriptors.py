"""Open files: the plugin raises supervisord's soft limit at load, so that
a node whose processes need more descriptors than cron's limit runs them
all."""

import resource

import pytest

from supervisor_slapos import descriptors
from supervisor_slapos.descriptors import WANTED, raised_soft_limit
from testbed.polling import wait_until

INFINITY = resource.RLIM_INFINITY
# supervisord's own minfds would raise a lower soft limit to 1024 itself:
# this node asks for less, so that a small one shows the lack
MINFDS = 64
SOFT = 256
PROCESSES = 120  # three descriptors each: more than SOFT


@pytest.mark.parametrize(
    'soft, hard, new',
    [
        (1024, 524288, WANTED),  # cron under systemd
        (1024, 4096, 4096),  # up to the hard limit only
        (1024, 1024, None),  # nothing to raise
        (WANTED, 524288, None),  # already enough
        (200000, 524288, None),  # never lowered
        (1024, INFINITY, WANTED),
        (INFINITY, INFINITY, None),
    ],
)
def test_raised_soft_limit(soft, hard, new):
    assert raised_soft_limit(soft, hard) == new


def test_raise_open_files_says_what_it_did():
    limits = {}

    def setrlimit(_, value):
        limits['set'] = value

    ok, text = descriptors.raise_open_files(
        lambda _: (1024, 524288), setrlimit
    )
    assert ok and limits['set'] == (WANTED, 524288)
    assert text == (
        f'open files: soft limit raised from 1024 to {WANTED} '
        f'(hard limit 524288); room for about '
        f'{WANTED // 3} processes'
    )
    ok, text = descriptors.raise_open_files(lambda _: (1024, 1024), setrlimit)
    assert ok and text == (
        'open files: soft limit 1024 (hard limit 1024); '
        'room for about 341 processes'
    )


def test_a_refused_raise_is_said_and_harmless():
    def setrlimit(_, value):
        raise ValueError('not allowed')

    ok, text = descriptors.raise_open_files(lambda _: (1024, 4096), setrlimit)
    assert not ok and 'could not be raised to 4096: not allowed' in text


def test_processes_beyond_the_soft_limit_all_run(make_node):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    node = make_node(supervisord_options=f'minfds = {MINFDS}\n')
    node.command_prefix = ('prlimit', f'--nofile={SOFT}:{hard}')
    names = [f's{i}' for i in range(PROCESSES)]
    node.make_partition('slappart0', run=names)
    node.start()
    assert node.rpc.slapos.startPartition('slappart0') is True

    def settled():
        states = [p['statename'] for p in node.processes('slappart0').values()]
        return (
            len(states) == PROCESSES
            and not {'STARTING', 'BACKOFF'} & set(states)
            and states
        )

    states = wait_until(settled, 120, what='every process settled')
    assert states.count('RUNNING') == PROCESSES, states.count('FATAL')
    log = (node.root / 'supervisord.log').read_text()
    assert (
        f'slapos: open files: soft limit raised from {SOFT} to '
        f'{min(hard, WANTED)}'
    ) in log
