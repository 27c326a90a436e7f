"""The schedule: a phase per node, backoff on the phase, a cap, the offline
start once a minute while offline; with a fake clock, then one real
supervisord whose list requests follow its phase rather than the tick."""

import math
import time

import pytest

from supervisor_slapos.eventloop import guarded
from supervisor_slapos.schedule import BACKOFF_CAP, PERIOD, Schedule, phase_of
from testbed.listener_fakes import PHASE, SYNC_REQUEST, FixedRandom, down
from testbed.polling import wait_until
from testbed.slapos_master import LIST
from tests.listener_node import make_listening_node, register

MINUTE = 1_000_020.0  # a wall-clock minute: 1_000_020 % 60 == 0


def offset(moment, phase):
    """Where ``moment`` falls in its minute, relative to ``phase``."""
    return (moment - phase) % PERIOD


def make_schedule(phase=12.5, fraction=1.0):
    return Schedule(phase, FixedRandom(fraction))


# the phase


def test_phase_is_stable_and_in_the_minute():
    assert phase_of('COMP-1234') == phase_of('COMP-1234')
    assert 0 <= phase_of('COMP-1234') < PERIOD
    assert phase_of('COMP-1234') != phase_of('COMP-1235')


def test_phases_of_a_fleet_cover_the_minute():
    phases = [phase_of(f'COMP-{n}') for n in range(600)]
    seconds = {int(p) for p in phases}
    assert len(seconds) >= 55  # of 60
    assert len({round(p, 6) for p in phases}) == 600  # sub-second


@pytest.mark.parametrize('phase', [-1, 60, 61.5, math.nan])
def test_phase_out_of_the_minute_is_refused(phase):
    with pytest.raises(ValueError):
        make_schedule(phase)


# the start attempt


def test_start_attempt_never_waits():
    schedule = make_schedule()
    assert schedule.attempt_due(MINUTE + 59.9)
    assert schedule.seconds_until_due(MINUTE + 59.9) == 0


# online: once a minute on the phase


def test_phase_is_kept_across_successes():
    schedule = make_schedule(phase=12.5)
    now = MINUTE + 47.0  # the start attempt, far from the phase
    moments = []
    for _ in range(5):
        schedule.succeeded(now)
        assert offset(schedule.next_attempt, 12.5) == 0
        assert PERIOD / 2 <= schedule.next_attempt - now <= 1.5 * PERIOD
        assert not schedule.attempt_due(schedule.next_attempt - 0.001)
        moments.append(schedule.next_attempt)
        now = schedule.next_attempt + 0.2  # woken a little late
    assert [b - a for a, b in zip(moments, moments[1:])] == [PERIOD] * 4


def test_two_attempts_are_never_close():
    schedule = make_schedule(phase=12.5)
    schedule.succeeded(MINUTE + 12.0)  # just before the phase
    assert schedule.next_attempt == MINUTE + 72.5


# offline: backoff on the phase, capped, reset on success


def test_backoff_lands_on_the_phase_and_doubles():
    schedule = make_schedule(phase=12.5)
    now = MINUTE + 12.5
    gaps = []
    for _ in range(6):
        schedule.failed(now)
        assert offset(schedule.next_attempt, 12.5) == 0
        gaps.append(schedule.next_attempt - now)
        now = schedule.next_attempt
    assert gaps == [60, 120, 240, 240, 240, 240]


def test_backoff_is_jittered_in_whole_periods():
    low, high = make_schedule(fraction=0.0), make_schedule(fraction=1.0)
    now = MINUTE + 12.5
    for _ in range(3):
        low.failed(now), high.failed(now)
    assert low.next_attempt - now == 120  # half of 240
    assert high.next_attempt - now == 240


@pytest.mark.parametrize('fraction', [0.0, 0.3, 0.77, 1.0])
def test_cap_brings_every_node_back_within_five_minutes(fraction):
    schedule = make_schedule(phase=33.3, fraction=fraction)
    now = MINUTE
    for _ in range(200):  # a long outage: no overflow either
        delay = schedule.failed(now)
        assert delay <= BACKOFF_CAP
        assert schedule.next_attempt - now < 300
        now = schedule.next_attempt + 0.4


def test_nothing_to_do_without_master_and_online():
    schedule = make_schedule()
    assert schedule.seconds_until_due(MINUTE, asks_master=False) is None


def test_wall_clock_going_back_makes_it_due_at_once():
    schedule = make_schedule(phase=12.5)
    schedule.succeeded(MINUTE + 12.5)
    schedule.offline_started(MINUTE + 12.5)
    back = MINUTE - 3600  # an NTP step an hour back
    assert schedule.attempt_due(back)
    assert schedule.offline_start_due(back)
    assert schedule.seconds_until_due(back) == 0


def test_success_resets_the_backoff():
    schedule = make_schedule(phase=12.5)
    now = MINUTE + 12.5
    for _ in range(4):
        schedule.failed(now)
        now = schedule.next_attempt
    schedule.succeeded(now)
    assert (schedule.failures, schedule.next_attempt) == (0, now + 60)
    schedule.failed(now + 60)
    assert schedule.next_attempt == now + 120  # 60 s again, not 240


def test_offline_start_comes_once_a_period_while_offline():
    schedule = make_schedule(phase=12.5)
    assert not schedule.offline_start_due(MINUTE)
    schedule.offline_started(MINUTE + 3.0)
    assert schedule.next_offline_start == MINUTE + 72.5
    assert schedule.offline_start_due(MINUTE + 72.5)
    schedule.failed(MINUTE + 3.0)
    assert schedule.seconds_until_due(MINUTE + 3.0) == 69.5
    assert schedule.seconds_until_due(MINUTE + 3.0, asks_master=False) == 69.5
    schedule.succeeded(MINUTE + 80.0)
    assert schedule.next_offline_start is None


# the listener on its schedule (fake clock)


def attempts_over(h, minutes):
    """Tick every minute; the minutes at which the master was asked."""
    asked = []
    for minute in range(1, minutes + 1):
        before = h.master.lists()
        h.tick(60)
        if h.master.lists() > before:
            asked.append(minute)
    return asked


def test_listener_start_asks_at_once_whatever_the_phase(make):
    h = make(phase=(PHASE + 30) % 60)
    h.start()
    assert h.master.lists() == 1
    assert h.slapos.actions() == [('startAllPartitions',)]


def test_ticks_only_wake_the_listener(make):
    h = make(phase=PHASE + 10)  # 10 s after the harness's start moment
    listener = h.start()
    h.tick(5)  # a tick before the phase: nothing
    assert h.master.lists() == 1
    h.clock.advance(5)
    assert listener.seconds_until_due() == 60
    h.clock.advance(60)
    assert listener.seconds_until_due() == 0
    listener.due()
    assert h.master.lists() == 2


def test_listener_backs_off_on_the_phase(make):
    h = make()
    h.master.error = down()
    h.start()
    # 1, 2, then 4 minutes apart (the cap)
    assert attempts_over(h, 20) == [1, 3, 7, 11, 15, 19]


def test_offline_start_runs_again_each_minute_while_offline(make):
    h = make()
    h.master.error = down()
    h.start()
    attempts_over(h, 5)
    assert h.slapos.actions() == [('startAllPartitions',)] * 6
    h.master.error = None
    h.clock.advance(120)
    h.listener.due()  # master back: synced, no more offline starts
    attempts_over(h, 3)
    assert h.slapos.actions() == [('startAllPartitions',)] * 6
    assert h.sync_state().mode == 'online'


def test_losing_the_master_starts_offline_at_once(make):
    h = make()
    h.start()
    h.master.error = down()
    h.tick()
    assert h.slapos.actions() == [('startAllPartitions',)] * 2


def test_without_a_master_the_offline_start_runs_each_minute(make):
    h = make(master=False)
    h.start()
    for _ in range(3):
        h.tick()
    assert h.slapos.actions() == [('startAllPartitions',)] * 4


def test_beside_slapgrid_no_periodic_offline_start(make):
    h = make()
    h.master.error = down()
    h.start(slapgrid=True)
    for _ in range(5):
        h.tick()
    assert h.slapos.actions() == [('startAllPartitions',)]


def test_remote_sync_request_ignores_the_backoff(make):
    h = make()
    h.master.error = down()
    listener = h.start()
    h.master.error = None
    listener.handle_event(*SYNC_REQUEST)
    assert h.sync_state().mode == 'online'
    listener.handle_event(
        {'eventname': 'REMOTE_COMMUNICATION'}, 'type:other\nslapos-sync'
    )
    assert h.master.lists() == 2


def test_an_attempt_that_breaks_is_not_made_again_at_once(make):
    h = make()
    listener = h.start()
    h.master.list_instances = None  # TypeError when called
    h.clock.advance(60)
    guarded(listener.event_loop().logger, listener.due)
    assert 'unexpected error' in h.log()
    assert listener.seconds_until_due() == 60


def test_no_request_is_retried_within_an_attempt(make):
    h = make()
    h.master.error = down()
    h.start()
    h.tick()
    assert h.master.calls == [('list',), ('list',)]


# a real supervisord


def choose_phase(now):
    """A phase whose first scheduled moment comes 36 to 59 s after
    ``now``, after a wall-clock minute (the tick), and at least 8 s away
    from it; None when ``now`` is too early in its minute for that."""
    second = now % 60
    wait = max(36, 68 - second)
    if wait > 59:
        return None
    return (second + wait) % 60, wait


def test_list_requests_follow_the_phase_not_the_tick(make_node, master):
    register(master)
    choice = choose_phase(time.time())
    if choice is None:
        time.sleep(9 - time.time() % 60)  # a few seconds, into the minute
        choice = choose_phase(time.time())
    phase, wait = choice
    node = make_listening_node(make_node, master.url, '--phase', f'{phase}')
    node.start()
    # (a minute later if the listener started more than 6 s after now)
    wait_until(
        lambda: master.front.count(LIST) >= 2,
        wait + 75,
        what='the first scheduled list request',
    )
    arrivals = [
        moment for moment, name in master.front.arrivals if name == LIST
    ]
    start, scheduled = arrivals[:2]
    assert node.sync_state()['mode'] == 'online'
    # on the node's own moment, not at the tick (second 0 of the minute)
    assert min(offset(scheduled, phase), offset(phase, scheduled)) < 3
    assert math.floor(scheduled / 60) > math.floor(start / 60)
    assert all(not 0 <= moment % 60 < 3 for moment in arrivals[1:])


def test_plugin_offline_start_is_not_run_again_then_each_minute(make):
    """The plugin ran this start's offline start (getOfflineStart: by
    plugin): the listener's first is skipped, its later ones are its
    own."""
    h = make(master=False)
    h.slapos.offline_start_by = 'plugin'
    h.start()
    assert h.slapos.actions() == []
    for _ in range(3):
        h.tick()
    assert h.slapos.actions() == [('startAllPartitions',)] * 3
