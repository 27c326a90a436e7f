"""naming: the partition id and suffix rules."""

import pytest

from supervisor_slapos import naming


@pytest.mark.parametrize('value', ['slappart0', 'a', 'A1', 'x' * 64])
def test_partition_id_accepts(value):
    assert naming.partition_id(value) == value


@pytest.mark.parametrize(
    'value',
    [
        '',
        'x' * 65,
        '../x',
        'a/b',
        'a-b',
        'a_b',
        'a.b',
        'a b',
        '\x00a',
        'é',
        'slappart0\n',
        None,
        3,
        b'slappart0',
    ],
)
def test_partition_id_refuses(value):
    with pytest.raises(ValueError):
        naming.partition_id(value)


@pytest.mark.parametrize('value', ['x', '_x', 'x-y', 'a_b-c', '9', 'x' * 64])
def test_suffix_accepts(value):
    assert naming.suffix(value) == value


@pytest.mark.parametrize(
    'value', ['', '-x', 'x' * 65, 'a/b', 'a.b', '..', 'a b', 'é', None]
)
def test_suffix_refuses(value):
    with pytest.raises(ValueError):
        naming.suffix(value)
