"""supervisor's own ``startAllProcesses`` (what slapgrid's offline pass
calls) with the plugin loaded: supervisor's outcome, but that it leaves out
the groups of a partition slapgrid is destroying (its prerm group
excepted). Real supervisords, the plugin's against a plain one."""

from testbed.node import dedent
from testbed.polling import wait_until

PROGRAM = dedent("""
    [program:{name}]
    command={command}
    autostart=false
    startsecs=0
    startretries=0
    """)
GROUP = '[group:{group}]\nprograms={programs}\n'
SLEEP = '/bin/sleep 3600'
# a partition's two services, one of which is started beforehand; a
# manager's group; a program that cannot spawn; the node's own program
FILES = {
    'slappart0.conf': [('slappart0', ['a', 'b'], SLEEP)],
    'slappart1.conf': [('slappart1', ['a'], SLEEP)],
    'slappart1-prerm.conf': [('slappart1-prerm', ['cleanup'], SLEEP)],
    'slappart2.conf': [
        ('slappart2', ['web'], SLEEP),
        ('slappart2-broken', ['x'], '/nowhere/at/all'),
    ],
}
NODE_PROGRAM = PROGRAM.format(name='watchdog', command=SLEEP)
# slapgrid's marker of a destroy in progress (its prerm scripts run)
DESTROYING = '.slapos-report-wait-service-list'


def write_files(node):
    for basename, groups in FILES.items():
        text = ''
        for group, names, command in groups:
            programs = [f'{group}_{name}' for name in names]
            text += GROUP.format(group=group, programs=','.join(programs))
            text += ''.join(
                PROGRAM.format(name=program, command=command)
                for program in programs
            )
        (node.include_dir / basename).write_text(text)


def started_node(make_node, name, plugin):
    node = make_node(name, plugin=plugin, extra=NODE_PROGRAM)
    write_files(node)
    node.start()
    node.rpc.supervisor.startProcess('slappart0:slappart0_a')
    return node


def start_all(node):
    """startAllProcesses() as slapgrid's offline pass calls it, then
    supervisor's own answer to it waiting (the same list, once every
    process has settled); and the process table then."""
    results = node.rpc.supervisor.startAllProcesses()

    def settled():
        return not any(
            info['statename'] in ('STARTING', 'BACKOFF')
            for info in node.rpc.supervisor.getAllProcessInfo()
        )

    wait_until(settled, 60, what='every process settled')
    table = [
        (group, name, state) for group, name, _, state in node.process_table()
    ]
    return results, table


def test_start_all_processes_is_supervisors_own(make_node):
    plain = start_all(started_node(make_node, 'plain', plugin=False))
    plugin = start_all(started_node(make_node, 'plugin', plugin=True))
    assert plugin == plain
    results, table = plugin
    assert {(r['group'], r['name']) for r in results} == {
        ('slappart0', 'slappart0_b'),
        ('slappart1', 'slappart1_a'),
        ('slappart1-prerm', 'slappart1-prerm_cleanup'),
        ('slappart2', 'slappart2_web'),
        ('slappart2-broken', 'slappart2-broken_x'),
        ('watchdog', 'watchdog'),
    }
    [broken] = [r for r in results if r['group'] == 'slappart2-broken']
    assert broken['status'] != 80  # SUCCESS: it cannot spawn


def test_start_all_processes_leaves_out_a_partition_being_destroyed(make_node):
    """slappart1 is being destroyed: its prerm group starts, its own
    services do not; the rest as supervisor's own (a plain supervisord,
    where the same destroy revives them)."""
    nodes = {}
    for name, plugin in (('plain', False), ('plugin', True)):
        node = nodes[name] = make_node(name, plugin=plugin, extra=NODE_PROGRAM)
        (node.instance_root / 'slappart1').mkdir()
        (node.instance_root / 'slappart1' / DESTROYING).write_text('')
        write_files(node)
        node.start()
        node.rpc.supervisor.startProcess('slappart0:slappart0_a')
    plain = start_all(nodes['plain'])
    results, table = start_all(nodes['plugin'])
    assert results == [r for r in plain[0] if r['group'] != 'slappart1']
    assert table == [
        (group, name, 'STOPPED' if group == 'slappart1' else state)
        for group, name, state in plain[1]
    ]
    # supervisor's own revives the partition being destroyed
    assert ('slappart1', 'slappart1_a', 'RUNNING') in plain[1]
    assert ('slappart1-prerm', 'slappart1-prerm_cleanup', 'RUNNING') in table
    log = (nodes['plugin'].root / 'supervisord.log').read_text()
    assert (
        'slapos: startAllProcesses leaves out slappart1 (destroys in progress)'
    ) in log


def test_checked_against_this_supervisor():
    from supervisor_slapos import internals

    assert internals.start_all_reason() is None


def test_on_another_supervisor_it_stays_supervisors_and_says_why(monkeypatch):
    from supervisor.rpcinterface import SupervisorNamespaceRPCInterface

    from supervisor_slapos import internals

    before = SupervisorNamespaceRPCInterface.startAllProcesses
    monkeypatch.setattr(internals, 'START_ALL_REASON', 'not a known one')
    supervisord = type('Supervisord', (), {})()
    assert (
        internals.spare_in_start_all(supervisord, lambda: {'slappart1'})
        == 'not a known one'
    )
    assert SupervisorNamespaceRPCInterface.startAllProcesses is before
    assert supervisord not in internals._START_ALL_SPARED
