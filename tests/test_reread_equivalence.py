"""linearread and incrementalread on real supervisords: after the same
random edits of the include files, ``supervisor.reloadConfig()`` answers
the same on a node with the linear, incremental re-read (the default) and
on one with ``linear_reread = false`` (supervisor's own read); a bad
value stops supervisord with a message.

Edits: ``SUPERVISOR_SLAPOS_LINEAR_EDITS`` (default sized for CI).
"""

import os
import random
import re
import shutil
import xmlrpc.client

import pytest

from supervisor_slapos import incrementalread
from testbed.configread import wait_files_older_than
from testbed.polling import wait_until

EDITS = int(os.environ.get('SUPERVISOR_SLAPOS_LINEAR_EDITS', '25'))
SLEEP = shutil.which('sleep')
GROUPS = [f'p{index}' for index in range(6)]
LINEAR_LOG = 'slapos: linear configuration re-read installed'
PLAIN_LOG = 'slapos: plain configuration re-read (linear_reread = false)'
ROUNDS = int(os.environ.get('SUPERVISOR_SLAPOS_INCREMENTAL_ROUNDS', '4'))
CACHED = re.compile(r'incremental re-read: ([1-9]\d*) of \d+ include files')


def group_text(rng, name):
    programs = [
        f'{name}_{entry}' for entry in rng.sample('abc', rng.randint(1, 2))
    ]
    text = f'[group:{name}]\nprograms = {",".join(programs)}\n'
    for program in programs:
        text += (
            f'\n[program:{program}]\n'
            f'command = {SLEEP} {rng.randint(1000, 1003)}\n'
            'autostart = false\ndirectory = %(here)s\n'
            'environment = HOME="%(ENV_HOME)s",'
            f'N="{rng.randint(0, 1)}"\n'
        )
    return text


def random_edit(rng, texts):
    """Change ``texts`` ({basename: text}) as an operator might."""
    name = rng.choice(GROUPS)
    edit = rng.choice(('write', 'write', 'remove', 'override', 'break'))
    if edit == 'write':
        texts[f'{name}.conf'] = group_text(rng, name)
    elif edit == 'remove':
        texts.pop(f'{name}.conf', None)
    elif edit == 'override':  # the same section in a second file
        texts[f'{name}-zz.conf'] = (
            f'[program:{name}_a]\ncommand = {SLEEP} 2000\nautostart = false\n'
        )
    else:
        texts[f'{name}-broken.conf'] = '[program:x\ncommand = oops\n'
    if rng.random() < 0.3:  # fix what is broken
        for basename in [b for b in texts if b.endswith('-broken.conf')]:
            del texts[basename]


def sync_files(node, texts):
    """Make the include directory hold ``texts``, writing only the files
    that change."""
    for path in node.include_dir.iterdir():
        if path.name not in texts:
            path.unlink()
    for basename, text in texts.items():
        path = node.include_file(basename)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def reload_and_apply(node):
    """reloadConfig(), then apply its answer as supervisorctl update
    would; the answer with the node's own paths taken out."""
    rpc = node.rpc.supervisor
    try:
        [[added, changed, removed]] = rpc.reloadConfig()
    except xmlrpc.client.Fault as fault:
        return fault.faultCode, fault.faultString.replace(str(node.root), '')
    for name in changed + removed:
        rpc.removeProcessGroup(name)
    for name in added + changed:
        rpc.addProcessGroup(name)
    return sorted(added), sorted(changed), sorted(removed)


@pytest.fixture
def nodes(make_node):
    linear = make_node('linear').start()
    plain = make_node('plain', rpc_options='linear_reread = false\n').start()
    return linear, plain


def test_reloadConfig_answers_as_plain_supervisord_after_random_edits(nodes):
    linear, plain = nodes
    assert LINEAR_LOG in linear.log_tail(200)
    assert PLAIN_LOG in plain.log_tail(200)
    rng = random.Random(13)
    texts = {}
    answers = []
    for _ in range(EDITS):
        random_edit(rng, texts)
        for node in nodes:
            sync_files(node, texts)
        answers.append([reload_and_apply(node) for node in nodes])
    assert all(mine == theirs for mine, theirs in answers), [
        pair for pair in answers if pair[0] != pair[1]
    ][:3]
    assert {type(mine[0]) for mine, _ in answers} == {int, list}, (
        'the edits reached both faults and changes'
    )


def test_incremental_reloadConfig_answers_as_plain_supervisord(make_node):
    """Rounds of edits, each read at once and again once the files are
    past the margin: the incremental node reads from its cache and
    answers as the plain one."""
    mine = make_node('incremental', loglevel='debug').start()
    plain = make_node('plain', rpc_options='linear_reread = false\n').start()
    nodes = mine, plain
    rng = random.Random(29)
    texts = {}
    answers = []
    for _ in range(ROUNDS):
        for _ in range(3):
            random_edit(rng, texts)
        for node in nodes:
            sync_files(node, texts)
        answers.append([reload_and_apply(node) for node in nodes])
        wait_files_older_than(
            mine.include_dir, incrementalread.RECENT_NS / 1e9 + 0.1
        )
        answers.append([reload_and_apply(node) for node in nodes])
        answers.append([reload_and_apply(node) for node in nodes])
    assert all(a == b for a, b in answers), [
        pair for pair in answers if pair[0] != pair[1]
    ][:3]
    assert CACHED.search(mine.log_tail(5000)), mine.log_tail(40)


def test_a_bad_linear_reread_value_stops_supervisord(make_node):
    node = make_node(rpc_options='linear_reread = maybe\n')
    node.start(wait=False)
    wait_until(
        lambda: node.process.poll() is not None, 30, what='supervisord to exit'
    )
    said = (
        node.process.stderr.read().decode(errors='replace') + node.log_tail()
    )
    assert 'linear_reread' in said and 'maybe' in said
