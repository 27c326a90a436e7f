"""Every benchmark of bench/ runs at a tiny size, so that none of them rots.

No timing is asserted: at this size the figures mean nothing (run
``python -m bench`` for them).
"""

import importlib.util

import pytest

from bench import fleet, memory, offline, report, reread, scoped, status
from bench.__main__ import main


def check(outcome):
    assert outcome.rows
    for row in outcome.rows:
        assert row.plugin > 0, row
        assert row.baseline is None or row.baseline > 0, row
    assert all(isinstance(t.met, bool) for t in outcome.targets)
    text = report.render([outcome], 'python -m bench', 1.0)
    assert '## Results' in text and outcome.rows[0].metric in text


def test_scoped():
    check(scoped.run([1, 2], reps=2, budget=0.5, entries=20))


def test_status():
    check(status.run([1, 2], reps=3, budget=0.5))


def test_offline():
    check(offline.run([1], timeout=60, small_sizes=(1,), small_runs=1))


def test_reread():
    check(reread.run([1, 10], reps=2, budget=0.5, timeout=60, pass_size=2))


def test_memory():
    check(memory.run([1]))


def test_fleet():
    outcome = fleet.run([20], seeds=1, real_seconds=0)
    check(outcome)
    assert outcome.sections[0][0] == 'Fleet'


def test_sync():
    if importlib.util.find_spec('slapos') is None:
        pytest.skip('slapos.core is not installed')
    from bench import sync

    check(sync.run(2))


def test_reboot():
    from tests.slapgrid import import_partition_class

    _, missing = import_partition_class()
    if missing is not None:
        pytest.skip(f'needs slapgrid (slapos.grid.SlapObject): {missing}')
    from bench import reboot

    # one started partition, the cheap master condition, no waiting
    outcome = reboot.run(
        [1], [reboot.REFUSING], cron_delay=0, buildout_seconds=0
    )
    check(outcome)
    assert outcome.sections[0][0] == 'Reboot'


def test_cli_writes_the_report(tmp_path, capsys):
    output = tmp_path / 'BENCHMARKS.md'
    assert (
        main(['--sizes', '1', '--only', 'status', '--output', str(output)])
        == 0
    )
    text = output.read_text()
    assert '## Machine' in text and '| status | 1 |' in text
    assert '| status | 1 |' in capsys.readouterr().out
