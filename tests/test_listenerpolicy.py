"""The listener's policies (listenerpolicy.py) decide alone and act on
their listener through its narrow set of actions only (listeneractions.py):
here the actions are recorded, the master and supervisord are fakes."""

import io
import subprocess
import sys

from supervisor_slapos.listener import make_logger
from supervisor_slapos.listenerpolicy import (
    Alone,
    BesideSlapgrid,
    ListenerParts,
)
from supervisor_slapos.syncstate import NO_CONTACT_BESIDE_SLAPGRID
from testbed.listener_fakes import (
    FakeClock,
    FakeMaster,
    FakeRPC,
    FakeSlapos,
    RecordingActions,
    down,
    instance,
    running_partition,
)


def begun(policy, tmp_path, master=None, computer_json=None):
    """``policy`` begun on fakes; its recorded actions."""
    state_dir = tmp_path / 'state'
    state_dir.mkdir(exist_ok=True)
    slapos = FakeSlapos(
        state_dir, {'slappart0': running_partition('slappart0')}
    )
    actions = RecordingActions()
    policy.begin(
        actions,
        ListenerParts(
            FakeRPC(slapos),
            master,
            str(state_dir),
            computer_json,
            make_logger(io.StringIO()),
            FakeClock(),
            lambda seconds: None,
        ),
    )
    return actions


def test_alone_offline_at_a_start_starts_all_and_repeats(tmp_path):
    master = FakeMaster()
    master.error = down()
    policy = Alone()
    actions = begun(policy, tmp_path, master)
    policy.attempt(fallback=True)
    assert actions.calls == [
        ('master_failed', 'connection refused'),
        ('record', 'offline', ['connection refused'], None),
        ('offline_started',),
        ('start_all',),
    ]
    policy.attempt(fallback=False)  # still down: no second offline start
    assert actions.names()[4:] == ['master_failed', 'record']


def test_alone_online_syncs_then_starts_all_at_a_start(tmp_path):
    master = FakeMaster([instance('slappart0', 'started')])
    policy = Alone()
    actions = begun(policy, tmp_path, master)
    policy.attempt(fallback=True)
    assert actions.calls == [
        ('master_answered', True),
        ('start_all',),
        ('record', 'online', [], None),
    ]
    assert master.lists() == 1


def test_alone_without_master_is_offline(tmp_path):
    policy = Alone()
    actions = begun(policy, tmp_path)
    policy.attempt(fallback=True)
    assert actions.names() == ['record', 'offline_started', 'start_all']
    policy.offline_start()  # the schedule's moment
    assert actions.names()[3:] == ['offline_started', 'start_all']


def test_beside_slapgrid_without_computer_json_never_asks(tmp_path):
    master = FakeMaster()
    policy = BesideSlapgrid()
    actions = begun(policy, tmp_path, master)
    policy.attempt(fallback=True)
    assert actions.calls == [
        ('start_all',),
        ('record', 'unknown', [NO_CONTACT_BESIDE_SLAPGRID], 0.0),
    ]
    policy.offline_start()
    assert actions.names()[2:] == ['start_all']  # no repeat booked
    assert master.calls == []


def test_the_command_line_loads_no_requests():
    """The plugin parses its listener's command line inside supervisord
    (offlinestart.py): that loads neither requests nor a master client."""
    code = (
        'import sys; from supervisor_slapos import offlinestart; '
        'from supervisor_slapos.listenercli import parse_args; '
        "parse_args(['--slapgrid']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('requests', 'urllib3')))"
    )
    result = subprocess.run(
        [sys.executable, '-c', code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == '[]\n'
