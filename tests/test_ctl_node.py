"""``supervisorctl slapos`` against a real supervisord."""
from tests.polling import wait_until


def test_start_status_stop_destroy(node):
    node.make_partition('slappart0', run=['a'], service=['w'])
    result = node.ctl('slapos', 'start', 'slappart0')
    assert (result.returncode, result.stdout) == (0, 'slappart0: started\n')
    node.wait_execed('slappart0')
    status = node.ctl('slapos', 'status', 'slappart0')
    lines = status.stdout.splitlines()
    assert lines[0].split() == ['slappart0', 'started', 'files:',
                                'slappart0.conf']
    assert [line.split()[:2] for line in lines[1:]] == [
        ['slappart0:a', 'RUNNING'], ['slappart0:w-on-watch', 'RUNNING']]
    assert node.ctl('slapos', 'stop', 'slappart0').stdout == \
        'slappart0: stopped\n'
    assert not node.include_file('slappart0.conf').exists()
    assert node.ctl('slapos', 'destroy', 'slappart0').returncode == 0


def test_fault_exits_non_zero_with_message(node):
    result = node.ctl('slapos', 'start', '../x')
    assert result.returncode != 0
    assert result.stdout.startswith("ERROR: INVALID_NAME: invalid partition "
                                    "id '../x'")
    result = node.ctl('slapos', 'start', 'slappart7')
    assert result.returncode != 0
    assert result.stdout.startswith('ERROR: NO_PARTITION:')


def test_update_and_startall(node):
    node.make_partition('slappart0', run=['a'])
    node.ctl('slapos', 'start', 'slappart0')
    node.wait_execed('slappart0')
    assert node.ctl('slapos', 'update', 'slappart0').stdout == \
        'slappart0: no change\n'
    node.rpc.supervisor.stopProcess('slappart0:a')
    result = node.ctl('slapos', 'startall')
    assert result.stdout == 'slappart0:a: started\n1 started, 0 failed\n'
    wait_until(lambda: node.processes('slappart0')['a']['statename']
               == 'RUNNING', what='restarted process')


def test_sync_and_help(node):
    result = node.ctl('slapos', 'sync')
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == 'mode: unknown'
    help_text = node.ctl('help', 'slapos').stdout
    for command in ('status', 'start', 'stop', 'destroy', 'update',
                    'startall', 'sync'):
        assert f'slapos {command}' in help_text


def test_usage_error_exits_non_zero(node):
    result = node.ctl('slapos', 'frobnicate')
    assert result.returncode != 0
    assert result.stdout.startswith("Error: unknown sub-command 'frobnicate'")
