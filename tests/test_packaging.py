"""The distributions: ``python -m build`` makes an sdist and a wheel; the
wheel, installed in a clean virtual environment, runs the sample node
shipped in the sdist.

Needs ``build`` (and ``twine``), which the test extras install; set
SUPERVISOR_SLAPOS_PACKAGING=0 to skip these (they install from the
package index).
"""

import email
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from supervisor_slapos import __version__
from testbed.polling import wait_until

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(
        os.environ.get('SUPERVISOR_SLAPOS_PACKAGING') == '0',
        reason='SUPERVISOR_SLAPOS_PACKAGING=0',
    ),
    pytest.mark.skipif(
        importlib.util.find_spec('build') is None,
        reason='needs "build" (pip install build)',
    ),
]

SDIST_MUST_HAVE = [
    'setup.py',
    'MANIFEST.in',
    'README.rst',
    'sample.conf',
    'tox.ini',
    'LICENSE.txt',
    'CHANGES.rst',
    'BENCHMARKS.md',
    'ruff.toml',
    'docs/conf.py',
    'docs/index.rst',
    'sample/partitions/slappart1-monitor.conf',
    'sample/instance/slappart0/etc/run/web',
    'sample/var/.gitkeep',
    'tests/__init__.py',
    'tests/conftest.py',
    'tests/test_packaging.py',
    'testbed/__init__.py',
    'testbed/node.py',
    'bench/__init__.py',
    'bench/__main__.py',
    'supervisor_slapos/rpcinterface.py',
]
# What a run of the sample node leaves in the tree (make run, the packaging
# test's own run): its include files (slapos start writes P.conf, a manager
# P-x.conf), supervisord's socket, pid and logs and the plugin's state in
# sample/var, the processes' logs beside their partitions. The sdist
# carries the sample as it is in git.
RUN_LEFTOVERS = [
    'sample/partitions/slappart0.conf',
    'sample/partitions/slappart2.conf',
    'sample/partitions/slappart0-x.conf',
    'sample/var/supervisord.log',
    'sample/var/supervisord.pid',
    'sample/var/listener.log',
    'sample/var/sync_state.json',
    'sample/var/web-stdout---supervisor-abc123.log',
    'sample/instance/slappart0/.slappart0_web.log',
    'sample/instance/slappart1/.slappart1_worker.log',
]

WHEEL_MUST_HAVE = [
    'supervisor_slapos/__init__.py',
    'supervisor_slapos/rpcinterface.py',
    'supervisor_slapos/controllerplugin.py',
    'supervisor_slapos/listener.py',
    'supervisor_slapos/nodesetup.py',
]


def run(*args, **kwargs):
    kwargs.setdefault('timeout', 600)
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


@pytest.fixture(scope='module')
def dist(tmp_path_factory):
    """Build the sdist, then the wheel from it (what ``build`` does)."""
    out = tmp_path_factory.mktemp('dist')
    # build from a copy: building writes *.egg-info and build/ in place
    source = tmp_path_factory.mktemp('src') / 'src'
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            '.git',
            '.tox',
            '.nox',
            '.venv',
            'build',
            'dist',
            '*.egg-info',
            '__pycache__',
            '.pytest_cache',
            '.hypothesis',
        ),
    )
    # as if the sample node had run in this tree
    for name in RUN_LEFTOVERS:
        (source / name).write_text('left by a run\n')
    built = run(
        sys.executable, '-m', 'build', '--outdir', str(out), str(source)
    )
    # setuptools' deprecation box (make run printed it three times)
    assert 'License classifiers are deprecated' not in built.stderr
    [sdist] = out.glob('*.tar.gz')
    [wheel] = out.glob('*.whl')
    return sdist, wheel


def test_sdist_carries_docs_sample_tests_bench(dist):
    sdist, _ = dist
    with tarfile.open(sdist) as tar:
        members = {
            m.name.split('/', 1)[1]: m
            for m in tar.getmembers()
            if '/' in m.name
        }
    missing = [name for name in SDIST_MUST_HAVE if name not in members]
    assert missing == []
    assert not [
        n
        for n in members
        if n.endswith('.pyc')
        or '__pycache__' in n
        or n.startswith('sample/var/')
        and n != 'sample/var/.gitkeep'
    ]
    # the sample's scripts stay executable
    assert members['sample/instance/slappart0/etc/run/web'].mode & 0o111


def test_sdist_carries_the_sample_without_a_run_s_leftovers(dist):
    sdist, _ = dist
    with tarfile.open(sdist) as tar:
        names = {
            m.name.split('/', 1)[1]
            for m in tar.getmembers()
            if '/' in m.name and m.isfile()
        }
    assert [name for name in RUN_LEFTOVERS if name in names] == []
    # the sample's own include file stays
    assert 'sample/partitions/slappart1-monitor.conf' in names


def test_wheel_contents_and_metadata(dist):
    _, wheel = dist
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [n for n in names if n.endswith('.dist-info/METADATA')]
        meta = email.message_from_string(archive.read(metadata).decode())
        [entry_points] = [
            n for n in names if n.endswith('.dist-info/entry_points.txt')
        ]
        entry_points = archive.read(entry_points).decode()
    assert [n for n in WHEEL_MUST_HAVE if n not in names] == []
    assert not [
        n for n in names if n.startswith(('tests/', 'testbed/', 'bench/'))
    ]
    assert (
        'supervisor-slapos-listener = supervisor_slapos.listenercli:main'
        in entry_points
    )
    assert (
        'supervisor-slapos-setup = supervisor_slapos.nodesetup:main'
        in entry_points
    )
    assert meta['Name'] == 'supervisor_slapos'
    assert meta['Requires-Python'] == '>=3.9'
    assert meta['Description-Content-Type'] == 'text/x-rst'
    assert 'supervisor_slapos' in meta.get_payload()  # README as long desc
    requires = meta.get_all('Requires-Dist')
    assert {
        r.split(';')[0].split('>')[0].split('=')[0].strip()
        for r in requires
        if 'extra ==' not in r
    } == {'supervisor', 'setuptools', 'requests'}
    classifiers = meta.get_all('Classifier')
    for version in ('3.9', '3.10', '3.11', '3.12', '3.13'):
        assert f'Programming Language :: Python :: {version}' in classifiers
    assert meta.get_all('Project-URL')
    # the license by its text (LICENSE.txt), not a deprecated classifier
    assert meta['License'].startswith('BSD-derived')
    assert not [c for c in classifiers if c.startswith('License ::')]
    assert meta['Version'] == __version__
    assert [n for n in names if n.endswith('LICENSE.txt')]


def test_twine_check(dist):
    if importlib.util.find_spec('twine') is None:
        pytest.skip('needs "twine" (pip install twine)')
    result = run(
        sys.executable, '-m', 'twine', 'check', '--strict', *map(str, dist)
    )
    assert result.stdout.count('PASSED') == 2, result.stdout


def test_wheel_in_clean_venv_runs_the_sample_node(dist, tmp_path):
    sdist, wheel = dist
    venv = tmp_path / 'v'
    run(sys.executable, '-m', 'venv', str(venv))
    run(str(venv / 'bin' / 'python'), '-m', 'pip', 'install', '-q', str(wheel))
    # the sample node, from the sdist, in a short path (unix socket paths
    # are limited to 107 bytes)
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / 's')
    [top] = (tmp_path / 's').iterdir()
    node = top.rename(tmp_path / 'n')
    env = dict(
        os.environ,
        PATH=f'{venv / "bin"}{os.pathsep}{os.environ.get("PATH", "")}',
    )
    env.pop('PYTHONPATH', None)
    ctl = [str(venv / 'bin' / 'supervisorctl'), '-c', 'sample.conf']

    def supervisorctl(*args):
        return subprocess.run(
            [*ctl, *args],
            cwd=node,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    supervisord = subprocess.Popen(
        [str(venv / 'bin' / 'supervisord'), '-n', '-c', 'sample.conf'],
        cwd=node,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:

        def offline_started():
            assert supervisord.poll() is None, supervisord.stderr.read()
            status = supervisorctl('status').stdout
            return (
                'slappart1-monitor:monitor' in status
                and 'RUNNING' in status.split('monitor', 1)[1].splitlines()[0]
                and status
            )

        wait_until(offline_started, 60, what='the offline start')

        result = supervisorctl('slapos', 'start', 'slappart0')
        assert result.returncode == 0, (result.stdout, result.stderr)
        status = supervisorctl('slapos', 'status', 'slappart0')
        assert status.returncode == 0, (status.stdout, status.stderr)
        assert 'started' in status.stdout
        infos = supervisorctl('status').stdout
        assert 'slappart0:web' in infos
        assert 'slappart0:watchdog-on-watch' in infos
        assert (node / 'sample' / 'partitions' / 'slappart0.conf').exists()

        result = supervisorctl('shutdown')
        assert result.returncode == 0, (result.stdout, result.stderr)
        supervisord.wait(timeout=120)
    finally:
        if supervisord.poll() is None:
            supervisorctl('shutdown')  # stops the partitions' processes too
            try:
                supervisord.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(supervisord.pid, signal.SIGKILL)
                supervisord.wait()
        supervisord.stderr.close()
