"""incrementalread: supervisord's incremental re-read yields what a full
read by plain supervisor yields, after every change of the files.

Property-based (hypothesis, derandomized, bounded): a main file and
include files in two directories; steps that write, rewrite, delete and
rename include files, rewrite one keeping its size and putting its
mtime back, change the main file's ``[supervisord]`` environment and
``[DEFAULT]``, remove and make the log directory, and let time pass.
After each step one ``ServerOptions`` reads incrementally and another
with supervisor's own ``read_config`` and parser; both apply the answer
as ``supervisorctl update`` does (``testbed.configread``). The answers
(added, changed, removed, or the error) and the configs read (every
field) must be the same.

"Time passes" is a sleep past the margin within which a file is read
again; the margin is shortened to ``MARGIN_NS`` here (more than a clock
tick of file stamps), 2 s in supervisord.

Examples: ``SUPERVISOR_SLAPOS_INCREMENTAL_EXAMPLES`` (default sized for
CI).
"""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import supervisor.options
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from supervisor.options import ServerOptions

from supervisor_slapos import incrementalread, internals
from supervisor_slapos.incrementalread import file_key
from supervisor_slapos.linearread import PLAIN
from testbed.configread import ActiveNode, server_options
from testbed.polling import wait_until

EXAMPLES = int(os.environ.get('SUPERVISOR_SLAPOS_INCREMENTAL_EXAMPLES', '200'))
EQUIVALENCE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
    ],
)
MARGIN_NS = 15_000_000

# shared names, and names of the file's own ('{stem}' is its name)
PROGRAMS = ('p0', 'p1') + ('{stem}a', '{stem}b', '{stem}c') * 3
PATHS = ('a/f0.conf', 'a/f1.conf', 'a/f2.conf', 'b/f3.conf', 'b/f4.conf')
OPTION_LINES = (
    'priority = 5',
    'autostart = false',
    'directory = %(here)s',
    'stdout_logfile = %(here)s/log/%(program_name)s.log',
    'stderr_logfile = AUTO',
    'stdout_logfile = NONE',
    'environment = X="%(ENV_SHARED)s",Y="%(here)s"',
    'command = /bin/echo %(host_node_name)s %(ENV_SHARED)s',
    'redirect_stderr = true\nstderr_logfile = %(here)s/log/err.log',
    'user = root',
    'numprocs = 2\nprocess_name = %(program_name)s_%(process_num)s',
    'startsecs = 0',
    'stopsignal = BAD',
)


@st.composite
def program_text(draw, name):
    lines = [
        f'[program:{name}]',
        f'command = /bin/sleep {draw(st.integers(1, 2))}',
    ]
    lines += draw(
        st.lists(st.sampled_from(OPTION_LINES), max_size=3, unique=True)
    )
    return '\n'.join(lines) + '\n'


@st.composite
def include_text(draw):
    """Programs (one name may be in several files), sometimes a group,
    [supervisord], [DEFAULT] or an eventlistener."""
    names = sorted(set(draw(st.lists(st.sampled_from(PROGRAMS), max_size=2))))
    parts = [draw(program_text(name)) for name in names]
    extra = draw(
        st.sampled_from(
            ('',) * 8
            + (
                'group',
                'group',
                'group-other',
                'supervisord',
                'default',
                'listener',
                'broken',
            )
        )
    )
    if extra == 'group' and names:
        parts.append(f'[group:g{names[0]}]\nprograms = {",".join(names)}\n')
    elif extra == 'group-other':
        parts.append('[group:gx]\nprograms = p1\n')
    elif extra == 'supervisord':
        parts.append('[supervisord]\nenvironment = SHARED="inc"\n')
    elif extra == 'default':
        parts.append('[DEFAULT]\nstartsecs = 3\n')
    elif extra == 'listener':
        parts.append(
            '[eventlistener:l0]\ncommand = /bin/cat\nevents = TICK_60\n'
        )
    elif extra == 'broken':
        parts.append('[program:p9\n')
    return '\n'.join(parts)


def main_text(environment, default):
    text = (
        '[supervisord]\nlogfile = %(here)s/supervisord.log\n'
        'pidfile = %(here)s/supervisord.pid\n'
        'childlogdir = %(here)s/childlog\n'
    )
    if environment is not None:
        text += f'environment = SHARED="{environment}"\n'
    if default:
        text += '[DEFAULT]\nautostart = false\n'
    return text + '[include]\nfiles = a/*.conf b/*.conf\n'


STEPS = st.one_of(
    st.tuples(st.just('write'), st.sampled_from(PATHS), include_text()),
    st.tuples(st.just('write'), st.sampled_from(PATHS), include_text()),
    st.tuples(st.just('delete'), st.sampled_from(PATHS)),
    st.tuples(
        st.just('rename'), st.sampled_from(PATHS), st.sampled_from(PATHS)
    ),
    st.tuples(st.just('same size, mtime back'), st.sampled_from(PATHS)),
    st.tuples(
        st.just('main'),
        st.sampled_from((None, 'x', 'y')),
        st.sampled_from((False, False, False, True)),
    ),
    st.tuples(st.just('log directory'), st.sampled_from(('a', 'b'))),
    *[st.tuples(st.just('time passes'))] * 4,
)


def write_include(path, text):
    path.write_text(text.replace('{stem}', path.stem))


def apply_step(root, step):
    kind, *args = step
    if kind == 'write':
        write_include(root / args[0], args[1])
    elif kind == 'delete':
        (root / args[0]).unlink(missing_ok=True)
    elif kind == 'rename':
        if (root / args[0]).exists():
            os.replace(root / args[0], root / args[1])
    elif kind == 'same size, mtime back':
        path = root / args[0]
        if path.exists():
            st_before = path.stat()
            data = path.read_bytes()
            # the same size, another text
            path.write_bytes(
                data.replace(b'1', b'2') if b'1' in data else data[::-1]
            )
            os.utime(path, ns=(st_before.st_atime_ns, st_before.st_mtime_ns))
    elif kind == 'main':
        (root / 'main.conf').write_text(main_text(*args))
    elif kind == 'log directory':
        log = root / args[0] / 'log'
        if log.exists():
            shutil.rmtree(log)
        else:
            log.mkdir()
    elif kind == 'time passes':
        time.sleep(MARGIN_NS / 1e9 + 0.005)


def make_tree(root):
    for directory in ('a', 'b', 'a/log', 'b/log', 'childlog'):
        (root / directory).mkdir()
    (root / 'main.conf').write_text(main_text('x', False))


@pytest.fixture
def incremental(monkeypatch):
    """The incremental read installed (as the plugin does), the plain
    parser in supervisor.options, a short margin; yields the reads'
    counts {'full': n, 'incremental': n, 'reused files': n}."""
    monkeypatch.setattr(supervisor.options, 'UnhosedConfigParser', PLAIN)
    monkeypatch.setattr(
        ServerOptions, 'read_config', internals.PLAIN_READ_CONFIG
    )
    assert incrementalread.install(True, True).startswith('incremental')
    monkeypatch.setattr(incrementalread, 'RECENT_NS', MARGIN_NS)
    counts = {'full': 0, 'incremental': 0, 'reused files': 0}
    run = incrementalread.Read.run

    def counting_run(self, fp):
        section = run(self, fp)
        counts['full' if self.cache is None else 'incremental'] += 1
        counts['reused files'] += len(self.reused)
        return section

    monkeypatch.setattr(incrementalread.Read, 'run', counting_run)
    yield counts
    monkeypatch.setattr(
        ServerOptions, 'read_config', internals.PLAIN_READ_CONFIG
    )


INITIAL = st.dictionaries(
    st.sampled_from(PATHS), include_text(), max_size=len(PATHS)
)


def run_steps(initial, steps):
    """Write the ``initial`` include files, then apply ``steps``; after
    each, both nodes reload: [(mine, plain)]."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_tree(root)
        for relative, text in initial.items():
            write_include(root / relative, text)
        main = root / 'main.conf'
        mine = ActiveNode(server_options(main))
        plain = ActiveNode(server_options(main, plain=True))
        answers = [(mine.reload(), plain.reload())]
        for step in steps:
            apply_step(root, step)
            answers.append((mine.reload(), plain.reload()))
    return [(without_root(a, root), without_root(b, root)) for a, b in answers]


def without_root(answer, root):
    return repr(answer).replace(str(root), '<root>')


@EQUIVALENCE
@given(INITIAL, st.lists(STEPS, max_size=10))
def test_reloadConfig_is_the_same_as_a_full_plain_read(
    incremental, initial, steps
):
    for index, (mine, plain) in enumerate(run_steps(initial, steps)):
        assert mine == plain, (index, steps[:index])


def test_the_steps_reach_incremental_reads_and_errors(incremental):
    """Not vacuous: among the first examples, reads reuse cached files,
    and others fail as plain supervisor does."""
    errors = []

    @settings(max_examples=40, deadline=None, derandomize=True, database=None)
    @given(INITIAL, st.lists(STEPS, max_size=10))
    def collect(initial, steps):
        errors.extend(
            mine
            for mine, _ in run_steps(initial, steps)
            if mine.startswith("('error'")
        )

    collect()
    # how many reads are incremental, and how many files they take from
    # their cache, depends on the examples (hypothesis draws others on
    # another Python) and on how long the steps took (a file changed
    # within the margin is read again): some, never none
    assert incremental['incremental'] > 0
    assert incremental['reused files'] > 0
    assert errors


# the traps, each on its own


def tree(root, files, main=None):
    make_tree(root)
    if main is not None:
        (root / 'main.conf').write_text(main)
    for relative, text in files.items():
        (root / relative).write_text(text)
    age(root)


def age(root):
    """Let the files' stamps fall out of the margin."""
    time.sleep(MARGIN_NS / 1e9 + 0.005)


def both(root):
    main = root / 'main.conf'
    return (
        ActiveNode(server_options(main)),
        ActiveNode(server_options(main, plain=True)),
    )


def reload_both(nodes, root):
    return [without_root(node.reload(), root) for node in nodes]


def program(name, *lines):
    return (
        '\n'.join([f'[program:{name}]', 'command = /bin/sleep 1', *lines])
        + '\n'
    )


@pytest.fixture
def root(tmp_path):
    return tmp_path


def test_a_section_repeated_in_a_later_file_merges_into_the_first(
    incremental, root
):
    tree(
        root,
        {
            'a/f0.conf': program('p0'),
            'b/f1.conf': '[program:p0]\npriority = 7\n',
        },
    )
    nodes = both(root)
    mine, plain = reload_both(nodes, root)
    assert mine == plain and "'priority': 7" in mine
    (root / 'b/f1.conf').unlink()
    mine, plain = reload_both(nodes, root)
    assert mine == plain and "[], ['p0'], []" in mine


def test_a_group_naming_another_files_program(incremental, root):
    tree(root, {'a/f0.conf': program('p0'), 'b/f1.conf': program('p1')})
    nodes = both(root)
    reload_both(nodes, root)
    age(root)
    reload_both(nodes, root)
    (root / 'b/f1.conf').write_text(
        program('p1') + '[group:g]\nprograms = p0,p1\n'
    )
    mine, plain = reload_both(nodes, root)
    assert mine == plain and "['g'], [], ['p0', 'p1']" in mine
    age(root)
    reload_both(nodes, root)
    (root / 'a/f0.conf').write_text(program('p0', 'priority = 3'))
    mine, plain = reload_both(nodes, root)
    assert mine == plain and "[], ['g'], []" in mine


def test_one_name_in_two_files(incremental, root):
    tree(root, {'a/f0.conf': program('p0', 'priority = 1')})
    nodes = both(root)
    reload_both(nodes, root)
    age(root)
    reload_both(nodes, root)
    (root / 'b/f1.conf').write_text('[group:p0]\nprograms =\n')
    assert len(set(reload_both(nodes, root))) == 1


@pytest.mark.parametrize(
    'change', ['supervisord in an include file', 'environment', 'DEFAULT']
)
def test_what_every_process_depends_on(incremental, root, change):
    text = program(
        'p0', 'environment = X="%(ENV_SHARED)s"', 'directory = %(here)s'
    )
    tree(root, {'a/f0.conf': text})
    nodes = both(root)
    reload_both(nodes, root)
    age(root)
    reload_both(nodes, root)
    if change == 'supervisord in an include file':
        (root / 'b/f1.conf').write_text(
            '[supervisord]\nenvironment = SHARED="inc"\n'
        )
    elif change == 'environment':
        (root / 'main.conf').write_text(main_text('changed', False))
    else:
        (root / 'main.conf').write_text(main_text('x', True))
    mine, plain = reload_both(nodes, root)
    assert mine == plain and "[], ['p0'], []" in mine


def test_host_node_name(incremental, root, monkeypatch):
    tree(root, {'a/f0.conf': program('p0', 'directory = /%(host_node_name)s')})
    nodes = both(root)
    reload_both(nodes, root)
    age(root)
    reload_both(nodes, root)
    monkeypatch.setattr('platform.node', lambda: 'elsewhere')
    mine, plain = reload_both(nodes, root)
    assert mine == plain and "[], ['p0'], []" in mine


def test_auto_log_names_given_at_add_do_not_leak(incremental, root):
    tree(root, {'a/f0.conf': program('p0', 'stdout_logfile = AUTO')})
    mine, plain = both(root)
    mine.reload(), plain.reload()
    age(root)
    [added, changed, removed, state] = mine.reload()
    assert [added, changed, removed] == [[], [], []]
    # supervisord named the log of the group it added
    active = mine.supervisord.process_groups['p0'].config
    assert isinstance(active.process_configs[0].stdout_logfile, str)
    [config] = mine.options.process_group_configs
    assert (
        config.process_configs[0].stdout_logfile
        is supervisor.options.Automatic
    )
    assert config is not active


def test_a_reload_makes_a_new_options_object_whose_first_read_is_full(
    incremental, root
):
    tree(root, {'a/f0.conf': program('p0')})
    first = server_options(root / 'main.conf')
    first.process_config(do_usage=False)
    age(root)
    first.process_config(do_usage=False)
    assert incremental['incremental'] == 1
    second = server_options(root / 'main.conf')
    second.process_config(do_usage=False)
    assert incremental['full'] == 2


def test_a_same_size_rewrite_within_the_stamps_granularity(
    incremental, root, monkeypatch
):
    """On a file system whose stamps have a granularity of a second (this
    one's are finer: its stamps are cut here), a file written twice in
    the same second keeps its size and stamps. The read between the two
    writes saw the first text; the next read must see the second."""

    def coarse_key(filename):
        key = file_key(filename)
        return key[:3] + tuple(stamp // 10**9 * 10**9 for stamp in key[3:])

    monkeypatch.setattr(incrementalread, 'file_key', coarse_key)
    monkeypatch.setattr(incrementalread, 'RECENT_NS', 2_000_000_000)
    make_tree(root)
    path = root / 'a/f0.conf'
    mine, plain = both(root)
    wait_until(
        lambda: time.time_ns() % 10**9 < 5 * 10**8,
        2,
        interval=0.01,
        what='the start of a second',
    )
    path.write_text(program('p0', 'priority = 1'))
    before = coarse_key(path)
    mine.reload(), plain.reload()
    path.write_text(program('p0', 'priority = 2'))
    assert coarse_key(path) == before
    answers = reload_both((mine, plain), root)
    assert answers[0] == answers[1] and "'priority': 2" in answers[0]


def test_a_deleted_log_directory_cannot_be_reread(incremental, root):
    tree(
        root,
        {'a/f0.conf': program('p0', 'stdout_logfile = %(here)s/log/p0.log')},
    )
    nodes = both(root)
    reload_both(nodes, root)
    age(root)
    reload_both(nodes, root)
    shutil.rmtree(root / 'a/log')
    mine, plain = reload_both(nodes, root)
    assert mine == plain and 'does not exist' in mine


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which('useradd'),
    reason='adds and removes a user: root only',
)
def test_a_removed_user_cannot_be_reread(incremental, root):
    user = f'srr{os.getpid() % 100000}'
    subprocess.run(['useradd', '--no-create-home', user], check=True)
    try:
        tree(root, {'a/f0.conf': program('p0', f'user = {user}')})
        nodes = both(root)
        reload_both(nodes, root)
        age(root)
        reload_both(nodes, root)
    finally:
        subprocess.run(['userdel', user], check=True)
    mine, plain = reload_both(nodes, root)
    assert mine == plain and 'user' in mine and "'error'" in mine


# installing, and the guard


def test_unknown_supervisor_read_keeps_its_own(monkeypatch):
    monkeypatch.setattr(
        ServerOptions, 'read_config', internals.PLAIN_READ_CONFIG
    )
    monkeypatch.setitem(
        internals.READ_SOURCES, '_processes_from_section', frozenset()
    )
    message = incrementalread.install(True, True)
    assert message.startswith('full configuration re-read')
    assert 'not a known one' in message
    assert ServerOptions.read_config is internals.PLAIN_READ_CONFIG


def test_the_supported_supervisors_read_is_known():
    assert internals.read_unsupported_reason() is None


@pytest.mark.parametrize(
    'linear, incremental, installed',
    [(True, True, True), (True, False, False), (False, True, False)],
)
def test_install_follows_both_options(
    monkeypatch, linear, incremental, installed
):
    monkeypatch.setattr(
        ServerOptions, 'read_config', internals.PLAIN_READ_CONFIG
    )
    message = incrementalread.install(linear, incremental)
    assert (
        ServerOptions.read_config is incrementalread.read_config
    ) is installed
    if not installed:
        assert '_reread = false' in message
