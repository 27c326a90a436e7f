"""supervisor-slapos-supervisord: supervisord with its first
configuration read through the linear parser, otherwise unchanged."""
import pytest
import supervisor.options
import supervisor.supervisord

from supervisor_slapos import (incrementalread, internals, linearread,
                               linearstart)
from tests.slapgrid import import_partition_class
from testbed.proc import cmdline, environ
from testbed.slapgrid_node import fresh_node

_, NO_SLAPGRID = import_partition_class()


def test_main_installs_linear_parser_before_supervisords_first_read(
        monkeypatch):
    monkeypatch.setattr(supervisor.options, 'UnhosedConfigParser',
                        linearread.PLAIN)
    monkeypatch.setattr(supervisor.options.ServerOptions, 'read_config',
                        internals.PLAIN_READ_CONFIG)
    seen = []
    monkeypatch.setattr(
        supervisor.supervisord, 'main',
        lambda args: seen.append(
            (args, supervisor.options.UnhosedConfigParser,
             supervisor.options.ServerOptions.read_config)))
    linearstart.main(['-n', '-c', 'x.conf'])
    assert seen == [(['-n', '-c', 'x.conf'], linearread.LinearConfigParser,
                     incrementalread.read_config)]


def test_node_started_by_it_runs_the_same_processes(make_node):
    tables = []
    for module in ('supervisor.supervisord', 'supervisor_slapos.linearstart'):
        node = make_node(module.replace('.', '-'))
        node.make_partition('slappart0', run=['a', 'b'])
        node.start(module=module)
        assert node.rpc.slapos.startPartition('slappart0') is True
        assert node.rpc.supervisor.reloadConfig() == [[[], [], []]]
        tables.append([(group, name, state) for group, name, _, state
                       in node.process_table()])
    assert tables[1] == tables[0] == [
        ('slappart0', 'a', 'RUNNING'), ('slappart0', 'b', 'RUNNING')]


@pytest.mark.skipif(NO_SLAPGRID, reason=NO_SLAPGRID or '')
def test_slapos_cfg_starts_slapgrids_supervisord_as_slapgrid_does():
    with fresh_node() as node:
        node.prepare(linear_start=True)
        pid = node.supervisord_pid()
        # slapgrid's configuration file, an empty environment (as
        # slapos.core's launchSupervisord gives it), this command's main()
        assert environ(pid) == {}
        code = cmdline(pid).split(b'\0')[2].decode()
        assert 'from supervisor_slapos.linearstart import main' in code
        assert f"main(['-c', '{node.main_config}'])" in code
        assert node.rpc.supervisor.getState()['statename'] == 'RUNNING'
