"""The power-loss filesystem (tests/powerloss_fs.py) keeps exactly what
was fsynced: a file's data at the file's fsync, names at the directory's
fsync."""

import os

import pytest

from supervisor_slapos.files import (
    atomic_remove,
    atomic_write,
    make_dirs_durable,
)


def fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path, text, sync=False):
    with open(path, 'w') as f:
        f.write(text)
        f.flush()
        if sync:
            os.fsync(f.fileno())


@pytest.fixture
def mnt(powerloss_fs):
    return powerloss_fs.mountpoint


def test_a_write_not_fsynced_is_lost(powerloss_fs, mnt):
    write(mnt / 'f', 'old', sync=True)
    fsync(mnt)
    write(mnt / 'f', 'new, never fsynced')
    assert (mnt / 'f').read_text() == 'new, never fsynced'
    assert powerloss_fs.power_loss() == 1
    assert (mnt / 'f').read_text() == 'old'


def test_a_new_file_whose_directory_is_not_fsynced_is_lost(powerloss_fs, mnt):
    write(mnt / 'f', 'data', sync=True)
    powerloss_fs.power_loss()
    assert os.listdir(mnt) == []


def test_a_name_fsynced_without_its_data_comes_back_empty(powerloss_fs, mnt):
    write(mnt / 'f', 'data')
    fsync(mnt)
    powerloss_fs.power_loss()
    assert (mnt / 'f').read_text() == ''


def test_a_rename_not_followed_by_the_directory_fsync_is_lost(
    powerloss_fs, mnt
):
    write(mnt / 'a', 'data', sync=True)
    fsync(mnt)
    os.rename(mnt / 'a', mnt / 'b')
    os.unlink(mnt / 'b')
    write(mnt / 'c', 'other', sync=True)
    powerloss_fs.power_loss()
    assert os.listdir(mnt) == ['a']
    assert (mnt / 'a').read_text() == 'data'


def test_an_fsynced_rename_survives(powerloss_fs, mnt):
    write(mnt / 'a', 'data', sync=True)
    os.rename(mnt / 'a', mnt / 'b')
    fsync(mnt)
    assert powerloss_fs.power_loss() == 0
    assert os.listdir(mnt) == ['b']
    assert (mnt / 'b').read_text() == 'data'


def test_a_directory_whose_parent_is_not_fsynced_is_lost_with_its_files(
    powerloss_fs, mnt
):
    os.makedirs(mnt / 'd' / 'e')
    write(mnt / 'd' / 'e' / 'f', 'data', sync=True)
    fsync(mnt / 'd' / 'e')
    fsync(mnt / 'd')
    powerloss_fs.power_loss()
    assert os.listdir(mnt) == []


def test_the_plugin_atomic_writes_and_durable_directories_survive(
    powerloss_fs, mnt
):
    make_dirs_durable(mnt / 'etc' / 'conf.d')
    atomic_write(mnt / 'etc' / 'conf.d' / 'P.conf', 'one')
    atomic_write(mnt / 'etc' / 'conf.d' / 'P.conf', 'two', mode=0o644)
    atomic_write(mnt / 'etc' / 'conf.d' / 'Q.conf', 'q')
    atomic_remove(mnt / 'etc' / 'conf.d' / 'Q.conf')
    assert powerloss_fs.power_loss() == 0
    assert os.listdir(mnt / 'etc' / 'conf.d') == ['P.conf']
    path = mnt / 'etc' / 'conf.d' / 'P.conf'
    assert path.read_text() == 'two'
    assert path.stat().st_mode & 0o777 == 0o644


def test_sync_makes_everything_durable(powerloss_fs, mnt):
    os.makedirs(mnt / 'd')
    write(mnt / 'd' / 'f', 'data')
    powerloss_fs.sync()
    assert powerloss_fs.power_loss() == 0
    assert (mnt / 'd' / 'f').read_text() == 'data'
