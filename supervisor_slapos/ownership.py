"""What a partition owns, and what the node owns: the rule of names.

``P.conf`` and ``P-<suffix>.conf`` are P's files; ``P``, ``P-...`` and
``P_...`` its names; but for the ids of ``node_files``, whose files and
names are the node's. Pure: which loaded group is whose also depends on
which file declares it (``partitionview``), and what the files declare
is ``declarations``'s.
"""

import re
from dataclasses import dataclass

from supervisor_slapos.naming import PARTITION_ID_RE, SUFFIX_RE

CONF_EXTENSION = '.conf'
# slapgrid (slapos.core's slapgrid and its prerm manager): a partition
# being destroyed has group P-prerm for its prerm scripts, and this file in
# its directory while they run (slapgrid destroys it once none runs)
PRERM_SUFFIX = 'prerm'
DESTROY_WAIT_LIST = '.slapos-report-wait-service-list'
# an id holds neither "-" nor "_": what comes before the first is the id
_ID_END = re.compile(r'[-_]')


def group_name(partition_id, sfx=None):
    """The group a partition file defines: ``P`` or ``P-<suffix>``."""
    return partition_id if sfx is None else f'{partition_id}-{sfx}'


def file_name(partition_id, sfx=None):
    """The include file ``P.conf`` or ``P-<suffix>.conf``."""
    return group_name(partition_id, sfx) + CONF_EXTENSION


def partition_of_file(filename):
    """The partition id whose file ``filename`` (a basename) would be, or
    None: ``slappart1.conf`` and ``slappart1-x.conf`` are ``slappart1``'s,
    ``slappart10.conf`` is ``slappart10``'s, ``cron.ini`` nobody's."""
    if not filename.endswith(CONF_EXTENSION):
        return None
    stem = filename[: -len(CONF_EXTENSION)]
    partition_id, dash, sfx = stem.partition('-')
    if not PARTITION_ID_RE.fullmatch(partition_id):
        return None
    if dash and not SUFFIX_RE.fullmatch(sfx):
        return None
    return partition_id


def partition_of_name(name):
    """The partition id whose group or program ``name`` would be, or None:
    ``name`` is ``P``'s when it is ``P`` or starts with ``P-`` or
    ``P_``."""
    partition_id = _ID_END.split(name, maxsplit=1)[0]
    return partition_id if PARTITION_ID_RE.fullmatch(partition_id) else None


@dataclass(frozen=True)
class Ownership:
    """The rule of names (``partition_of_file``, ``partition_of_name``)
    with the node's ids: ``node_ids``, the ids of ``node_files``, whose
    files and names are the node's, as is whatever is no partition's.

    The scan ``names_of`` is the rule itself on every name that starts
    with the id (a ``str.startswith`` in C: a node has thousands of
    groups, and the rule is for the few that pass).
    """

    node_ids: frozenset = frozenset()

    def name_owner(self, name):
        """The partition that owns group or program ``name``, or None."""
        partition_id = partition_of_name(name)
        return None if partition_id in self.node_ids else partition_id

    def file_owner(self, filename):
        """The partition that owns ``filename``, or None (a node file)."""
        partition_id = partition_of_file(filename)
        return None if partition_id in self.node_ids else partition_id

    def owns_name(self, partition_id, name):
        return self.name_owner(name) == partition_id

    def names_of(self, partition_id, names):
        """Those of ``names`` (groups or programs) that ``partition_id``
        owns."""
        return [
            name
            for name in names
            if name.startswith(partition_id)
            and self.name_owner(name) == partition_id
        ]
