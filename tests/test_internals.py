"""The guard of supervisor's internals: the floor spawn is used only on
the supervisor and Python versions it was checked against."""
from supervisor.tests.base import DummyOptions, DummyPConfig

from supervisor.process import Subprocess

from supervisor_slapos import fastspawn, internals


def subprocess_of(options):
    config = DummyPConfig(options, 'p', '/bin/true')
    return Subprocess(config)


def test_checked_versions_are_supported():
    process = subprocess_of(DummyOptions())
    for version in ('4.2.5', '4.3.0'):
        assert internals.spawn_unsupported(
            process, version=version, python=(3, 12)) is None


def test_unknown_supervisor_version_says_why():
    why = internals.spawn_unsupported(
        subprocess_of(DummyOptions()), version='4.4.0', python=(3, 12))
    assert why.startswith('supervisor 4.4.0 is not one the floor spawn')


def test_unknown_python_says_why():
    why = internals.spawn_unsupported(
        subprocess_of(DummyOptions()), version='4.3.0', python=(3, 99))
    assert 'Python 3.99' in why


def test_floor_spawn_on_unknown_version_is_supervisors_own_and_logged(
        monkeypatch):
    options = DummyOptions()
    process = subprocess_of(options)
    monkeypatch.setattr(internals, 'SUPERVISOR_VERSION', '9.9')
    with fastspawn.floor_spawn(process):
        assert 'spawn' not in vars(process)
    assert any("supervisor's own spawn for 'p': supervisor 9.9" in line
               for line in options.logger.data)


def test_floor_spawn_replaces_spawn_only_within_the_block():
    process = subprocess_of(DummyOptions())
    with fastspawn.floor_spawn(process):
        assert 'spawn' in vars(process)
    assert 'spawn' not in vars(process)
