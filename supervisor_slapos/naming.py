"""Partition ids, suffixes, and which files and groups a partition owns.

Pure functions: a string in, a normalized value or a ``ValueError`` out.
"""
import re

PARTITION_ID_RE = re.compile(r'[A-Za-z0-9]{1,64}')
SUFFIX_RE = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_-]{0,63}')
CONF_EXTENSION = '.conf'


def partition_id(value):
    """Return ``value`` if it is a valid partition id, else raise ValueError."""
    if not isinstance(value, str) or not PARTITION_ID_RE.fullmatch(value):
        raise ValueError(f'invalid partition id {value!r}: '
                         f'expected 1 to 64 letters or digits')
    return value


def suffix(value):
    """Return ``value`` if it is a valid manager suffix, else raise ValueError."""
    if not isinstance(value, str) or not SUFFIX_RE.fullmatch(value):
        raise ValueError(f'invalid suffix {value!r}: expected 1 to 64 of '
                         f'letters, digits, "_" and "-", not starting with "-"')
    return value


def group_name(pid, sfx=None):
    """The group a partition file defines: ``P`` or ``P-<suffix>``."""
    return pid if sfx is None else f'{pid}-{sfx}'


def file_name(pid, sfx=None):
    """The include file ``P.conf`` or ``P-<suffix>.conf``."""
    return group_name(pid, sfx) + CONF_EXTENSION


def file_owner(filename):
    """Return the partition id owning ``filename`` (a basename), or None.

    ``slappart1.conf`` and ``slappart1-x.conf`` are owned by ``slappart1``;
    ``slappart10.conf`` by ``slappart10``; anything else by nobody.
    """
    if not filename.endswith(CONF_EXTENSION):
        return None
    stem = filename[:-len(CONF_EXTENSION)]
    pid, dash, sfx = stem.partition('-')
    if not PARTITION_ID_RE.fullmatch(pid):
        return None
    if dash and not SUFFIX_RE.fullmatch(sfx):
        return None
    return pid


def name_owner(name):
    """Return the partition id that owns a group or program name, or None.

    A name is owned by ``P`` when it is ``P`` or starts with ``P-`` or ``P_``.
    Since a partition id holds neither ``-`` nor ``_``, the owner is the
    part before the first of them.
    """
    pid = re.split(r'[-_]', name, maxsplit=1)[0]
    return pid if PARTITION_ID_RE.fullmatch(pid) else None


def owns_name(pid, name):
    """True when group or program ``name`` belongs to partition ``pid``.

    Equivalent to ``name_owner(name) == pid`` for a valid ``pid``, without
    a regex: it runs once per loaded group in scans of thousands.
    """
    return name == pid or name.startswith(name_prefixes(pid))


def name_prefixes(pid):
    """What the names of ``pid``'s groups and programs start with, besides
    ``pid`` itself (for ``str.startswith``)."""
    return (pid + '-', pid + '_')
