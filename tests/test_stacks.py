"""The stacks the real-slapgrid tests run on (testbed/stacks.py) are what
they claim: node39 is the node package's (Python 3.9 without pip,
slapos.core 1.22.1, supervisor 4.3.0 as eggs on ``bin/slapos``'s path),
and slapgrid's supervisord there runs the node's supervisor egg with the
plugin that docs/slapos-node.rst's ``.pth`` recipe installed."""

import subprocess
from pathlib import Path

import pytest

from supervisor_slapos import __version__
from testbed import stacks
from testbed.proc import cmdline
from testbed.slapgrid_node import fresh_node

pytestmark = pytest.mark.real_slapgrid


@pytest.fixture(scope='module')
def node39():
    try:
        return stacks.node39()
    except stacks.Unavailable as error:
        pytest.skip(str(error))


def run(command):
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={}, cwd='/'
    )


def test_node39_is_the_node_package_s_stack(node39):
    script = Path(node39.slapos).read_text()
    assert script.startswith(
        f'#!{node39.python}\n\nimport sys\nsys.path[0:0] = [\n'
    )
    assert script.endswith(
        'import slapos.cli.entry\n\n'
        "if __name__ == '__main__':\n"
        '    sys.exit(slapos.cli.entry.main())\n'
    )
    version = run([node39.slapos, '--version'])
    assert version.stdout.startswith('slapos 1.22.1 (Python 3.9.'), version
    # the node's Python alone: no pip, no slapos.core, only what the .pth
    # recipe put there
    assert (
        'No module named pip'
        in run([node39.python, '-m', 'pip', '--version']).stderr
    )
    assert run([node39.python, '-c', 'import slapos.grid']).returncode == 1
    found = run(
        [
            node39.python,
            '-c',
            'import supervisor, supervisor_slapos;'
            ' print(supervisor.__file__, supervisor_slapos.__file__)',
        ]
    )
    egg, plugin = found.stdout.split()
    assert egg.startswith(f'{node39.root}/eggs/supervisor-4.3.0-py3.9.egg/')
    assert plugin.startswith(f'{node39.root}/plugin/')


def test_slapgrid_s_supervisord_runs_the_stack_s_supervisor_and_plugin():
    """On the run's stack: slapgrid's supervisord is its Python with
    ``bin/slapos``'s eggs first on ``sys.path`` (so the node's supervisor
    egg), and loads the plugin once the setup has run."""
    with fresh_node() as node:
        node.prepare()
        node.instance()
        node.setup()
        node.reload()
        argv = cmdline(node.supervisord_pid()).decode().split('\0')
        assert argv[0] == node.stack.python
        assert argv[2].startswith(
            f'import sys ; sys.path={node.stack.eggs}'[:-1]
        )
        log = node.instance_root / 'var' / 'log' / 'supervisord.log'
        assert (
            f'slapos: supervisor_slapos {__version__} loaded'
            in log.read_text()
        )
