"""supervisord's re-read at the cost of what changed (``incremental_reread``).

slapgrid calls ``supervisor.reloadConfig()`` after every partition
change, and supervisord's loop waits meanwhile. Even linear
(``linearread``), a full read parses every include file and makes every
group's configs again; most of them have not changed.

``read_config`` (installed as ``ServerOptions.read_config`` by
``internals.install_read_config``) keeps, per include file, its own
section names and the ``ProcessGroupConfig`` objects made from them,
keyed on the file's (device, inode, size, mtime, ctime). A later read
runs supervisor's own ``read_config`` on a parser that holds the main
file and the include files that changed (supervisor's own glob, order,
merges, ``%(here)s``, ``[supervisord]``...) and adds, to the groups
supervisor makes of those, fresh copies of the cached groups of the
files that did not. Whenever that could differ from a full read, it does
a full read instead (and caches nothing that could mislead the next one):

- the first read of an options object (a reload makes a new one);
- what every group depends on differs from the cached read: the main
  file's directory and name, the host name, the ``ENV_`` expansions (the
  environment plus ``[supervisord] environment``), any ``[DEFAULT]``
  value, the stamps of the account files (``ACCOUNT_PATHS``);
- a section owned by two files (a section repeated in a later file
  merges into the first), a group name made twice, a ``[group:]`` naming
  a program of another file, a file included twice;
- a file with a section other than ``[program:]``, ``[group:]`` and
  ``[eventlistener:]`` (``[supervisord]``, ``[include]``...) is read
  every time, as the main file;
- a file whose stamps are within ``RECENT_NS`` of the read that saw it is
  read again next time (a same-size rewrite within the stamps'
  granularity);
- supervisor's parse-time checks are made again for the cached files: the
  directory of every log file path (``logfile_name``); users and groups
  through the account files' stamps, and only where they come from files
  (``nsswitch.conf``), else the groups naming a user are not cached;
- any error: the full read gives supervisor's own.

The groups handed out are copies: supervisord fills in AUTO log names at
``add_process_group`` and ``read_config`` reassigns each process's
environment, on the objects it was given, never on the cache.

One difference stays: after an incremental read, ``parse_warnings`` has
the warnings of the cached files after those of the files read (the same
ones; supervisord logs them only at its start, a full read).
"""

import contextlib
import gc
import os
import platform
import time

from supervisor.datatypes import process_or_group_name

from supervisor_slapos import internals
from supervisor_slapos.declarations import TIMESTAMP_GRANULARITY_NS, file_stamp
from supervisor_slapos.linearread import HERE, LinearConfigParser

OPTION = 'incremental_reread'
# the cache of one ServerOptions object, as an attribute of it
ATTRIBUTE = '_slapos_incremental_read'
RECENT_NS = TIMESTAMP_GRANULARITY_NS  # the declarations' rule
CACHEABLE_KINDS = ('program:', 'group:', 'eventlistener:')
# the files user and group names resolve through, for the nsswitch.conf
# sources in STAMPED_SOURCES (systemd's: its user records and dynamic
# users, directories whose stamps change with their entries)
NSSWITCH = '/etc/nsswitch.conf'
ACCOUNT_PATHS = (
    '/etc/passwd',
    '/etc/group',
    NSSWITCH,
    '/etc/userdb',
    '/run/userdb',
    '/run/host/userdb',
    '/usr/lib/userdb',
    '/run/systemd/dynamic-uid',
    '/var/lib/systemd/home',
)
STAMPED_SOURCES = frozenset({'files', 'compat', 'systemd'})


class Doubt(Exception):
    """The incremental read might differ from a full one."""


class Entry:
    """What one include file gave: its stamp, its own section names, the
    pristine configs of its groups, its log paths and parse warnings."""

    __slots__ = ('key', 'sections', 'groups', 'log_paths', 'warnings')

    def __init__(self, key, sections, groups, log_paths, warnings):
        self.key = key
        self.sections = sections
        self.groups = groups
        # {directory: a path there}: supervisor's check of a log path is
        # that its directory exists
        self.log_paths = {
            os.path.dirname(os.path.expanduser(path)): path
            for path in log_paths
        }
        self.warnings = warnings


class Cache:
    """The entries of one read, what all its groups depended on, and
    {section: its file} over the entries."""

    def __init__(self, fingerprint, entries):
        self.fingerprint = fingerprint
        self.entries = entries
        self.owners = {
            section: filename
            for filename, entry in entries.items()
            for section in entry.sections
        }


def read_config(options, fp):
    """``ServerOptions.read_config``, incremental (see the module)."""
    cache = vars(options).pop(ATTRIBUTE, None)
    if not isinstance(fp, str):
        return internals.PLAIN_READ_CONFIG(options, fp)
    with gc_paused():
        return read_with_cache(options, fp, cache)


def read_with_cache(options, fp, cache):
    """From ``cache`` (None: a full read), or a full read when in
    doubt."""
    if cache is not None:
        read = Read(options, cache)
        try:
            section = read.run(fp)
        except Doubt as e:
            why = str(e)
        except ValueError:
            why = 'an error, said as a full read says it'
        else:
            log(
                options,
                f'incremental re-read: {len(read.reused)} of '
                f'{len(read.keys)} include files from the cache',
            )
            return section
        log(options, f'full re-read ({why})')
    return Read(options, None).run(fp)


@contextlib.contextmanager
def gc_paused():
    """No garbage collection during the read (a fifth of a full read's
    time at 1000 partitions); supervisord's loop waits for the read
    anyway."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def log(options, message):
    """A debug line in supervisord's log (none before it has one)."""
    logger = getattr(options, 'logger', None)
    if logger is not None:
        logger.debug(f'slapos: {message}')


class Read:
    """One ``read_config``: all files read (``cache`` None) or only those
    that changed since ``cache``."""

    def __init__(self, options, cache):
        self.options = options
        self.cache = cache
        self.started = time.time_ns()
        self.file_sections = {}  # file read -> its own section names
        self.keys = {}  # include file -> its stamp
        self.reused = {}  # include file -> its cached Entry
        self.calls = []  # (section, group name, warnings, logs)
        self.log_paths = None  # the logfile_name calls of one section
        self.uncacheable = None  # why this read's result is not cached
        self.new_cache = None

    def run(self, fp):
        options = self.options
        options.process_groups_from_parser = self.process_groups
        options.processes_from_section = self.processes_from_section
        try:
            with internals.reading_with(
                self.parser_class(), self.record_log_path
            ):
                section = internals.PLAIN_READ_CONFIG(options, fp)
        finally:
            del options.process_groups_from_parser
            del options.processes_from_section
        if self.uncacheable is None and self.new_cache is not None:
            vars(options)[ATTRIBUTE] = self.new_cache
        return section

    def parser_class(self):
        read = self

        class ReadingParser(RecordingParser):
            current = read

        return ReadingParser

    # the files

    def include(self, filename):
        """True when ``filename`` is to be taken from the cache, False when
        the parser must read it."""
        try:
            key = file_key(filename)
        except OSError:
            return False  # supervisor's read passes over it
        if filename in self.keys:
            self.doubt(f'{filename} included twice')
            return False
        self.keys[filename] = key
        entry = self.cache and self.cache.entries.get(filename)
        if entry is not None and entry.key == key:
            self.reused[filename] = entry
            return True
        return False

    def file_read(self, filename, sections, defaults):
        if filename in self.file_sections:
            self.doubt(f'{filename} read twice')
        self.file_sections[filename] = list(sections)
        if defaults:
            self.doubt('[DEFAULT] values')

    def doubt(self, why):
        """This read cannot be trusted incrementally, nor cached."""
        self.uncacheable = why
        if self.cache is not None:
            raise Doubt(why)

    # the groups

    def process_groups(self, parser):
        """``process_groups_from_parser`` with the cached files' groups."""
        options = self.options
        fingerprint = self.fingerprint(parser)
        if self.cache is not None and fingerprint != self.cache.fingerprint:
            raise Doubt('what every group depends on changed')
        groups = type(options).process_groups_from_parser(options, parser)
        owners = self.owners()
        fresh = self.attribute(groups, owners)
        if self.reused:
            self.check_reused()
            for entry in self.reused.values():
                groups.extend(clone_group(group) for group in entry.groups)
                options.parse_warnings.extend(entry.warnings)
            # supervisor's groups.sort(): by priority, then name (the
            # names are told apart below)
            groups.sort(key=priority_and_name)
        names = [group.name for group in groups]
        if len(set(names)) != len(names):
            self.doubt('a group name made twice')
        if self.uncacheable is None:
            self.new_cache = Cache(fingerprint, self.entries(fresh))
        return groups

    def processes_from_section(self, parser, section, group_name, klass=None):
        options = self.options
        warned = len(options.parse_warnings)
        self.log_paths = []
        processes = type(options).processes_from_section(
            options, parser, section, group_name, klass
        )
        self.calls.append(
            (
                section,
                group_name,
                options.parse_warnings[warned:],
                self.log_paths,
            )
        )
        self.log_paths = None
        return processes

    def record_log_path(self, value, result):
        if self.log_paths is not None and isinstance(result, str):
            self.log_paths.append(value)

    def fingerprint(self, parser):
        options = self.options
        return (
            options.here,
            options.configfile,
            platform.node(),
            sorted(options.environ_expansions.items()),
            account_stamps(),
        )

    def owners(self):
        """{section: its file} for the files parsed; a section also owned
        by another file of this read is a doubt (the cached files' own
        were apart when cached)."""
        owners = {}
        cached = self.cache.owners if self.cache is not None else {}
        for filename, sections in self.file_sections.items():
            for section in sections:
                other = cached.get(section)
                if owners.setdefault(section, filename) != filename or (
                    other is not None
                    and other != filename
                    and other in self.reused
                ):
                    self.doubt(f'[{section}] in two files')
        return owners

    def attribute(self, groups, owners):
        """{include file: [(group, its calls)]} for the groups made from
        one file's sections."""
        group_sections = {}
        for section in owners:
            if section.startswith('group:'):
                try:
                    name = process_or_group_name(section.split(':', 1)[1])
                except ValueError:
                    self.doubt(f'[{section}]: a bad name')
                    continue
                group_sections[name] = section
        calls = {}
        for call in self.calls:
            calls.setdefault(call[1], []).append(call)
        fresh = {}
        for group in groups:
            made = calls.get(group.name, [])
            sections = {call[0] for call in made}
            if group.name in group_sections:
                sections.add(group_sections[group.name])
            files = {owners.get(section) for section in sections}
            if len(files) != 1 or None in files:
                self.doubt(f'group {group.name} made of several files')
                continue
            fresh.setdefault(files.pop(), []).append((group, made))
        return fresh

    def check_reused(self):
        """supervisor's parse-time checks, again, for the cached files."""
        paths = {}
        for entry in self.reused.values():
            paths.update(entry.log_paths)
        for path in paths.values():
            try:
                internals.check_log_path(path)
            except ValueError as e:
                raise Doubt(str(e)) from e

    def entries(self, fresh):
        """The cache entries for the next read."""
        entries = dict(self.reused)
        accounts_stamped = accounts_from_files()
        trusted_before = self.started - RECENT_NS
        for filename, key in self.keys.items():
            if filename in self.reused or filename not in self.file_sections:
                continue
            sections = self.file_sections[filename]
            made = fresh.get(filename, [])
            if (
                max(key[3], key[4]) >= trusted_before
                or HERE in os.path.dirname(os.path.abspath(filename))
                or not all(
                    section.startswith(CACHEABLE_KINDS) for section in sections
                )
                or (
                    not accounts_stamped
                    and any(
                        process.uid is not None
                        for group, _ in made
                        for process in group.process_configs
                    )
                )
            ):
                continue
            entries[filename] = Entry(
                key,
                tuple(sections),
                [clone_group(group) for group, _ in made],
                [
                    path
                    for _, calls in made
                    for call in calls
                    for path in call[3]
                ],
                [
                    warning
                    for _, calls in made
                    for call in calls
                    for warning in call[2]
                ],
            )
        return entries


class RecordingParser(LinearConfigParser):
    """The linear parser that passes over the files the cache holds and
    tells the read what each file it parses owns."""

    current = None  # the Read this parser serves

    def read(self, filenames, **kwargs):
        if isinstance(filenames, str):
            filenames = [filenames]
        done = []
        for filename in filenames:
            if self.current.include(filename):
                done.append(filename)
            else:
                done.extend(super().read([filename], **kwargs))
        return done

    def _read(self, fp, fpname):
        self._reading, self._merged = fpname, False
        try:
            return super()._read(fp, fpname)
        finally:
            if not self._merged:
                self.current.doubt('the parser reads otherwise')

    def _merge(self, sections, defaults, proxies):
        self._merged = True
        self.current.file_read(self._reading, sections, defaults)
        return super()._merge(sections, defaults, proxies)


def file_key(filename):
    """(device, inode, size, mtime, ctime): a file's content is the same
    while its key is, but for a rewrite within the stamps' granularity
    (``RECENT_NS``)."""
    st = os.stat(filename)
    return (st.st_dev, *file_stamp(st))


def clone_group(group):
    """A copy of ``group`` and of its process configs that supervisord may
    change without changing ``group``."""
    copy = clone(group)
    copy.process_configs = [
        clone(process) for process in group.process_configs
    ]
    return copy


def clone(config):
    copy = object.__new__(type(config))
    copy.__dict__ = config.__dict__.copy()
    return copy


def priority_and_name(config):
    return config.priority, config.name


def account_stamps():
    stamps = []
    for path in ACCOUNT_PATHS:
        try:
            st = os.stat(path)
        except OSError:
            stamps.append(None)
        else:
            stamps.append(file_stamp(st))
    return stamps


def accounts_from_files():
    """Users and groups resolve only through files (their stamps tell
    every change)."""
    try:
        with open(NSSWITCH) as f:
            lines = f.read().splitlines()
    except OSError:
        return True  # glibc's default without the file: files
    for line in lines:
        database, _, sources = line.split('#', 1)[0].partition(':')
        if database.strip() in ('passwd', 'group'):
            names = {
                source
                for source in sources.split()
                if not source.startswith('[')
            }
            if not names <= STAMPED_SOURCES:
                return False
    return True


def install(linear, incremental):
    """Make supervisord's next reads incremental when both ``linear``
    (``linear_reread``) and ``incremental`` are true, else supervisor's
    own ``read_config`` again. Returns what it did, for supervisord's
    log."""
    off = (
        None
        if linear and incremental
        else f'{OPTION} = false'
        if linear
        else 'linear_reread = false'
    )
    return internals.install_read_config(read_config, off is None, off)
