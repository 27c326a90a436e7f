"""Unit tests of the RPC class on supervisor's dummies (no process runs);
tests/test_rpc_methods.py runs the same methods against a real supervisord."""

import pytest
from supervisor.http import NOT_DONE_YET
from supervisor.options import ServerOptions
from supervisor.states import SupervisorStates
from supervisor.tests.base import DummyLogger, DummySupervisor
from supervisor.xmlrpc import Faults as SupervisorFaults
from supervisor.xmlrpc import RPCError

from supervisor_slapos import __version__, internals, rpcinterface
from supervisor_slapos.faults import Faults

TEXT = (
    '[program:slappart0-x]\ncommand=/bin/true\nautostart=false\n'
    'stdout_logfile=NONE\nstderr_logfile=NONE\n'
)


class Supervisord(DummySupervisor):
    """DummySupervisor with real options and supervisord's group methods."""

    def __init__(self, state=SupervisorStates.RUNNING):
        options = ServerOptions()
        options.configfile = None
        options.process_group_configs = []
        options.logger = DummyLogger()
        super().__init__(options=options, state=state)

    def add_process_group(self, config):
        if config.name in self.process_groups:
            return False
        self.process_groups[config.name] = config.make_group()
        return True

    def remove_process_group(self, name):
        del self.process_groups[name]
        return True


@pytest.fixture
def supervisord():
    return Supervisord()


@pytest.fixture
def paths(tmp_path):
    instance_root = tmp_path / 'instance'
    include_dir = tmp_path / 'conf.d'
    instance_root.mkdir()
    return instance_root, include_dir


def make_one(supervisord, paths, **extra):
    instance_root, include_dir = paths
    return rpcinterface.make_slapos_rpcinterface(
        supervisord,
        instance_root=str(instance_root),
        include_dir=str(include_dir),
        **extra,
    )


def assert_rpc_error(code, call, *args):
    with pytest.raises(RPCError) as info:
        call(*args)
    assert info.value.code == code
    return info.value.text


# factory


def test_factory_makes_the_namespace_and_directories(supervisord, paths):
    interface = make_one(supervisord, paths)
    assert isinstance(interface, rpcinterface.SlaposNamespaceRPCInterface)
    assert paths[1].is_dir()
    assert interface.state_dir == str(paths[1].parent)


def test_factory_takes_state_dir(supervisord, paths, tmp_path):
    interface = make_one(supervisord, paths, state_dir=str(tmp_path / 's'))
    assert interface.getStateDir() == str(tmp_path / 's')
    assert (tmp_path / 's').is_dir()


@pytest.mark.parametrize('missing', ['instance_root', 'include_dir'])
def test_factory_requires_options(supervisord, paths, missing):
    options = {'instance_root': str(paths[0]), 'include_dir': str(paths[1])}
    del options[missing]
    with pytest.raises(ValueError) as info:
        rpcinterface.make_slapos_rpcinterface(supervisord, **options)
    assert missing in str(info.value)


def test_factory_removes_stale_temporaries(supervisord, paths):
    paths[1].mkdir()
    (paths[1] / '.slappart0.conf.x.supervisor_slapos.tmp').write_text('half')
    (paths[1] / '.slappart0.conf.x.tmp').write_text('not ours')
    make_one(supervisord, paths)
    assert [p.name for p in paths[1].iterdir()] == ['.slappart0.conf.x.tmp']


# faults


def test_fault_codes_do_not_clash_with_supervisor():
    ours = {v for k, v in vars(Faults).items() if k.isupper()}
    theirs = {v for k, v in vars(SupervisorFaults).items() if k.isupper()}
    assert len(ours) == 5 and not ours & theirs


def test_fault_text_starts_with_its_name():
    error = rpcinterface.SlaposError(Faults.BAD_CONFIG, 'x')
    assert error.text == 'BAD_CONFIG: x'


def test_methods_refuse_while_shutting_down(paths):
    interface = make_one(Supervisord(SupervisorStates.SHUTDOWN), paths)
    assert_rpc_error(
        SupervisorFaults.SHUTDOWN_STATE,
        interface.getPartitionInfo,
        'slappart0',
    )
    assert interface.update_text == 'getPartitionInfo'


# getAPIVersion / getSyncState


def test_getAPIVersion(supervisord, paths):
    interface = make_one(supervisord, paths)
    assert interface.getAPIVersion() == rpcinterface.API_VERSION
    assert interface.update_text == 'getAPIVersion'


def test_getSyncState_reads_what_listener_wrote(supervisord, paths):
    from supervisor_slapos.syncstate import SyncState, write_sync_state

    interface = make_one(supervisord, paths)
    write_sync_state(
        interface.state_dir,
        SyncState(
            mode='offline',
            master_url='http://m',
            last_attempt=2.0,
            last_error='refused',
        ),
    )
    assert interface.getSyncState() == {
        'mode': 'offline',
        'master_url': 'http://m',
        'last_attempt': 2.0,
        'last_success': 0.0,
        'last_error': 'refused',
    }


# names


@pytest.mark.parametrize(
    'method',
    [
        'getPartitionInfo',
        'startPartition',
        'stopPartition',
        'destroyPartition',
        'updatePartition',
    ],
)
def test_methods_raise_invalid_name(supervisord, paths, method):
    interface = make_one(supervisord, paths)
    text = assert_rpc_error(
        Faults.INVALID_NAME, getattr(interface, method), '../x'
    )
    assert text.startswith('INVALID_NAME:') and "'../x'" in text
    assert interface.update_text == method


def test_writeGroupConfig_raises_invalid_name_for_suffix(supervisord, paths):
    interface = make_one(supervisord, paths)
    assert_rpc_error(
        Faults.INVALID_NAME,
        interface.writeGroupConfig,
        'slappart0',
        '-x',
        TEXT,
    )
    assert list(paths[1].iterdir()) == []


def test_writeGroupConfig_raises_bad_config_for_non_string(supervisord, paths):
    interface = make_one(supervisord, paths)
    assert_rpc_error(
        Faults.BAD_CONFIG, interface.writeGroupConfig, 'slappart0', 'x', 42
    )


def test_startPartition_raises_no_partition(supervisord, paths):
    interface = make_one(supervisord, paths)
    assert_rpc_error(
        Faults.NO_PARTITION, interface.startPartition, 'slappart0'
    )
    assert list(paths[1].iterdir()) == []


# writeGroupConfig / updatePartition / removeGroupConfig without processes


def test_writeGroupConfig_adds_group_and_records_config(supervisord, paths):
    interface = make_one(supervisord, paths)
    assert interface.writeGroupConfig('slappart0', 'x', TEXT) == [
        ['slappart0-x'],
        [],
        [],
    ]
    assert (paths[1] / 'slappart0-x.conf').read_text() == TEXT
    assert list(supervisord.process_groups) == ['slappart0-x']
    assert [c.name for c in supervisord.options.process_group_configs] == [
        'slappart0-x'
    ]
    # (what it did to the open files depends on this process's limits)
    assert [
        line
        for line in supervisord.options.logger.data
        if not line.startswith('slapos: open files: ')
    ] == [
        f'slapos: supervisor_slapos {__version__} loaded (RPC API 1.0)',
        'slapos: linear configuration re-read installed',
        'slapos: incremental configuration re-read installed',
        'slapos: wrote slappart0-x.conf',
        "slapos: applied slappart0: added ['slappart0-x'], changed [], "
        "removed []",
    ]


def test_unknown_supervisord_keeps_its_own_group_configs_and_says_so(
    supervisord, paths, monkeypatch
):
    # what the guard says on a supervisord whose diff_to_active differs
    # from 4.2.5's and 4.3.0's
    monkeypatch.setattr(internals, 'GROUP_CONFIG_SOURCES', frozenset())
    monkeypatch.setattr(
        internals, 'GROUP_CONFIGS_REASON', internals.group_configs_reason()
    )
    interface = make_one(supervisord, paths)
    assert interface.writeGroupConfig('slappart0', 'x', TEXT) == [
        ['slappart0-x'],
        [],
        [],
    ]
    assert list(supervisord.process_groups) == ['slappart0-x']
    assert supervisord.options.process_group_configs == []
    [line] = [
        m for m in supervisord.options.logger.data if 'not kept in step' in m
    ]
    assert (
        'Supervisor.diff_to_active is not a known one (checked: '
        'supervisor 4.2.5 and 4.3.0' in line
    )


def test_writeGroupConfig_bad_config_changes_nothing(supervisord, paths):
    interface = make_one(supervisord, paths)
    interface.writeGroupConfig('slappart0', 'x', TEXT)
    text = assert_rpc_error(
        Faults.BAD_CONFIG,
        interface.writeGroupConfig,
        'slappart0',
        'x',
        '[supervisord]\n',
    )
    assert 'slappart0-x.conf' in text
    assert (paths[1] / 'slappart0-x.conf').read_text() == TEXT
    assert list(supervisord.process_groups) == ['slappart0-x']


def test_updatePartition_without_change(supervisord, paths):
    interface = make_one(supervisord, paths)
    interface.writeGroupConfig('slappart0', 'x', TEXT)
    assert interface.updatePartition('slappart0') == [[], [], []]


def test_removeGroupConfig_removes_group_file_and_config(supervisord, paths):
    interface = make_one(supervisord, paths)
    interface.writeGroupConfig('slappart0', 'x', TEXT)
    assert interface.removeGroupConfig('slappart0', 'x') is True
    assert supervisord.process_groups == {}
    assert supervisord.options.process_group_configs == []
    assert list(paths[1].iterdir()) == []


def test_destroy_of_nothing_is_logged_as_nothing(supervisord, paths):
    # supervisorctl says "nothing to destroy": the log must not say
    # "destroyed".
    interface = make_one(supervisord, paths)
    (paths[0] / 'slappart2').mkdir()
    assert interface.destroyPartition('slappart2') is True
    log = supervisord.options.logger.data
    assert (
        'slapos: destroyPartition(slappart2): nothing to destroy '
        '(no file, no group)' in log
    )
    assert not [line for line in log if 'destroyed' in line]
    interface.writeGroupConfig(
        'slappart2', 'x', TEXT.replace('slappart0', 'slappart2')
    )
    interface.destroyPartition('slappart2')
    assert log[-1] == 'slapos: destroyed partition slappart2'


def test_getPartitionInfo_of_unknown_partition(supervisord, paths):
    interface = make_one(supervisord, paths)
    assert interface.getPartitionInfo('slappart0') == {
        'partition_id': 'slappart0',
        'state': 'stopped',
        'files': [],
        'groups': [],
        'processes': [],
        'last_error': '',
    }


def test_getAllPartitionInfo_skips_main_config_groups(
    supervisord, paths, tmp_path
):
    main = tmp_path / 'supervisord.conf'
    main.write_text(
        '[program:slapos]\ncommand=x\n[include]\nfiles = conf.d/*.conf\n'
    )
    supervisord.options.configfile = str(main)
    interface = make_one(supervisord, paths)
    from supervisor.tests.base import DummyPGroupConfig, DummyProcessGroup

    supervisord.process_groups['slapos'] = DummyProcessGroup(
        DummyPGroupConfig(supervisord.options, 'slapos')
    )
    interface.writeGroupConfig('slappart0', 'x', TEXT)
    assert [i['partition_id'] for i in interface.getAllPartitionInfo()] == [
        'slappart0'
    ]


def test_deferred_result_is_a_plain_function(supervisord, paths):
    from supervisor_slapos.jobs import JobQueue

    make_one(supervisord, paths)

    def waiting():
        yield lambda: NOT_DONE_YET

    queue = JobQueue(supervisord.options.logger)
    job = queue.submit('p', waiting(), 'p')
    deferred = queue.deferred('p', job, True)
    import types

    assert isinstance(deferred, types.FunctionType)
    assert deferred() is NOT_DONE_YET


def test_one_job_queue_and_tick_subscription_per_supervisord(
    supervisord, paths
):
    """supervisord makes an RPC interface per HTTP server: they share one
    queue, subscribed to TICK once."""
    from supervisor import events

    first = make_one(supervisord, paths)
    subscriptions = len(events.callbacks)
    second = make_one(supervisord, paths)
    assert second._jobs is first._jobs
    assert len(events.callbacks) == subscriptions
