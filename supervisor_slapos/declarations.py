"""Which names the files declare, read again only when they change.

``Declarations`` keeps, for ``include_dir``, which file is whose (one
listing, kept while the directory's stamp says no entry came or went)
and the names each file declares (``declared_names``, kept by file with
its stamp). The offline start scans every file once a minute while the
master is down, and a partition's status must cost what the partition
has: neither re-reads thousands of unchanged files, nor lists them.
"""

import os
import re
import time

from supervisor_slapos.ownership import (
    CONF_EXTENSION,
    Ownership,
    partition_of_file,
)

# The coarsest step of a file timestamp on the filesystems supervisord's
# configuration may be on (FAT's 2 s; ext4's is the kernel's tick, a few
# ms): a file changed this close to its read is read again.
TIMESTAMP_GRANULARITY_NS = 2 * 10**9
# the headers of the sections that make process groups
HEADER_RE = re.compile(
    r'^\s*\[(program|group|eventlistener|fcgi-program):([^\]]+)\]', re.M
)


def declared_names(text, filename=None):
    """The group and program names a file declares: those of its section
    headers, and for a partition's file ``filename`` (a basename) the
    group its name defines (``P.conf`` group ``P``, ``P-x.conf`` group
    ``P-x``; a file that no longer parses still declares them)."""
    names = {m.group(2).strip() for m in HEADER_RE.finditer(text)}
    if filename is not None and partition_of_file(filename) is not None:
        names.add(filename[: -len(CONF_EXTENSION)])
    return frozenset(names)


class Declarations:
    """The partitions' files of ``include_dir`` and the names they
    declare.

    Each file is read again only when it may have changed (its stamp,
    ``file_stamp``, is not the one of the last read, or that read was too
    close to the file's last change: ``stamp_trusted``); the directory is
    listed again only when its own stamp says so, the same way.
    """

    def __init__(self, include_dir, ownership=Ownership()):
        self.include_dir = include_dir
        self.ownership = ownership
        self._files = {}  # basename in include_dir -> (stamp, names)
        self._listing = None  # (stamp of include_dir, {partition: names})

    def files_of(self, partition_id):
        """Sorted basenames of the files ``partition_id`` owns in
        ``include_dir`` (one stat of the directory while it is
        unchanged)."""
        stat = os.stat(self.include_dir)
        stamp = file_stamp(stat)
        if self._listing is None or self._listing[0] != stamp:
            read_at = time.time_ns()
            by_partition = {}
            for name in sorted(os.listdir(self.include_dir)):
                partition = self.ownership.file_owner(name)
                if partition is not None:
                    by_partition.setdefault(partition, []).append(name)
            trusted = stamp_trusted(stat, read_at)
            self._listing = (stamp if trusted else None, by_partition)
        return list(self._listing[1].get(partition_id, ()))

    def of_file(self, basename, stat=None):
        """The names file ``basename`` of ``include_dir`` declares (none
        when it is gone)."""
        return cached_names(
            self._files,
            basename,
            os.path.join(self.include_dir, basename),
            stat,
            filename=basename,
        )

    def of_files(self, basenames):
        """``{basename: names}`` of files ``basenames`` of
        ``include_dir`` (a partition's: a loaded group of such a name is
        the partition's)."""
        return {basename: self.of_file(basename) for basename in basenames}

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
                found.setdefault(partition_id, {})[entry.name] = self.of_file(
                    entry.name, stat
                )
        present = {name for files in found.values() for name in files}
        for gone in set(self._files) - present:
            del self._files[gone]
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
    rewritten in place, never its ctime). For a directory: whenever an
    entry came, went or was renamed."""
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def stamp_trusted(stat, read_at):
    """Whether a read at ``read_at`` (ns since the epoch) of the file of
    ``stat`` can be kept until its stamp changes: not when its mtime or
    ctime is within TIMESTAMP_GRANULARITY of the read (or after it), as a
    write in the same tick of the filesystem's clock, after the read,
    would leave the stamp as it was."""
    newest = max(stat.st_mtime_ns, stat.st_ctime_ns)
    return read_at - newest > TIMESTAMP_GRANULARITY_NS
