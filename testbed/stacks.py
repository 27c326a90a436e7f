"""The two reference stacks that everything said about a SlapOS node is
measured on (SPEC.md, "Packaging"), and the one place that says which of
them a test or benchmark run uses.

``newest``
    This Python (the Makefile's 3.12 venv) with the slapos.core it has
    (1.26.1): ``slapos`` is the command beside it.
``node39``
    A reconstruction of SlapOS's node package, the buildout in
    ``/opt/slapos``: a Python 3.9 without pip (``python3.9 -m venv
    --without-pip`` of pyenv's 3.9: an isolated Python whose
    ``site-packages`` is empty; its standard library still has
    ``ensurepip``, which the plugin's install here does not use),
    slapos.core 1.22.1, supervisor 4.3.0 and
    every dependency as an egg directory in ``<stack>/eggs/`` (each
    wheel installed as an egg by setuptools' own ``Wheel.install_as_egg``,
    as zc.buildout does), and ``<stack>/bin/slapos`` written as zc.buildout
    writes it: the node's Python as shebang, every egg first on
    ``sys.path``. The plugin is installed as docs/slapos-node.rst says for
    a node without pip: ``pip install --no-deps --target <stack>/plugin``
    (pip of another Python) and a ``.pth`` in the node Python's
    ``site-packages`` naming that directory and the eggs it needs.

The stack of a run is ``SUPERVISOR_SLAPOS_STACK`` (``newest`` by
default). ``node39`` is built under ``SUPERVISOR_SLAPOS_STACKS`` (default
``<repository>/.stacks``), once per set of pins: a later run reuses it and
only installs the plugin again when its sources changed. Where it cannot be
built (no Python 3.9), :func:`current` raises :class:`Unavailable` saying
why, and the tests that need it skip with that reason.

``python -m testbed.stacks build node39`` builds it and prints its path;
it exits 3 when there is no Python 3.9 here, 1 when the build failed.
"""

import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

STACK_ENV = 'SUPERVISOR_SLAPOS_STACK'
CACHE_ENV = 'SUPERVISOR_SLAPOS_STACKS'
# A Python 3.9 to build node39 with, when not pyenv's nor on PATH.
PYTHON39_ENV = 'SUPERVISOR_SLAPOS_PYTHON39'
NAMES = ('newest', 'node39')
DEFAULT = 'newest'
REPOSITORY = Path(__file__).resolve().parent.parent

# The node package's eggs: slapos.core 1.22.1 and supervisor 4.3.0 as
# slapos's stack/slapos.cfg pins them, slapos.libnetworkcache (the node's
# ``slapos`` command has it; ``slapos proxy`` needs it), and every
# dependency pinned, as buildout's ``[versions]`` does (no picked
# versions), to what pip resolved for Python 3.9 in December 2026: newer
# than slapos's own pins for some (Flask, cliff...), which matter to
# neither slapgrid's supervisord nor the plugin. setuptools stays below 81:
# slapos.core 1.22.1 imports pkg_resources.
NODE39_PINS = (
    'slapos.core==1.22.1',
    'supervisor==4.3.0',
    'slapos.libnetworkcache==0.30',
    'setuptools==67.8.0',
    'zc.buildout==3.3',
    'pip==24.0',
    'wheel==0.43.0',
    'attrs==26.1.0',
    'autopage==0.6.0',
    'blinker==1.9.0',
    'certifi==2026.10.19.post1',
    'charset-normalizer==3.5.3',
    'click==8.1.8',
    'cliff==4.9.1',
    'cmd2==2.7.0',
    'distro==1.9.0',
    'Flask==3.1.3',
    'idna==3.20',
    'importlib-metadata==8.7.1',
    'itsdangerous==2.2.0',
    'Jinja2==3.1.6',
    'jsonschema==4.25.1',
    'jsonschema-specifications==2025.9.1',
    'lxml==6.2.1',
    'markdown-it-py==3.0.0',
    'MarkupSafe==3.0.4',
    'mdurl==0.1.2',
    'netaddr==1.3.0',
    'netifaces==0.11.0',
    'packaging==26.3',
    'prettytable==3.16.0',
    'psutil==7.2.2',
    'Pygments==2.21.0',
    'pyperclip==1.11.0',
    'PyYAML==6.0.3',
    'referencing==0.36.2',
    'requests==2.32.5',
    'rich==15.0.0',
    'rich-argparse==1.8.0',
    'rpds-py==0.27.1',
    'six==1.17.0',
    'stevedore==5.5.0',
    'typing-extensions==4.16.0',
    'uritemplate==4.2.0',
    'urllib3==2.6.3',
    'wcwidth==0.9.5',
    'Werkzeug==3.1.9',
    'xml-marshaller==1.0.3',
    'zipp==3.23.1',
    'zope.interface==8.0.1',
)
# Eggs the plugin imports beside the node's Python (supervisorctl, the
# listener): docs/slapos-node.rst's .pth names exactly these.
PLUGIN_EGGS = (
    'supervisor',
    'requests',
    'urllib3',
    'idna',
    'charset_normalizer',
    'certifi',
)
# Bumped when the layout below changes, so that an old build is not reused.
LAYOUT = '1'

# What zc.buildout writes for a console script (zc.buildout.easy_install's
# script template, as in /opt/slapos/bin/slapos).
SCRIPT = """\
#!{python}

import sys
sys.path[0:0] = [
{paths}
  ]

import slapos.cli.entry

if __name__ == '__main__':
    sys.exit(slapos.cli.entry.main())
"""


class Unavailable(Exception):
    """The stack cannot be had on this machine; the message says why."""


class NoPython(Unavailable):
    """The stack's Python is not on this machine."""


class Stack:
    """A stack: ``name``, ``python`` (the node's Python: the one
    slapgrid's supervisord runs in), ``slapos`` (the node's ``slapos``
    command) and ``eggs`` (what ``bin/slapos`` puts first on ``sys.path``:
    none for a stack installed by pip)."""

    def __init__(self, name, python, slapos, eggs=(), root=None):
        self.name = name
        self.python = str(python)
        self.slapos = str(slapos)
        self.eggs = [str(egg) for egg in eggs]
        self.root = root

    def __repr__(self):
        return f'<Stack {self.name} {self.root or self.python}>'

    def code_command(self, code, *args):
        """Run Python ``code`` as the node's ``slapos`` command runs its
        own (its Python, the eggs first on ``sys.path``): slapgrid's code
        (``slapos.grid``) imports there."""
        prefix = (
            f'import sys; sys.path[0:0] = {self.eggs!r}\n' if self.eggs else ''
        )
        return [self.python, '-c', prefix + code, *map(str, args)]

    def module_command(self, module, *args):
        """``python -m module ARGS`` as :meth:`code_command` runs code."""
        if not self.eggs:
            return [self.python, '-m', module, *map(str, args)]
        return self.code_command(
            f'import runpy; runpy.run_module({module!r}, '
            f'run_name="__main__", alter_sys=True)',
            *args,
        )

    def plugin_command(self, script, module, *args):
        """One of the plugin's commands, as an operator of this stack runs
        it: the console script beside the Python where pip installed it,
        else ``<node's Python> -m module`` (the .pth recipe installs no
        script: docs/slapos-node.rst)."""
        path = Path(self.python).parent / script
        if path.exists():
            return [str(path), *map(str, args)]
        return [self.python, '-m', module, *map(str, args)]


def chosen_name():
    """The name of the stack this run uses (``SUPERVISOR_SLAPOS_STACK``)."""
    name = os.environ.get(STACK_ENV, DEFAULT) or DEFAULT
    if name not in NAMES:
        raise SystemExit(
            f'{STACK_ENV}={name!r}: not one of {", ".join(NAMES)}'
        )
    return name


_current = {}


def current():
    """The stack this run uses, built if needed (once per process);
    raises :class:`Unavailable`."""
    name = chosen_name()
    if name not in _current:
        try:
            _current[name] = get(name)
        except Unavailable as error:
            _current[name] = error
    if isinstance(_current[name], Unavailable):
        raise _current[name]
    return _current[name]


def require():
    """:func:`current`, or skip the test (pytest) saying why it cannot be
    had: never a silent pass."""
    try:
        return current()
    except Unavailable as error:
        import pytest

        pytest.skip(f'{STACK_ENV}={chosen_name()}: {error}')


def require_slapgrid(stack=None):
    """The stack (the run's unless given), or skip the test when slapgrid's
    own code (``slapos.grid.SlapObject``) does not import in its Python
    (slapos.core 1.26.1 below Python 3.12), saying why."""
    stack = stack or require()
    if stack.name not in _slapgrid_missing:
        result = subprocess.run(
            stack.code_command('import slapos.grid.SlapObject'),
            capture_output=True,
            text=True,
            timeout=120,
            env={},
        )
        _slapgrid_missing[stack.name] = (
            result.returncode
            and (result.stderr.strip().splitlines() or ['?'])[-1]
        )
    if _slapgrid_missing[stack.name]:
        import pytest

        pytest.skip(
            f'stack {stack.name}: slapgrid (slapos.grid.SlapObject) '
            f'does not import in {stack.python}: '
            f'{_slapgrid_missing[stack.name]}'
        )
    return stack


_slapgrid_missing = {}


def get(name, log=None):
    if name == 'newest':
        return newest()
    return node39(log=log)


def newest():
    bin_dir = Path(sys.executable).parent
    slapos = bin_dir / 'slapos'
    if not slapos.exists():
        raise Unavailable(
            f'newest: no slapos command beside '
            f'{sys.executable} (pip install -e ".[test]")'
        )
    return Stack('newest', sys.executable, slapos)


def cache_dir():
    return Path(os.environ.get(CACHE_ENV) or REPOSITORY / '.stacks')


def find_python39():
    """A Python 3.9 to make the node's Python from, or raise."""
    candidates = [os.environ.get(PYTHON39_ENV)]
    pyenv_root = os.environ.get('PYENV_ROOT') or os.path.expanduser('~/.pyenv')
    candidates += sorted(
        glob.glob(f'{pyenv_root}/versions/3.9.*/bin/python3.9'), reverse=True
    )
    candidates.append(shutil.which('python3.9'))
    for candidate in candidates:
        if not candidate:
            continue
        try:
            version = subprocess.run(
                [
                    candidate,
                    '-c',
                    'import sys, ensurepip, venv; '
                    'print("%d.%d" % sys.version_info[:2])',
                ],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.strip()
        except OSError:
            continue
        if version == '3.9':
            return candidate
    raise NoPython(
        f'node39: no Python 3.9 with pip on this machine (looked at '
        f'${PYTHON39_ENV}, {pyenv_root}/versions/3.9.*, python3.9 on PATH)'
    )


def node39(log=None):
    """The node package's stack, built under :func:`cache_dir` unless
    already there; the plugin (this checkout) installed into it."""
    base = find_python39()
    key = hashlib.sha256(
        '\n'.join((LAYOUT, os.path.realpath(base)) + NODE39_PINS).encode()
    ).hexdigest()[:12]
    root = cache_dir() / f'node39-{key}'
    if not (root / 'bin' / 'slapos').exists():
        _build_node39(base, root, log or _stderr)
    _install_plugin(base, root, log or _stderr)
    return Stack(
        'node39',
        root / 'python' / 'bin' / 'python3.9',
        root / 'bin' / 'slapos',
        eggs=_eggs(root),
        root=root,
    )


def _stderr(message):
    print(message, file=sys.stderr, flush=True)


def _run(args, **kwargs):
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, **kwargs
    )
    if result.returncode:
        raise Unavailable(
            f'node39: {" ".join(map(str, args[:6]))} ...: '
            f'exit {result.returncode}:\n'
            f'{result.stdout[-2000:]}{result.stderr[-3000:]}'
        )
    return result


def _build_node39(base, root, log):
    log(f'building the node39 stack in {root} (once) ...')
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=root.name + '.', dir=root.parent))
    try:
        # the node's Python: its own prefix, an empty site-packages, no pip
        _run([base, '-m', 'venv', '--without-pip', tmp / 'python'])
        wheels = cache_dir() / 'wheels-py39'
        # --use-pep517: slapos.libnetworkcache has only a setup.py
        _run(
            [
                base,
                '-m',
                'pip',
                'wheel',
                '-q',
                '--no-deps',
                '--use-pep517',
                '-w',
                wheels,
                *NODE39_PINS,
            ],
            timeout=1200,
        )
        eggs = tmp / 'eggs'
        eggs.mkdir()
        _run([base, '-c', _INSTALL_EGGS, eggs, wheels, *NODE39_PINS])
        bin_dir = tmp / 'bin'
        bin_dir.mkdir()
        final_eggs = [root / 'eggs' / egg.name for egg in _eggs(tmp)]
        script = bin_dir / 'slapos'
        script.write_text(
            SCRIPT.format(
                python=root / 'python' / 'bin' / 'python3.9',
                paths='\n'.join(f"  '{path}'," for path in final_eggs),
            )
        )
        script.chmod(0o755)
        # (nothing in the venv depends on where tmp is)
        try:
            tmp.rename(root)
        except OSError:
            if not (root / 'bin' / 'slapos').exists():
                raise
            shutil.rmtree(tmp)  # another run built it meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f'built {root}')


def _eggs(root):
    """The eggs of the stack at ``root``, in ``bin/slapos``'s order:
    buildout lists the script's own distribution first, then the others
    in the order it resolved them; here slapos.core, then by name."""

    def order(path):
        name = path.name.lower()
        return (not name.startswith(('slapos.core-', 'slapos_core-')), name)

    return sorted((root / 'eggs').iterdir(), key=order)


# Run by the base Python 3.9: each pinned wheel installed as an egg
# directory by setuptools (what zc.buildout does with a wheel).
_INSTALL_EGGS = r"""
import os, re, sys
from setuptools.wheel import Wheel
eggs, wheels, pins = sys.argv[1], sys.argv[2], sys.argv[3:]
def norm(name):
    return re.sub(r'[-_.]+', '_', name).lower()
wanted = {norm(p.split('==')[0]): p.split('==')[1] for p in pins}
for name in sorted(os.listdir(wheels)):
    if not name.endswith('.whl'):
        continue
    wheel = Wheel(os.path.join(wheels, name))
    if wanted.get(norm(wheel.project_name)) != wheel.version:
        continue
    wanted.pop(norm(wheel.project_name))
    wheel.install_as_egg(os.path.join(eggs, wheel.egg_name()))
if wanted:
    sys.exit('no wheel for %s' % wanted)
"""


def _plugin_sources_hash():
    digest = hashlib.sha256()
    for path in sorted((REPOSITORY / 'supervisor_slapos').rglob('*')) + [
        REPOSITORY / 'setup.py'
    ]:
        if path.is_file() and '__pycache__' not in path.parts:
            digest.update(str(path.relative_to(REPOSITORY)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _install_plugin(base, root, log):
    """docs/slapos-node.rst's recipe for a node without pip: the plugin
    alone in a directory of its own, installed by another Python's pip,
    and a ``.pth`` naming it and the eggs it needs. Done again when the
    plugin's sources changed."""
    stamp = root / 'plugin.sources'
    sources = _plugin_sources_hash()
    if stamp.exists() and stamp.read_text() == sources:
        return
    log(f'installing the plugin into {root} ...')
    lib = root / 'plugin'
    tmp = Path(tempfile.mkdtemp(prefix='plugin.', dir=root))
    try:
        # a copy of the checkout: pip builds in it (no build/ left here)
        source = tmp / 'source'
        shutil.copytree(
            REPOSITORY,
            source,
            ignore=shutil.ignore_patterns(
                '.git',
                '.venv',
                '.stacks',
                '.tox',
                'build',
                'dist',
                '*.egg-info',
                '__pycache__',
                'docs',
                'bench',
                'tests',
                'sample',
            ),
        )
        _run(
            [
                base,
                '-m',
                'pip',
                'install',
                '-q',
                '--no-deps',
                '--no-build-isolation',
                '--target',
                tmp / 'lib',
                source,
            ],
            timeout=600,
        )
        shutil.rmtree(lib, ignore_errors=True)
        (tmp / 'lib').rename(lib)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    python = root / 'python' / 'bin' / 'python3.9'
    site = _run(
        [
            python,
            '-c',
            'import sysconfig; print(sysconfig.get_paths()["purelib"])',
        ]
    ).stdout.strip()
    eggs = sorted(
        p
        for p in (root / 'eggs').iterdir()
        if p.name.split('-')[0].lower().replace('.', '_') in PLUGIN_EGGS
    )
    pth = Path(site) / 'supervisor_slapos.pth'
    pth.write_text(''.join(f'{line}\n' for line in [lib, *eggs]))
    stamp.write_text(sources)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m testbed.stacks',
        description='Build a reference stack; print where it is.',
    )
    sub = parser.add_subparsers(dest='command', required=True)
    build = sub.add_parser('build', help='build (or reuse) a stack')
    build.add_argument('name', choices=NAMES)
    sub.add_parser('chosen', help=f'the stack ${STACK_ENV} names')
    args = parser.parse_args(argv)
    if args.command == 'chosen':
        print(chosen_name())
        return 0
    try:
        stack = get(args.name)
    except Unavailable as error:
        print(f'{args.name}: cannot be built here: {error}', file=sys.stderr)
        return 3 if isinstance(error, NoPython) else 1
    print(stack.root or Path(stack.slapos).parent)
    return 0


if __name__ == '__main__':
    sys.exit(main())
