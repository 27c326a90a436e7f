"""ownership: which partition owns a file or a name (and what a file
declares: declarations.declared_names)."""

import pytest

from supervisor_slapos import declarations, ownership


@pytest.mark.parametrize(
    'filename, owner',
    [
        ('slappart1.conf', 'slappart1'),
        ('slappart1-x.conf', 'slappart1'),
        ('slappart1-x_y-z.conf', 'slappart1'),
        ('slappart10.conf', 'slappart10'),
        ('slappart10-x.conf', 'slappart10'),
        ('slappart1_x.conf', None),
        ('slappart1-.conf', None),
        ('slappart1--x.conf', None),
        ('slappart1.conf.tmp', None),
        ('.slappart1.conf.abc.tmp', None),
        ('slappart1.ini', None),
        ('.conf', None),
    ],
)
def test_file_owner(filename, owner):
    assert ownership.Ownership().file_owner(filename) == owner


@pytest.mark.parametrize(
    'name, owner',
    [
        ('slappart1', 'slappart1'),
        ('slappart1-x', 'slappart1'),
        ('slappart1_a', 'slappart1'),
        ('slappart10', 'slappart10'),
        ('slappart10_a', 'slappart10'),
        ('-x', None),
        ('a.b', None),
    ],
)
def test_name_owner(name, owner):
    assert ownership.Ownership().name_owner(name) == owner


NODE = ownership.Ownership(node_ids=frozenset({'firewall'}))


@pytest.mark.parametrize('name', ['slappart1', 'slappart1-x', 'slappart1_a'])
def test_owns_name(name):
    assert ownership.Ownership().owns_name('slappart1', name)
    assert NODE.owns_name('slappart1', name)
    assert NODE.name_owner(name) == 'slappart1'


@pytest.mark.parametrize(
    'name',
    ['slappart10', 'slappart10_a', 'slappart', 'slappart1x', 'xslappart1'],
)
def test_owns_name_refuses_other_partitions(name):
    assert not ownership.Ownership().owns_name('slappart1', name)


@pytest.mark.parametrize('name', ['firewall', 'firewall_x', 'firewall-x'])
def test_node_names_are_no_partition_s(name):
    pid = ownership.Ownership().name_owner(name)
    assert not NODE.owns_name(pid, name)
    assert NODE.name_owner(name) is None
    assert NODE.names_of(pid, [name, pid + '_y']) == (
        [] if pid == 'firewall' else [pid + '_y']
    )


def test_file_owner_with_node_files():
    names = [
        'slappart1.conf',
        'slappart1-x.conf',
        'slappart10.conf',
        'slappart1_x.conf',
        'firewall.conf',
        'firewall-x.conf',
        'supervisor_slapos.conf',
        'slappart1.conf.tmp',
    ]
    assert [NODE.file_owner(n) for n in names] == [
        'slappart1',
        'slappart1',
        'slappart10',
        None,
        None,
        None,
        None,
        None,
    ]


def test_declared_names_are_the_headers_and_the_file_s_own_group():
    text = (
        '[group:slappart1]\nprograms = slappart1_a\n'
        '[program:slappart1_a]\n  [eventlistener: slappart1-e ]\n'
        '[fcgi-program:slappart1-f]\n[supervisord]\n[include]\n'
        'x = [program:not-a-header]\n'
    )
    assert declarations.declared_names(text, 'slappart1.conf') == {
        'slappart1',
        'slappart1_a',
        'slappart1-e',
        'slappart1-f',
    }
    # a partition's file that no longer parses still declares its group
    assert declarations.declared_names('\0garbage', 'slappart1-x.conf') == {
        'slappart1-x'
    }
    assert declarations.declared_names('', 'slappart1.conf') == {'slappart1'}
    # a node file declares its headers only
    assert declarations.declared_names('', 'supervisor_slapos.conf') == set()
    assert declarations.declared_names(text) == declarations.declared_names(
        text, 'slappart1.conf'
    )


def test_file_and_group_names():
    assert ownership.file_name('p') == 'p.conf'
    assert ownership.file_name('p', 'x') == 'p-x.conf'
    assert ownership.group_name('p', 'x') == 'p-x'


def test_name_owner_and_names_of_are_one_rule():
    names = [
        'slappart1',
        'slappart1-x',
        'slappart1_a',
        'slappart10_a',
        'slappart1-main',
        'slapos',
        'firewall',
        'firewall_x',
        'a.b',
        '-x',
        '_',
        'slappart1x',
        'é_x',
    ]
    for pid in ('slappart1', 'slappart10', 'slapos', 'firewall', 'a'):
        assert NODE.names_of(pid, names) == [
            n for n in names if NODE.name_owner(n) == pid
        ]
