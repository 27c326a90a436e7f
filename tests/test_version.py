"""The package version, where an operator looks for it."""

import importlib.metadata
import subprocess
import sys

import pytest

from supervisor_slapos import __version__


def test_installed_metadata_has_the_package_version():
    assert importlib.metadata.version('supervisor_slapos') == __version__


@pytest.mark.parametrize(
    'module, prog',
    [
        ('supervisor_slapos.listener', 'supervisor-slapos-listener'),
        ('supervisor_slapos.nodesetup', 'supervisor-slapos-setup'),
    ],
)
def test_commands_print_their_version(module, prog):
    result = subprocess.run(
        [sys.executable, '-m', module, '--version'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f'{prog} {__version__}\n'
