"""What a partition owns, and what the node owns: file names, group
names, and which loaded groups are whose.

``Ownership`` is the one rule of names (pure): ``P.conf`` and
``P-<suffix>.conf`` are P's files, ``P``, ``P-...`` and ``P_...`` its
names, but for the ids of ``node_files``, which are the node's.
``Declarations`` reads which names the files declare (cached by file)
and applies the rule to what supervisord has loaded: a loaded group with
a name of P's is P's when a file of P declares it, else the node's when
the node's configuration declares it, else P's still (its file is gone:
P's operations remove it, as ``supervisorctl update`` would). Only files
that may decide are read.
"""
import configparser
import glob
import os
import platform
import re
import time
from dataclasses import dataclass


from supervisor_slapos.internals import PLAIN_PARSER
from supervisor_slapos.naming import PARTITION_ID_RE, SUFFIX_RE

CONF_EXTENSION = '.conf'
# slapgrid (slapos.core's slapgrid and its prerm manager): a partition
# being destroyed has group P-prerm for its prerm scripts, and this file in
# its directory while they run (slapgrid destroys it once none runs)
PRERM_SUFFIX = 'prerm'
DESTROY_WAIT_LIST = '.slapos-report-wait-service-list'
# The coarsest step of a file timestamp on the filesystems supervisord's
# configuration may be on (FAT's 2 s; ext4's is the kernel's tick, a few
# ms): a file changed this close to its read is read again.
TIMESTAMP_GRANULARITY_NS = 2 * 10**9
# the headers of the sections that make process groups
HEADER_RE = re.compile(
    r'^\s*\[(program|group|eventlistener|fcgi-program):([^\]]+)\]', re.M)


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


@dataclass(frozen=True)
class Ownership:
    """Which files of ``include_dir`` and which group names belong to a
    partition, and which to the node.

    ``node_ids``: the ids of ``node_files`` (their files are the node's,
    and so are the names they would own). Whatever is not a partition's
    by ``file_owner``/``name_owner`` is the node's too. These are rules
    of names only: a loaded group is a partition's when its name is and
    a file of that partition declares it (``Declarations``).

    The scans (``names_of``, ``files_of``) run on every loaded group or
    every file of a node with thousands: a ``str.startswith`` in C on
    each, the exact rule only on the few that pass it.
    """
    node_ids: frozenset = frozenset()

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


@dataclass(frozen=True)
class Includes:
    """What the ``[include]`` section of a configuration file reads."""
    patterns: tuple    # absolute patterns

    def files(self):
        """The files the patterns match now, in supervisord's order."""
        return [f for p in self.patterns for f in sorted(glob.glob(p))]

    def directories(self):
        return {os.path.realpath(os.path.dirname(p)) for p in self.patterns}


def read_includes(configfile, expansions):
    """The ``[include]`` of ``configfile``, read as supervisord reads it."""
    here = os.path.dirname(os.path.abspath(configfile))
    parser = PLAIN_PARSER()
    try:
        parser.read(configfile)
        parser.expand_here(here)
        text = parser.saneget('include', 'files', '', expansions=dict(
            expansions, here=here, host_node_name=platform.node()))
    except (configparser.Error, ValueError):
        text = ''  # supervisord itself reports a broken configuration
    patterns = tuple(os.path.join(here, p) for p in text.split())
    return Includes(patterns)


def partition_files(include_dir, partition_id, ownership=Ownership()):
    """Sorted basenames of the files ``partition_id`` owns in
    ``include_dir``."""
    return ownership.files_of(partition_id, os.listdir(include_dir))


class Declarations:
    """Which names the files of the configuration declare
    (``declared_names``), and the one rule of what a loaded group is,
    however and whenever it was loaded (``loaded_groups``, from
    ``of_partition`` and ``of_node``).

    Each file is read again only when it may have changed (its stamp,
    ``file_stamp``, is not the one of the last read, or that read was too
    close to the file's last change: ``stamp_trusted``): the offline start scans every file once a minute while the
    master is down, and must not re-read thousands of unchanged ones.
    """

    def __init__(self, include_dir, ownership=Ownership(),
                 configfile=None, expansions=None):
        self.include_dir = include_dir
        self.ownership = ownership
        self.configfile = configfile
        self.expansions = expansions or {}
        self._files = {}  # basename in include_dir -> (stamp, names)
        self._node = {}   # path of a node file -> (stamp, names)

    def of_file(self, basename, stat=None):
        """The names file ``basename`` of ``include_dir`` declares (none
        when it is gone)."""
        return cached_names(self._files, basename,
                            os.path.join(self.include_dir, basename), stat,
                            filename=basename)

    def of_partition(self, partition_id):
        """The names the files of ``partition_id`` declare (reads only
        those): a loaded group of such a name is ``partition_id``'s."""
        names = set()
        for basename in partition_files(self.include_dir, partition_id,
                                        self.ownership):
            names.update(self.of_file(basename))
        return names

    def of_all(self):
        """``{partition_id: {basename: names}}`` for every partition file
        of ``include_dir`` (one scan; unchanged files are not read)."""
        found = {}
        with os.scandir(self.include_dir) as entries:
            for entry in entries:
                partition_id = self.ownership.file_owner(entry.name)
                if partition_id is None:
                    continue
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue
                found.setdefault(partition_id, {})[entry.name] = (
                    self.of_file(entry.name, stat))
        present = {name for files in found.values() for name in files}
        for gone in set(self._files) - present:
            del self._files[gone]
        return found

    def of_node(self):
        """The names the node declares: its main configuration and every
        file its ``[include]`` reads but the partitions' files. A loaded
        group of such a name that no file of its partition declares is
        the node's; one that no file declares at all (its partition's
        file is gone) is still its partition's, to be removed."""
        if self.configfile is None:
            return frozenset()
        include_dir = os.path.realpath(self.include_dir)
        real_dirs = {}  # one realpath per directory, not per file
        names, paths = set(), set()
        includes = read_includes(self.configfile, self.expansions)
        for path in (self.configfile, *includes.files()):
            directory = os.path.dirname(path)
            if directory not in real_dirs:
                real_dirs[directory] = os.path.realpath(directory)
            if real_dirs[directory] == include_dir and (
                    self.ownership.file_owner(os.path.basename(path))
                    is not None):
                continue  # a partition's file
            paths.add(path)
            names.update(cached_names(self._node, path, path))
        for gone in set(self._node) - paths:
            del self._node[gone]
        return names


    # the loaded groups: whose they are

    def loaded_groups(self, partition_id, groups):
        """``{name: group}`` of those of ``groups`` (supervisord's loaded
        groups) that are the partition's (reads its files only when one of
        its names is loaded, the node's only when one of those is declared
        by no file of the partition)."""
        names = self.ownership.names_of(partition_id, groups)
        if not names:
            return {}
        node = self.node_names(partition_id, groups, names)
        return {name: groups[name] for name in names if name not in node}

    def node_names(self, partition_id, groups, names=None):
        """Those of ``names`` (default: the partition's names among
        ``groups``) that are the node's: no file of the partition may
        declare them."""
        if names is None:
            names = self.ownership.names_of(partition_id, groups)
        undeclared = set(names)
        if undeclared:
            undeclared -= self.of_partition(partition_id)
        if undeclared:
            undeclared &= self.of_node()
        return undeclared

    def groups_of_file(self, partition_id, suffix, groups):
        """The partition's loaded groups that its file P.conf (``suffix``
        None) or P-<suffix>.conf declares, sorted: even a broken file's or
        one gone (its headers and its own group); group P is P.conf's
        only."""
        names = set(self.of_file(file_name(partition_id, suffix)))
        names.add(group_name(partition_id, suffix))
        if suffix is not None:
            names.discard(partition_id)
        return sorted(names & set(self.loaded_groups(partition_id, groups)))

    def partition_groups(self, groups, files, declared_only=False):
        """``{partition_id: {name: group}}`` of those of ``groups`` that are
        a partition's; ``files`` is ``of_all()``; ``declared_only``:
        without the groups whose file is gone."""
        declared, found, undeclared = {}, {}, {}
        for name, group in groups.items():
            partition_id = self.ownership.name_owner(name)
            if partition_id is None:
                continue
            if partition_id not in declared:
                declared[partition_id] = set().union(
                    *files.get(partition_id, {}).values())
            if name in declared[partition_id]:
                found.setdefault(partition_id, {})[name] = group
            elif not declared_only:
                undeclared[name] = partition_id, group
        node = self.of_node() if undeclared else ()
        for name, (partition_id, group) in undeclared.items():
            if name not in node:
                found.setdefault(partition_id, {})[name] = group
        return found


def cached_names(cache, key, path, stat=None, filename=None):
    """``declared_names`` of file ``path`` (``filename``: its
    basename in ``include_dir``), kept in ``cache[key]`` with the file's
    stamp (``file_stamp``); none when the file is gone."""
    try:
        if stat is None:
            stat = os.stat(path)
    except FileNotFoundError:
        cache.pop(key, None)
        return frozenset()
    stamp = file_stamp(stat)
    cached = cache.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    read_at = time.time_ns()
    try:
        with open(path, 'rb') as f:
            text = f.read().decode('utf-8', 'replace')
    except FileNotFoundError:
        cache.pop(key, None)
        return frozenset()
    except OSError:
        text = ''
    names = declared_names(text, filename)
    cache[key] = (stamp if stamp_trusted(stat, read_at) else None, names)
    return names


def file_stamp(stat):
    """What changes whenever a file's content may have changed: its inode,
    size, mtime, and ctime (which no one can set back: ``touch -d``,
    ``cp -p``, ``rsync -t`` and ``tar`` put back the mtime of a file
    rewritten in place, never its ctime)."""
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def stamp_trusted(stat, read_at):
    """Whether a read at ``read_at`` (ns since the epoch) of the file of
    ``stat`` can be kept until its stamp changes: not when its mtime or
    ctime is within TIMESTAMP_GRANULARITY of the read (or after it), as a
    write in the same tick of the filesystem's clock, after the read,
    would leave the stamp as it was."""
    newest = max(stat.st_mtime_ns, stat.st_ctime_ns)
    return read_at - newest > TIMESTAMP_GRANULARITY_NS
