"""The boot entry on a real slapgrid node of the run's stack
(``SUPERVISOR_SLAPOS_STACK``): supervisord started as ``slapos node
supervisord`` starts it, in the ``slapos`` command's own Python and
``sys.path``, its first read linear; and a node of hundreds of partitions
booted by it under cron's limit of open files runs every service."""

import ast
import os
import resource
import time
import xmlrpc.client

import pytest

from testbed.cron import CRON_SOFT_NOFILE, run_reboot_entry
from testbed.polling import wait_until
from testbed.proc import cmdline, environ
from testbed.slapgrid_node import fresh_node

pytestmark = pytest.mark.real_slapgrid

# the node's size in the big boot (services: two per partition)
PARTITIONS = int(os.environ.get('SUPERVISOR_SLAPOS_BOOT_PARTITIONS', '300'))
RUN_ENTRIES = ('web', 'worker')
SETTLING = {'STOPPED', 'STARTING', 'BACKOFF'}


def supervisord_code(node):
    """(argv[0], the code after -c) of the node's running supervisord."""
    argv = cmdline(node.supervisord_pid()).split(b'\0')
    assert argv[1] == b'-c', argv
    return os.fsdecode(argv[0]), os.fsdecode(argv[2])


def code_sys_path(code):
    """The ``sys.path = [...]`` that slapgrid's (and the launcher's) code
    sets first."""
    head = code.split(';')[1].strip()
    assert head.startswith('sys.path = '), code
    return ast.literal_eval(head[len('sys.path = ') :])


def test_boot_entry_starts_it_in_the_slapos_commands_python_and_path():
    from supervisor_slapos.linearstart import script_interpreter

    with fresh_node(partitions=('slappart0',), node_programs=False) as node:
        node.prepare()
        node.request('started')
        node.instance()
        node.setup()
        node.kill()
        result = run_reboot_entry(node.boot_entry)
        assert result.returncode == 0, result.stdout + result.stderr
        node.wait_group_running('slappart0')
        python, code = supervisord_code(node)
        # the interpreter of bin/slapos's #! line, the eggs it puts first
        assert python == script_interpreter(node.stack.slapos)[0]
        path = code_sys_path(code)
        assert path[: len(node.stack.eggs)] == node.stack.eggs
        assert path[len(node.stack.eggs)] == os.path.dirname(
            os.path.realpath(node.stack.slapos)
        )
        # supervisord through the launcher's main: the linear parser first
        assert (
            'from supervisor_slapos.linearstart import main_when_told' in code
        )
        assert environ(node.supervisord_pid()) == {}


def service_states(node, partitions):
    """{state: count} of the partitions' services; None while supervisord
    does not answer."""
    try:
        infos = node.rpc.supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return None
    states = [i['statename'] for i in infos if i['group'] in partitions]
    return {state: states.count(state) for state in sorted(set(states))}


def test_a_node_of_hundreds_of_partitions_boots_under_crons_limit(capsys):
    """``SUPERVISOR_SLAPOS_BOOT_PARTITIONS`` started partitions (300) of
    two services each, deployed as slapgrid deploys them; a power cut,
    then only the boot entry, run as cron runs it (an empty environment,
    a soft limit of 1024 open files), the master refusing: every service
    RUNNING, none FATAL for lack of descriptors."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    partitions = tuple(f'slappart{i}' for i in range(PARTITIONS))
    with fresh_node(
        partitions=partitions, address_prefix='127.1.', node_programs=False
    ) as node:
        node.prepare()
        node.deploy_locally(partitions, RUN_ENTRIES)
        node.setup()
        node.master.front.refuse()
        node.kill()
        started = time.monotonic()
        result = run_reboot_entry(node.boot_entry)
        assert result.returncode == 0, result.stdout + result.stderr
        everything = {'RUNNING': PARTITIONS * len(RUN_ENTRIES)}

        def settled():
            counts = service_states(node, set(partitions))
            # every service started, or one that will never be
            return (
                counts
                and (
                    counts == everything
                    or 'FATAL' in counts
                    and not SETTLING & set(counts)
                )
                and counts
            )

        counts = wait_until(settled, 300, what='every service RUNNING')
        elapsed = time.monotonic() - started
        assert counts == everything
        with capsys.disabled():
            print(
                f'\n{node.stack.name}: {PARTITIONS} partitions booted '
                f'under a soft limit of {CRON_SOFT_NOFILE} open files '
                f'(hard {hard}): {counts} in {elapsed:.1f} s'
            )
