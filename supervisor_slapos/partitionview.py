"""A partition as one operation sees it: its files in ``include_dir``,
the names they declare, its loaded groups, and the node's names among
them, gathered once and handed down whole (to ``partitionparse`` to read
and parse, to ``groupapply`` to apply).

The rule of what a loaded group is, however and whenever it was loaded:
a loaded group with a name of P's (``ownership``) is P's when a file of
P declares it, else the node's when the node's configuration declares it
(``nodeconfig``), else P's still (its file is gone: P's operations remove
it, as ``supervisorctl update`` would). Only files that may decide are
read (``declarations``).
"""

import os
import weakref
from dataclasses import dataclass, field

from supervisor_slapos import internals
from supervisor_slapos.declarations import Declarations, declared_names
from supervisor_slapos.nodeconfig import NodeConfig
from supervisor_slapos.ownership import Ownership, file_name, group_name


@dataclass(frozen=True)
class PartitionView:
    """Partition ``partition_id`` as an operation found it.

    ``files``: its files in ``include_dir`` (sorted basenames);
    ``loaded``: its loaded groups (``{name: group}``); ``node_names``:
    the loaded names of its form that are the node's (no file of the
    partition declares them, the node's configuration does);
    ``declared``: ``{basename: names}`` its files declare (read only when
    one of its names is loaded).
    """

    partition_id: str
    include_dir: str
    files: tuple = ()
    loaded: dict = field(default_factory=dict)
    node_names: frozenset = frozenset()
    ownership: Ownership = Ownership()
    declared: dict = field(default_factory=dict)

    def path(self, basename):
        return os.path.join(self.include_dir, basename)

    @property
    def main_file(self):
        """``P.conf``."""
        return file_name(self.partition_id)

    def groups_of_file(self, suffix):
        """The loaded groups that file P.conf (``suffix`` None) or
        P-<suffix>.conf declares, sorted: even a broken file's (its
        headers and its own group) or one gone (its own group); group P
        is P.conf's only."""
        names = set(
            self.declared.get(file_name(self.partition_id, suffix), ())
        )
        names.add(group_name(self.partition_id, suffix))
        if suffix is not None:
            names.discard(self.partition_id)
        return sorted(names & set(self.loaded))


class LoadedNames:
    """The names of supervisord's loaded groups, by partition: kept in
    step with every group supervisord adds or removes
    (``internals.follow_groups``), so that one partition's groups are
    found without a scan of every group; a scan when that cannot be."""

    def __init__(self, supervisord, ownership):
        self.supervisord = supervisord
        self.ownership = ownership
        self.reason = internals.follow_groups(
            supervisord, self.added, self.removed
        )
        self._index()

    def _index(self):
        """Index every loaded group (``process_groups`` is a new dict at
        each ``supervisord.run()``)."""
        self._groups = self.supervisord.process_groups
        self._names = {}
        for name in self._groups:
            self.added(name)

    def added(self, name):
        partition_id = self.ownership.name_owner(name)
        if partition_id is not None:
            self._names.setdefault(partition_id, set()).add(name)

    def removed(self, name):
        names = self._names.get(self.ownership.name_owner(name))
        if names is not None:
            names.discard(name)

    def of(self, partition_id):
        """The loaded names of ``partition_id``'s form."""
        groups = self.supervisord.process_groups
        if self.reason is not None:
            return self.ownership.names_of(partition_id, groups)
        if groups is not self._groups:
            self._index()
        return [
            name
            for name in self._names.get(partition_id, ())
            if name in groups
        ]


_LOADED = weakref.WeakKeyDictionary()


def loaded_names(supervisord, ownership):
    """The one ``LoadedNames`` of ``supervisord`` (it makes an RPC
    interface per HTTP server; a reload makes a new supervisord)."""
    loaded = _LOADED.get(supervisord)
    if loaded is None:
        loaded = _LOADED[supervisord] = LoadedNames(supervisord, ownership)
    return loaded


class Partitions:
    """The partitions of one supervisord, as views, and the rule of whose
    a loaded group is."""

    def __init__(
        self,
        supervisord,
        include_dir,
        ownership=Ownership(),
        configfile=None,
        expansions=None,
    ):
        self.supervisord = supervisord
        self.include_dir = include_dir
        self.ownership = ownership
        self.declarations = Declarations(include_dir, ownership)
        self.node = NodeConfig(configfile, expansions, include_dir, ownership)
        self._loaded = loaded_names(supervisord, ownership)

    def view(self, partition_id, texts=None):
        """The partition's view now: one stat of ``include_dir`` (a
        listing when it changed), the partition's files read only when
        one of its names is loaded, the node's only when one of those is
        declared by no file of the partition. With ``texts`` (``{basename:
        text}``, all its files): once its files are those, just written."""
        names = self._loaded.of(partition_id)
        if texts is not None:
            files = tuple(sorted(texts))
            by_file = {
                basename: declared_names(text, basename)
                for basename, text in texts.items()
            }
        else:
            files = tuple(self.declarations.files_of(partition_id))
            by_file = self.declarations.of_files(files) if names else {}
        undeclared = set(names).difference(*by_file.values())
        node = frozenset(undeclared & self.node.names() if undeclared else ())
        groups = self.supervisord.process_groups
        return PartitionView(
            partition_id,
            self.include_dir,
            files,
            {name: groups[name] for name in names if name not in node},
            node,
            self.ownership,
            by_file,
        )

    def partition_groups(self, files, declared_only=False):
        """``{partition_id: {name: group}}`` of the loaded groups that are
        a partition's; ``files`` is ``declarations.of_all()``;
        ``declared_only``: without the groups whose file is gone."""
        declared, found, undeclared = {}, {}, {}
        for name, group in self.supervisord.process_groups.items():
            partition_id = self.ownership.name_owner(name)
            if partition_id is None:
                continue
            if partition_id not in declared:
                declared[partition_id] = set().union(
                    *files.get(partition_id, {}).values()
                )
            if name in declared[partition_id]:
                found.setdefault(partition_id, {})[name] = group
            elif not declared_only:
                undeclared[name] = partition_id, group
        node = self.node.names() if undeclared else ()
        for name, (partition_id, group) in undeclared.items():
            if name not in node:
                found.setdefault(partition_id, {})[name] = group
        return found
