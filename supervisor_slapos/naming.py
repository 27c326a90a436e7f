"""Partition ids and manager suffixes: what a valid one is.

Pure functions: each returns a valid value or raises ``ValueError``
naming what is wrong. What a partition owns (its files, its names, its
loaded groups) is ``ownership``'s and ``partitionview``'s.
"""

import re

PARTITION_ID_RE = re.compile(r'[A-Za-z0-9]{1,64}')
SUFFIX_RE = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_-]{0,63}')
# slapgrid's own files in include_dir: firewall.conf and dbus.conf
DEFAULT_NODE_FILES = 'firewall dbus'


def partition_id(value, node_ids=frozenset()):
    """Return ``value`` if it is a valid partition id and none of
    ``node_ids`` (the ids of ``node_files``), else raise ValueError."""
    if not isinstance(value, str) or not PARTITION_ID_RE.fullmatch(value):
        raise ValueError(
            f'invalid partition id {value!r}: '
            f'expected 1 to 64 letters or digits'
        )
    if value in node_ids:
        raise ValueError(
            f'{value!r} is listed in node_files: its files and '
            f'groups are the node\'s, no partition\'s'
        )
    return value


def suffix(value):
    """Return ``value`` if it is a valid manager suffix, else raise
    ValueError."""
    if not isinstance(value, str) or not SUFFIX_RE.fullmatch(value):
        raise ValueError(
            f'invalid suffix {value!r}: expected 1 to 64 of '
            'letters, digits, "_" and "-", not starting with '
            '"-"'
        )
    return value


def node_ids(value):
    """The ids of the ``node_files`` option (whitespace-separated), as a
    frozenset; ValueError naming the first that is no valid id."""
    ids = value.split()
    for node_id in ids:
        try:
            partition_id(node_id)
        except ValueError as e:
            raise ValueError(f'node_files: {e}') from None
    return frozenset(ids)
