"""Parse one partition's include files exactly as supervisord would.

supervisord's full read (``ServerOptions.read_config``) feeds every include
file to one ``UnhosedConfigParser``, expands ``%(here)s`` after each file,
lets ``process_groups_from_parser`` build the group configs, then merges the
``[supervisord] environment`` into every process. Doing the same with only
the files of one partition gives configs equal to those a full re-read
would give, so ``reloadConfig()`` afterwards sees no difference, and the
cost does not depend on how many partitions the node has. What a
partition has (its files, the node's names among its loaded ones) comes
in its ``partitionview.PartitionView``.
"""

import configparser
import os
import re
import shlex
from dataclasses import dataclass

from supervisor.datatypes import (
    integer,
    list_of_strings,
    process_or_group_name,
)

from supervisor_slapos import internals
from supervisor_slapos.faults import Faults, SlaposError
from supervisor_slapos.internals import PLAIN_PARSER

MAX_FILE_SIZE = 1024 * 1024
MAX_MESSAGE = 2000
ALLOWED_KINDS = ('group', 'program')


class ConfigError(SlaposError):
    """A partition file does not parse or breaks an ownership rule: the
    BAD_CONFIG fault, ``str()`` its message."""

    def __init__(self, message):
        super().__init__(Faults.BAD_CONFIG, message)
        self.message = message

    def __str__(self):
        return self.message


@dataclass(frozen=True)
class ParsedPartition:
    """The group configs of one partition."""

    groups: tuple


def read_partition_files(view, skip=()):
    """{basename: text} of the partition's files (``view.files``), in
    include order, but those in ``skip`` (about to be rewritten: their
    content may be anything, even not text)."""
    texts = {}
    for name in view.files:
        if name in skip:
            continue
        path = view.path(name)
        try:
            with open(path, encoding='utf-8') as f:
                texts[name] = f.read(
                    MAX_FILE_SIZE + 1 if is_capped(view, name) else -1
                )
        except FileNotFoundError:
            continue
        except UnicodeDecodeError as e:
            raise ConfigError(
                f'cannot read {path}: not UTF-8 text (file: {path!r}, '
                f'line {first_undecodable_line(path)})'
            ) from e
        except OSError as e:
            raise ConfigError(f'cannot read {path}: {e}') from e
    return texts


def first_undecodable_line(path):
    """1-based line of the first byte of ``path`` that is not UTF-8."""
    with open(path, 'rb') as f:
        data = f.read(4 * MAX_FILE_SIZE)
    try:
        data.decode('utf-8')
    except UnicodeDecodeError as e:
        return data.count(b'\n', 0, e.start) + 1
    return 0


def shorten(message, limit=MAX_MESSAGE):
    """``message``, cut to ``limit`` characters: configparser quotes the
    offending lines, and a garbage file can have a million of them."""
    if len(message) <= limit:
        return message
    return message[:limit] + f'... ({len(message) - limit} more characters)'


# parsing


def section_line(text, section):
    """1-based line of ``[section]`` in ``text`` (0 when not found)."""
    header = f'[{section}]'
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith(header):
            return number
    return 0


def where(path, text, section):
    """ "(file: ..., line N)" of ``[section]``: for an error message only,
    as it scans the whole file (a check that ran it on every section
    would cost the square of a big file's size)."""
    return f'(file: {path!r}, line {section_line(text, section)})'


def check_file_sections(view, path, text, sections):
    """Refuse a section that a file of the partition of ``view`` may not
    hold (``view.node_names``: names loaded from another file than the
    partition's)."""
    partition_id, main_file = view.partition_id, view.main_file
    is_manager_file = os.path.basename(path) != main_file
    for section in sections:
        kind, _, name = section.partition(':')
        if kind not in ALLOWED_KINDS or not name:
            raise ConfigError(
                f'section [{section}] is not allowed '
                f'{where(path, text, section)}: a partition file may hold '
                f'only [group:...] and [program:...] sections'
            )
        if name in view.node_names:
            raise ConfigError(
                f'section [{section}] {where(path, text, section)} clashes '
                f'with a node group (loaded from the main supervisord '
                f'configuration or a node file)'
            )
        if not view.ownership.owns_name(partition_id, name):
            raise ConfigError(
                f'section [{section}] is not owned by partition '
                f'{partition_id!r} {where(path, text, section)}: names must '
                f'be {partition_id!r} or '
                f'start with "{partition_id}-" or "{partition_id}_"'
            )
        if is_manager_file and name == partition_id:
            raise ConfigError(
                f'section [{section}] {where(path, text, section)}: group '
                f'{partition_id!r} belongs to {main_file}, not to a '
                f'manager file'
            )
        if (
            is_manager_file
            and kind == 'program'
            and name.startswith(partition_id + '_')
        ):
            # P.conf names its programs P_<entry of etc/run or etc/service>:
            # taken here, the next startPartition could never load P.conf
            raise ConfigError(
                f'section [{section}] {where(path, text, section)}: program '
                f'names "{partition_id}_..." belong to {main_file} (its '
                f'etc/run and etc/service entries), not to a manager file; '
                f'use "{partition_id}-..."'
            )


def is_capped(view, name):
    """Whether file ``name`` of the partition of ``view`` may hold at
    most MAX_FILE_SIZE: a manager's file is, P.conf is not (it is
    generated from etc/run and etc/service and grows with them: 1,900
    entries are 1 MB)."""
    return name != view.main_file


def parse_file(path, text):
    """One file alone, parsed as ``UnhosedConfigParser.read`` would
    parse file ``path``, [DEFAULT] listed among its sections.

    configparser keeps [DEFAULT] out of sections(), and its values would
    become defaults of every section of supervisord's whole configuration,
    other partitions' included: with a default section of a name no
    header can have, it is listed, and refused like any other kind.
    """
    single = PLAIN_PARSER(default_section='\0')
    try:
        single.read_string(text, source=path)
    except configparser.Error as e:
        raise ConfigError(shorten(str(e))) from e
    return single


def add_file(parser, single, path):
    """Add to ``parser`` the sections of file ``path`` parsed alone
    (``single``, checked: no [DEFAULT], no section ``parser`` has), as
    reading the file into ``parser`` would, without parsing it again."""
    internals.add_sections(parser, single)
    for section in single.sections():
        parser.section_to_file[section] = path
    parser.expand_here(os.path.abspath(os.path.dirname(path)))


def parse_partition(options, view, texts):
    """Build the group configs of the partition of ``view`` from
    ``texts``, the contents of its files (``{basename: text}``, in
    ``view.include_dir``).

    Raises ConfigError naming the file (and line) on anything supervisord
    would refuse, or that the partition may not hold. Its cost is linear
    in the size of ``texts``.
    """
    parser = PLAIN_PARSER()
    parser.expansions = options.environ_expansions
    for name in sorted(texts):
        path = view.path(name)
        if is_capped(view, name) and len(texts[name]) > MAX_FILE_SIZE:
            raise ConfigError(f'{path} is larger than {MAX_FILE_SIZE} bytes')
        check_no_nul(path, texts[name])
        single = parse_file(path, texts[name])
        sections = single.sections()
        check_file_sections(view, path, texts[name], sections)
        check_not_defined_elsewhere(path, texts[name], sections, parser)
        add_file(parser, single, path)
    check_group_members(parser, texts)
    try:
        configs = groups_from_parser(options, parser)
    except ConfigError as e:
        raise ConfigError(f'{e}{locate(str(e), parser, texts)}') from e
    check_spawnable(configs, parser, texts)
    return ParsedPartition(groups=tuple(configs))


# What supervisor accepts at parse and fails on at spawn: refused here, so
# that no partition's file can make a spawn fail (or raise in supervisord:
# a NUL byte in a path raises ValueError where supervisor expects OSError).


def check_no_nul(path, text):
    """Refuse a NUL byte anywhere in file ``path``: no command, path or
    environment can hold one."""
    position = text.find('\0')
    if position >= 0:
        line = text.count('\n', 0, position) + 1
        raise ConfigError(
            f'a NUL byte (file: {path!r}, line {line}): no command, path or '
            f'environment can hold one (supervisor would load the file, '
            f'then fail to spawn its program)'
        )


def check_spawnable(configs, parser, texts):
    """Refuse a program whose command or environment supervisor takes at
    parse and cannot spawn: a command that does not split (shlex) into a
    program, an environment name that is empty or holds "="."""
    for group in configs:
        for process in group.process_configs:
            problem = spawn_problem(process)
            if problem is None:
                continue
            section = next(
                (
                    s
                    for s in (f'group:{group.name}', f'program:{group.name}')
                    if s in parser.section_to_file
                ),
                f'program:{group.name}',
            )
            path = parser.section_to_file.get(section, '?')
            text = texts.get(os.path.basename(path), '')
            raise ConfigError(
                f'program {process.name!r}: {problem} '
                f'{where(path, text, section)}: supervisor would load it, '
                f'then fail to spawn it'
            )


def spawn_problem(process):
    """What makes supervisor's spawn of ``process`` (a ProcessConfig)
    fail whatever the host holds, or None."""
    try:
        if not shlex.split(process.command):
            return 'its command is empty'
    except ValueError as e:
        return f'its command {process.command!r} does not parse ({e})'
    for name in process.environment or {}:
        if not name or '=' in name:
            return f'environment variable name {name!r} is illegal'
    return None


def check_not_defined_elsewhere(path, text, sections, parser):
    """Refuse a section that another file of the partition holds already:
    supervisor would merge the two, so that one file would change the
    programs of another (a manager's [program:P_x] would change P's own
    service)."""
    for section in sections:
        other = parser.section_to_file.get(section)
        if other is not None:
            raise ConfigError(
                f'section [{section}] {where(path, text, section)} is '
                f'already defined in {other!r}'
            )


def check_group_members(parser, texts):
    """A [group:...] may list only programs of its own file, and a program
    may belong to one group only: supervisor would run a program listed
    by two groups twice, once in each."""
    member_of = {}
    for section in parser.sections():
        if not section.startswith('group:'):
            continue
        path = parser.section_to_file[section]
        try:
            programs = list_of_strings(parser.saneget(section, 'programs', ''))
        except ValueError:
            continue  # supervisor's own check reports it
        text = texts[os.path.basename(path)]
        for program in programs:
            program_file = parser.section_to_file.get(f'program:{program}')
            if program_file is not None and program_file != path:
                raise ConfigError(
                    f'section [{section}] {where(path, text, section)} lists '
                    f'program {program!r} of {program_file!r}: a group may '
                    f'list only the programs of its own file'
                )
            if program in member_of:
                raise ConfigError(
                    f'section [{section}] {where(path, text, section)} lists '
                    f'program {program!r} that [{member_of[program]}] lists '
                    f'already: a program may belong to one group only'
                )
            member_of[program] = section


def locate(message, parser, texts):
    """ " (file: ..., line N)" for the first section named in ``message``
    (only the line when supervisor's message names the file already), or
    for the first section whose name or priority supervisor refuses (its
    message for those names no section)."""
    match = re.search(r"\[([^\]]+)\]|section '([^']+)'", message)
    if match is not None:
        section = match.group(1) or match.group(2)
    else:
        section = first_refused_section(parser)
    path = parser.section_to_file.get(section)
    if path is None:
        return ''
    line = section_line(texts[os.path.basename(path)], section)
    if 'file:' in message:
        return f' (line {line})'
    where = '' if match is not None else f'in section [{section}] '
    return f' {where}(file: {path!r}, line {line})'


def first_refused_section(parser):
    """The first section whose name or priority supervisor refuses."""
    for section in parser.sections():
        try:
            process_or_group_name(section.split(':', 1)[1])
            integer(parser.saneget(section, 'priority', 999))
        except ValueError:
            return section
    return None


def groups_from_parser(options, parser):
    """``process_groups_from_parser`` plus the environment merge of
    ``read_config``, leaving supervisord's parse messages as they were."""
    warnings = len(options.parse_warnings)
    try:
        return internals.groups_from_parser(options, parser)
    except Exception as e:  # supervisor raises ValueError, and worse on junk
        raise ConfigError(str(e)) from e
    finally:
        del options.parse_warnings[warnings:]
