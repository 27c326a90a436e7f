"""The sample node of the quick start, run as a new user runs it: with
``.venv/bin/supervisord`` and nothing activated (no venv on PATH)."""

import os
import shutil
import sys
from pathlib import Path

import pytest

from testbed.node import SupervisorNode
from testbed.polling import wait_until

TOP = Path(__file__).resolve().parent.parent


class SampleNode(SupervisorNode):
    """supervisord on a copy of ``sample.conf`` and ``sample/``."""

    def __init__(self, top):
        super().__init__(top / 'scratch')
        self.config = top / 'sample.conf'
        self.socket = top / 'sample' / 'var' / 'supervisor.sock'
        self.root = top / 'sample' / 'var'  # supervisord.log, for log_tail


@pytest.fixture
def sample(tmp_path):
    top = tmp_path / 'n'
    top.mkdir()
    shutil.copy2(TOP / 'sample.conf', top)
    shutil.copytree(
        TOP / 'sample',
        top / 'sample',
        ignore=shutil.ignore_patterns(
            '*.log', '*.sock', '*.pid', '*.json', 'slappart[0-9].conf'
        ),
    )
    # the clone's .venv/bin: this Python's, with the listener beside it
    (top / '.venv').mkdir()
    (top / '.venv' / 'bin').symlink_to(Path(sys.executable).parent)
    node = SampleNode(top)
    yield node
    node.cleanup()


def test_sample_runs_its_listener_with_nothing_activated(sample, monkeypatch):
    monkeypatch.setenv('PATH', '/usr/bin:/bin')
    sample.start()

    def offline_start_done():
        states = {
            f'{i["group"]}:{i["name"]}': i['statename']
            for i in sample.rpc.supervisor.getAllProcessInfo()
        }
        return (
            states.get('slapos:slapos') == 'RUNNING'
            and states.get('slappart1-monitor:monitor') == 'RUNNING'
            and states
        )

    wait_until(
        offline_start_done, 60, what='the listener and its offline start'
    )


def test_sample_as_make_run_starts_it_then_its_partitions(sample, monkeypatch):
    """``make run`` starts supervisord through supervisor-slapos-supervisord
    (the linear parser installed before supervisord's first read); then
    the quick start's ``slapos start slappart0 slappart1``: slappart1's
    manager file names its log by ``%(here)s``, the include directory."""
    monkeypatch.setenv('PATH', '/usr/bin:/bin')
    sample.start(module='supervisor_slapos.linearstart')
    for partition_id in ('slappart0', 'slappart1'):
        assert sample.rpc.slapos.startPartition(partition_id) is True
    monitor = sample.rpc.supervisor.getProcessInfo('slappart1-monitor:monitor')
    assert os.path.normpath(monitor['stdout_logfile']) == str(
        sample.config.parent / 'sample' / 'var' / 'slappart1-monitor.log'
    )
