"""Partition ids, suffixes, and the one rule of what a partition owns.

Pure functions and values: ``partition_id`` and ``suffix`` return a valid
value or raise ``ValueError``. ``Ownership`` is the one public rule of
what a partition owns (it knows the ids of ``node_files``): its methods
never raise, they answer with an owner or ``None`` (nobody, or the node).
``_file_owner`` and ``_name_owner`` are the syntax it applies first.
"""
import re
from dataclasses import dataclass

PARTITION_ID_RE = re.compile(r'[A-Za-z0-9]{1,64}')
SUFFIX_RE = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_-]{0,63}')
CONF_EXTENSION = '.conf'
# slapgrid's own files in include_dir: firewall.conf and dbus.conf
DEFAULT_NODE_FILES = 'firewall dbus'
# slapgrid (slapos.core's slapgrid and its prerm manager): a partition
# being destroyed has group P-prerm for its prerm scripts, and this file in
# its directory while they run (slapgrid destroys it once none runs)
PRERM_SUFFIX = 'prerm'
DESTROY_WAIT_LIST = '.slapos-report-wait-service-list'
# the headers of the sections that make process groups
HEADER_RE = re.compile(
    r'^\s*\[(program|group|eventlistener|fcgi-program):([^\]]+)\]', re.M)


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


def group_name(partition_id, sfx=None):
    """The group a partition file defines: ``P`` or ``P-<suffix>``."""
    return partition_id if sfx is None else f'{partition_id}-{sfx}'


def file_name(partition_id, sfx=None):
    """The include file ``P.conf`` or ``P-<suffix>.conf``."""
    return group_name(partition_id, sfx) + CONF_EXTENSION


def _file_owner(filename):
    """The partition id whose file ``filename`` (a basename) would be, or
    None: ``slappart1.conf`` and ``slappart1-x.conf`` are ``slappart1``'s,
    ``slappart10.conf`` is ``slappart10``'s, ``cron.ini`` nobody's."""
    if not filename.endswith(CONF_EXTENSION):
        return None
    stem = filename[:-len(CONF_EXTENSION)]
    partition_id, dash, sfx = stem.partition('-')
    if not PARTITION_ID_RE.fullmatch(partition_id):
        return None
    if dash and not SUFFIX_RE.fullmatch(sfx):
        return None
    return partition_id


def declared_names(text, filename=None):
    """The group and program names a file declares: those of its section
    headers, and for a partition's file ``filename`` (a basename) the
    group its name defines (``P.conf`` group ``P``, ``P-x.conf`` group
    ``P-x``; a file that no longer parses still declares them)."""
    names = {m.group(2).strip() for m in HEADER_RE.finditer(text)}
    if filename is not None and _file_owner(filename) is not None:
        names.add(filename[:-len(CONF_EXTENSION)])
    return frozenset(names)


def _name_owner(name):
    """The partition id whose group or program ``name`` would be, or None.

    A name is ``P``'s when it is ``P`` or starts with ``P-`` or ``P_``;
    since an id holds neither ``-`` nor ``_``, ``P`` is what comes before
    the first of them.
    """
    partition_id = re.split(r'[-_]', name, maxsplit=1)[0]
    return partition_id if PARTITION_ID_RE.fullmatch(partition_id) else None


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


@dataclass(frozen=True)
class Ownership:
    """Which files of ``include_dir`` and which group names belong to a
    partition, and which to the node.

    ``node_ids``: the ids of ``node_files`` (their files are the node's,
    and so are the names they would own). Whatever is not a partition's
    by ``file_owner``/``name_owner`` is the node's too. These are rules
    of names only: a loaded group is a partition's when its name is and
    a file of that partition declares it (``partitionparse.Declarations``).

    The scans (``names_of``, ``files_of``) run on every loaded group or
    every file of a node with thousands: a ``str.startswith`` in C on
    each, the exact rule only on the few that pass it.
    """
    node_ids: frozenset = frozenset()

    def is_node_id(self, partition_id):
        return partition_id in self.node_ids

    def names_of(self, partition_id, names):
        """Those of ``names`` (groups or programs) that ``partition_id``
        owns."""
        if partition_id in self.node_ids:
            return []
        prefixes = (partition_id + '-', partition_id + '_')
        return [name for name in names
                if name == partition_id or name.startswith(prefixes)]

    def owns_name(self, partition_id, name):
        return bool(self.names_of(partition_id, (name,)))

    def name_owner(self, name):
        """The partition that owns group or program ``name``, or None
        (``names_of`` for one name, without knowing ``partition_id`` first)."""
        partition_id = _name_owner(name)
        return None if partition_id in self.node_ids else partition_id

    def files_of(self, partition_id, filenames):
        """Those of ``filenames`` (basenames) that ``partition_id`` owns,
        sorted."""
        if partition_id in self.node_ids:
            return []
        prefixes = (partition_id + '.', partition_id + '-')
        return sorted(name for name in filenames
                      if name.startswith(prefixes)
                      and _file_owner(name) == partition_id)

    def file_owner(self, filename):
        """The partition that owns ``filename``, or None (a node file)."""
        partition_id = _file_owner(filename)
        return None if partition_id in self.node_ids else partition_id
