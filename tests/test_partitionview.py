"""A partition's view: its files and loaded groups, found without a scan
of every file or group, in step with the groups supervisord adds and
removes."""

import os

from supervisor.options import ServerOptions
from supervisor.supervisord import Supervisor
from supervisor.tests.base import DummyPGroupConfig

from supervisor_slapos.ownership import Ownership
from supervisor_slapos.partitionview import Partitions


def supervisord():
    options = ServerOptions()
    options.process_group_configs = []
    return Supervisor(options)


def group(supervisord, name):
    config = DummyPGroupConfig(supervisord.options, name)
    config.make_group = lambda: type('Group', (), {'config': config})()
    return config


def test_a_view_has_the_partitions_files_and_loaded_groups(tmp_path):
    (tmp_path / 'slappart1.conf').write_text('[program:slappart1_a]\n')
    (tmp_path / 'slappart1-x.conf').write_text('[program:slappart1-x]\n')
    (tmp_path / 'slappart10.conf').write_text('[program:slappart10_a]\n')
    (tmp_path / 'firewall.conf').write_text('[program:firewall]\n')
    node = supervisord()
    node.add_process_group(group(node, 'slappart1-x'))
    partitions = Partitions(
        node, str(tmp_path), Ownership(frozenset({'firewall'}))
    )
    for name in ('slappart1', 'slappart10', 'firewall'):
        node.add_process_group(group(node, name))
    view = partitions.view('slappart1')
    assert view.files == ('slappart1-x.conf', 'slappart1.conf')
    assert sorted(view.loaded) == ['slappart1', 'slappart1-x']
    node.process_groups['slappart1'].get_unstopped_processes = list
    node.process_groups['slappart1'].before_remove = lambda: None
    node.remove_process_group('slappart1')
    (tmp_path / 'slappart1-y.conf').write_text('')
    view = partitions.view('slappart1')
    assert sorted(view.loaded) == ['slappart1-x']
    assert view.files == (
        'slappart1-x.conf',
        'slappart1-y.conf',
        'slappart1.conf',
    )


def test_include_dir_is_listed_again_only_when_an_entry_came_or_went(
    tmp_path, monkeypatch
):
    from supervisor_slapos import declarations

    (tmp_path / 'slappart1.conf').write_text('')
    listings = []
    real = declarations.os.listdir

    def listdir(path):
        listings.append(path)
        return real(path)

    monkeypatch.setattr(declarations.os, 'listdir', listdir)
    # every stamp trusted (the directory just changed: see declarations)
    monkeypatch.setattr(declarations, 'TIMESTAMP_GRANULARITY_NS', -(10**18))
    partitions = Partitions(supervisord(), str(tmp_path))
    for _ in range(3):
        assert partitions.view('slappart1').files == ('slappart1.conf',)
    assert len(listings) == 1
    (tmp_path / 'slappart1-x.conf').write_text('')
    # a new mtime at each change, whatever the filesystem clock's tick
    os.utime(tmp_path, ns=(1, 1))
    assert partitions.view('slappart1').files == (
        'slappart1-x.conf',
        'slappart1.conf',
    )
    (tmp_path / 'slappart1.conf').unlink()
    os.utime(tmp_path, ns=(2, 2))
    assert partitions.view('slappart1').files == ('slappart1-x.conf',)
    assert len(listings) == 3
