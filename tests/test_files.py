import os

import pytest

from supervisor_slapos import files


def test_atomic_write_creates_and_replaces(tmp_path):
    path = tmp_path / 'p.conf'
    files.atomic_write(path, 'one\n')
    assert path.read_text() == 'one\n'
    files.atomic_write(path, 'two\n')
    assert path.read_text() == 'two\n'
    assert os.listdir(tmp_path) == ['p.conf']
    assert path.stat().st_mode & 0o777 == 0o600


def test_atomic_write_leaves_old_file_and_no_temporary_on_error(
    tmp_path, monkeypatch
):
    path = tmp_path / 'p.conf'
    path.write_text('old\n')

    def fail(*args):
        raise OSError('disk full')

    monkeypatch.setattr(os, 'replace', fail)
    with pytest.raises(OSError):
        files.atomic_write(path, 'new\n')
    assert path.read_text() == 'old\n'
    assert os.listdir(tmp_path) == ['p.conf']


def test_temporary_file_is_not_matched_by_include_pattern(
    tmp_path, monkeypatch
):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, 'replace', spy)
    files.atomic_write(tmp_path / 'p.conf', 'x')
    assert seen[0].startswith('.') and seen[0].endswith('.tmp')


def test_atomic_remove(tmp_path):
    path = tmp_path / 'p.conf'
    path.write_text('x')
    assert files.atomic_remove(path) is True
    assert not path.exists()
    assert files.atomic_remove(path) is False


def test_read_text(tmp_path):
    assert files.read_text(tmp_path / 'missing') is None
    (tmp_path / 'f').write_text('é')
    assert files.read_text(tmp_path / 'f') == 'é'


def test_remove_stale_temporaries_removes_only_ours(tmp_path):
    ours = '.p.conf.abc.supervisor_slapos.tmp'
    others = [
        '.hidden',
        '.other.conf.abc.tmp',
        '.passwd.tmp',
        'p.conf',
        'x.tmp',
    ]
    for name in [ours, *others]:
        (tmp_path / name).write_text('x')
    assert files.remove_stale_temporaries(tmp_path) == [ours]
    assert sorted(os.listdir(tmp_path)) == others


def test_write_json_then_read_json(tmp_path):
    path = tmp_path / 'state.json'
    assert files.read_json(path) is None
    files.write_json(path, {'b': 1, 'a': [2.5, 'x']})
    assert files.read_json(path) == {'a': [2.5, 'x'], 'b': 1}
    assert path.read_text().endswith('\n')


@pytest.mark.parametrize('content', [b'{"a": 1', b'\xff\xfe'])
def test_read_json_raises_value_error_on_a_broken_file(tmp_path, content):
    path = tmp_path / 'state.json'
    path.write_bytes(content)
    with pytest.raises(ValueError):
        files.read_json(path)


# make_dirs_durable


def record_fsyncs(monkeypatch):
    synced = []
    real = files.fsync_directory

    def spy(path):
        synced.append(str(path))
        real(path)

    monkeypatch.setattr(files, 'fsync_directory', spy)
    return synced


def test_make_dirs_durable_fsyncs_the_parent_of_each_new_directory(
    tmp_path, monkeypatch
):
    synced = record_fsyncs(monkeypatch)
    target = tmp_path / 'a' / 'b' / 'c'
    assert files.make_dirs_durable(target) is True
    assert target.is_dir()
    # parents first: a directory's own name is durable before its child's
    assert synced == [
        str(tmp_path),
        str(tmp_path / 'a'),
        str(tmp_path / 'a' / 'b'),
    ]


def test_make_dirs_durable_on_an_existing_directory_fsyncs_nothing(
    tmp_path, monkeypatch
):
    synced = record_fsyncs(monkeypatch)
    assert files.make_dirs_durable(tmp_path) is False
    (tmp_path / 'old').mkdir()
    assert files.make_dirs_durable(tmp_path / 'old' / 'new') is True
    assert synced == [str(tmp_path / 'old')]


def test_make_dirs_durable_resolves_a_relative_path(tmp_path, monkeypatch):
    synced = record_fsyncs(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert files.make_dirs_durable('x') is True
    assert synced == [str(tmp_path)]


def test_make_dirs_durable_fails_on_a_file_in_the_way(tmp_path, monkeypatch):
    synced = record_fsyncs(monkeypatch)
    (tmp_path / 'f').write_text('x')
    with pytest.raises(OSError):
        files.make_dirs_durable(tmp_path / 'f' / 'd')
    assert synced == []
