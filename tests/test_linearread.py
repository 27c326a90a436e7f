"""linearread: supervisord's full read with the linear parser gives exactly
what plain supervisor gives.

Property-based (hypothesis, derandomized, bounded) over generated
configurations: several include files in several directories, the same
section in several files, multi-line values, ``%(here)s`` and ``ENV_``
references, ``[include]`` with several patterns (and an ``[include]``
section in an included file), ``[DEFAULT]``, and broken files. Each is read
by supervisor's own ``ServerOptions.read_config`` once with the plain
parser class and once with ``LinearConfigParser``: the parser state, the
parse messages, the process group configs (``process_groups_from_parser``)
and any error text must be identical.

Examples: ``SUPERVISOR_SLAPOS_LINEAR_EXAMPLES`` (default sized for CI).
"""

import configparser
import os
import tempfile
from pathlib import Path

import pytest
import supervisor.options
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from supervisor.options import ServerOptions

from supervisor_slapos import internals, linearread
from supervisor_slapos.linearread import PLAIN, LinearConfigParser

EXAMPLES = int(os.environ.get('SUPERVISOR_SLAPOS_LINEAR_EXAMPLES', '150'))
EQUIVALENCE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

ENVIRON = {'ENV_HOME': '/home/slap', 'ENV_ROLE': 'node'}
DIRECTORIES = ('a', 'b', 'a/deep')
PATTERNS = ('a/*.conf', 'b/*.ini', 'a/deep/*.conf', 'a/f0.conf', 'none/*.x')
SECTIONS = (
    'program:p0',
    'program:p1',
    'program:p2',
    'group:g0',
    'group:g1',
    'include',
    'supervisord',
    'DEFAULT',
)
VALUES = (
    '/bin/true',
    '%(here)s/run',
    '%(ENV_HOME)s/bin/x --role %(ENV_ROLE)s',
    'x\n  continued %(here)s\n\n  and more',
    '%(here)s',
    '%(ENV_MISSING)s',
    'a ; an inline comment',
    '100%% sure',
    '%(here)s/%(here)s',
)
OPTIONS = {
    'program:': (
        'command',
        'directory',
        'stdout_logfile',
        'priority',
        'environment',
        'autostart',
    ),
    'group:': ('programs', 'priority'),
    'include': ('files',),
    'supervisord': ('identifier', 'childlogdir'),
    'DEFAULT': ('directory', 'shared'),
}
# values an option must have to be valid; others get one of VALUES
VALID = {
    'priority': ('5', '999'),
    'autostart': ('false', 'true'),
    'programs': ('p0', 'p1,p2', 'p0,missing'),
    'environment': ('A="%(ENV_HOME)s",B="%(here)s"',),
    'files': ('*.conf', 'none/*.x'),
    'childlogdir': ('%(here)s',),
}
BROKEN = ('this line has no delimiter', '  indented = continuation')


# generated configurations


def option_lines(section):
    prefix = section.split(':', 1)[0] + (':' if ':' in section else '')
    names = OPTIONS[prefix]
    values = VALUES + sum((VALID.get(name, ()) for name in names), ())
    return st.lists(
        st.tuples(st.sampled_from(names), st.sampled_from(values)), max_size=4
    )


@st.composite
def section_texts(draw):
    section = draw(st.sampled_from(SECTIONS))
    lines = [f'[{section}]']
    for name, value in draw(option_lines(section)):
        first, *rest = value.split('\n')
        lines.append(f'{name} = {first}')
        lines.extend(rest)
    return '\n'.join(lines)


@st.composite
def file_texts(draw):
    sections = draw(st.lists(section_texts(), max_size=4))
    text = '\n\n'.join(sections) + '\n'
    if draw(st.integers(0, 9)) == 0:
        text = draw(st.sampled_from(BROKEN)) + '\n' + text
    elif draw(st.integers(0, 9)) == 0:
        text += draw(st.sampled_from(BROKEN)) + '\n'
    return text


@st.composite
def configurations(draw):
    """{relative path: text}; 'main.conf' is the main file."""
    files = {}
    for index in range(draw(st.integers(1, 7))):
        directory = draw(st.sampled_from(DIRECTORIES))
        extension = 'ini' if directory == 'b' else 'conf'
        files[f'{directory}/f{index}.{extension}'] = draw(file_texts())
    patterns = draw(
        st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3)
    )
    main = (
        '[supervisord]\nlogfile = %(here)s/supervisord.log\n'
        'pidfile = %(here)s/supervisord.pid\n'
        f'[include]\nfiles = {" ".join(patterns)}\n'
    )
    if draw(st.booleans()):
        main += '[program:p0]\ncommand = /bin/main\ndirectory = %(here)s\n'
    files['main.conf'] = main
    return files


# reading them as supervisord does


def read_with(parser_class, main, monkeypatch):
    """What ServerOptions.read_config makes of ``main`` with
    ``parser_class``: (parser state, options state) or (None, error)."""
    parsers = []

    class Recording(parser_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            parsers.append(self)

    monkeypatch.setattr(supervisor.options, 'UnhosedConfigParser', Recording)
    options = ServerOptions()
    options.configfile = str(main)
    options.here = str(main.parent)
    options.environ_expansions = dict(ENVIRON)
    try:
        section = options.read_config(str(main))
    except ValueError as e:
        return parser_state(parsers[0]), ('error', str(e))
    return parser_state(parsers[0]), (
        vars(section),
        options.parse_infos,
        options.parse_warnings,
    )


def parser_state(parser):
    return (
        [
            (name, list(parser._sections[name].items()))
            for name in parser.sections()
        ],
        list(parser._defaults.items()),
        parser.section_to_file,
    )


def write_files(root, files):
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@EQUIVALENCE
@given(configurations())
def test_read_config_is_the_same_with_the_linear_parser(files):
    with (
        tempfile.TemporaryDirectory() as tmp,
        pytest.MonkeyPatch.context() as monkeypatch,
    ):
        root = Path(tmp)
        write_files(root, files)
        main = root / 'main.conf'
        plain = read_with(PLAIN, main, monkeypatch)
        linear = read_with(LinearConfigParser, main, monkeypatch)
    assert linear == plain


def test_generated_configurations_reach_every_outcome(monkeypatch, tmp_path):
    """The generator is not vacuous: among its first examples are valid
    configurations with groups, parse errors, and other ValueErrors."""
    outcomes = set()

    @settings(max_examples=60, deadline=None, derandomize=True, database=None)
    @given(configurations())
    def collect(files):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_files(root, files)
            result = read_with(PLAIN, root / 'main.conf', monkeypatch)[1]
            if result[0] != 'error':
                outcomes.add(
                    'groups'
                    if result[0]['process_group_configs']
                    else 'no groups'
                )
            elif 'line' in result[1]:
                outcomes.add('parse error')
            else:
                outcomes.add('other error')

    collect()
    assert outcomes == {'groups', 'no groups', 'parse error', 'other error'}


# the parser outside read_config


def test_set_then_expand_here_matches_plain():
    results = []
    for cls in (PLAIN, LinearConfigParser):
        parser = cls()
        parser.read_string('[a]\nx = 1\n[b]\ny = 2\n')
        parser.expand_here('/first')
        parser.set('a', 'z', '%(here)s/z')
        parser['b']['w'] = '%(here)s'
        parser.expand_here('/second')
        results.append(parser_state(parser)[0])
    assert results[0] == results[1]
    assert ('z', '/second/z') in results[1][0][1]


def test_sections_is_a_list_that_follows_its_changes():
    parser = LinearConfigParser()
    parser.read_string('[a]\n[b]\n')
    names = parser.sections()
    assert names == ['a', 'b'] and 'a' in names and 'c' not in names
    names.append('c')
    names.remove('a')
    assert 'c' in names and 'a' not in names


# installing


def test_install_twice_keeps_the_linear_parser(monkeypatch):
    monkeypatch.setattr(supervisor.options, 'UnhosedConfigParser', PLAIN)
    assert linearread.install(True) == linearread.install(True)
    assert supervisor.options.UnhosedConfigParser is LinearConfigParser
    assert 'linear_reread = false' in linearread.install(False)
    assert supervisor.options.UnhosedConfigParser is PLAIN


def test_unknown_supervisor_parser_keeps_the_plain_one(monkeypatch):
    monkeypatch.setattr(supervisor.options, 'UnhosedConfigParser', PLAIN)
    monkeypatch.setattr(internals, 'PARSER_SOURCES', frozenset())
    message = linearread.install(True)
    assert message.startswith('plain configuration re-read')
    assert 'not a known one' in message
    assert supervisor.options.UnhosedConfigParser is PLAIN


def test_the_supported_supervisors_parser_is_known():
    assert internals.parser_unsupported_reason() is None


class Marking(configparser.Interpolation):
    """An interpolation that changes values as they are read: joining them
    again is no longer a no-op, so the parser reads as configparser does."""

    def before_read(self, parser, section, option, value):
        return value + '!'


def test_an_interpolation_that_changes_values_reads_as_plain(tmp_path):
    first, second = tmp_path / 'a.conf', tmp_path / 'b.conf'
    first.write_text('[a]\nx = 1\n')
    second.write_text('[b]\ny = 2\n[a]\nz = 3\n')
    results = []
    for cls in (PLAIN, LinearConfigParser):
        parser = cls(interpolation=Marking())
        parser.read([str(first), str(second)])
        results.append(parser_state(parser))
    assert results[0] == results[1]
    assert ('x', '1!!') in results[1][0][0][1]
