"""Generate ``P.conf`` from a partition's ``etc/run`` and ``etc/service``.

The text is byte for byte the one slapgrid (slapos.core 1.26.1's
``Partition.writeSupervisorConfigurationFiles``) writes for the same
entries, so that slapgrid and the plugin can take turns on one node and
``reloadConfig()`` never sees a change (see README, "Drop-in
compatibility with slapgrid").
"""

import os
import pwd
import re
from dataclasses import dataclass

from supervisor_slapos.ownership import group_name

RUN_DIR = os.path.join('etc', 'run')
SERVICE_DIR = os.path.join('etc', 'service')
WATCHDOG_MARK = '-on-watch'

# Characters that would break the generated file or supervisor's parser:
# "," separates group members, ";" and "#" start comments, "%" expands,
# " ", ":" and "/" are refused in process names.
ENTRY_NAME_RE = re.compile(r'[A-Za-z0-9_.+@=-]+')

# slapgrid's templates/group_partition_supervisord.conf.in
GROUP_TEMPLATE = """\
[group:{group}]
programs={programs}
"""

# a blank line, then slapgrid's templates/program_partition_supervisord.conf.in
PROGRAM_TEMPLATE = """
[program:{program_id}]
directory={directory}
command={command}
process_name={process_name}
autostart=false
autorestart=false
startsecs=0
startretries=0
exitcodes=0
stopsignal=TERM
stopwaitsecs=60
stopasgroup=true
killasgroup=true
user={uid}
group={gid}
serverurl=AUTO
redirect_stderr=true
stdout_logfile={directory}/.{program_id}.log
stdout_logfile_maxbytes=100KB
stdout_logfile_backups=1
stderr_logfile={directory}/.{program_id}.log
stderr_logfile_maxbytes=100KB
stderr_logfile_backups=1
environment=USER="{user}",LOGNAME="{user}",HOME="{home}"
"""

EMPTY_TEMPLATE = """\
; {partition_id} is started but has no services
; (no executable in {run} nor in {service}).
"""


@dataclass(frozen=True)
class Program:
    """One service of a partition, as it appears in ``P.conf``."""

    program_id: str
    process_name: str
    command: str


@dataclass(frozen=True)
class Owner:
    """Who the partition's processes run as: the owner of its directory."""

    uid: int
    gid: int
    user: str
    home: str

    @classmethod
    def of_path(cls, path):
        """The owner of ``path``, named and homed by its passwd entry as
        slapgrid does; a uid without one (where slapgrid fails) is named
        by its number, at home in ``path``."""
        st = os.stat(path)
        try:
            record = pwd.getpwuid(st.st_uid)
            user, home = record.pw_name, record.pw_dir
        except KeyError:
            user, home = str(st.st_uid), path
        return cls(st.st_uid, st.st_gid, user, home)


def executables(directory):
    """Sorted names of the executable files in ``directory`` (may not exist).

    Names that cannot stand in a supervisor config are left out.
    """
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [
        e.name
        for e in entries
        if ENTRY_NAME_RE.fullmatch(e.name)
        and e.is_file()
        and os.access(e.path, os.X_OK)
    ]


def partition_programs(partition_dir, partition_id):
    """The programs of partition ``partition_id`` whose directory is
    ``partition_dir``.

    An entry in both etc/run and etc/service is one program: the service,
    in the run entry's place, as slapgrid does.
    """
    programs = {}
    for subdir, mark in ((RUN_DIR, ''), (SERVICE_DIR, WATCHDOG_MARK)):
        directory = os.path.join(partition_dir, subdir)
        for name in executables(directory):
            programs[name] = Program(
                program_id=f'{partition_id}_{name}',
                process_name=name + mark,
                command=os.path.join(directory, name),
            )
    return list(programs.values())


def render_partition_conf(partition_id, partition_dir, programs, owner):
    """The text of ``P.conf``."""
    if not programs:
        return EMPTY_TEMPLATE.format(
            partition_id=partition_id, run=RUN_DIR, service=SERVICE_DIR
        )
    parts = [
        GROUP_TEMPLATE.format(
            group=group_name(partition_id),
            programs=','.join(p.program_id for p in programs),
        )
    ]
    for program in programs:
        parts.append(
            PROGRAM_TEMPLATE.format(
                program_id=program.program_id,
                directory=partition_dir,
                command=program.command,
                process_name=program.process_name,
                uid=owner.uid,
                gid=owner.gid,
                user=owner.user,
                home=owner.home,
            )
        )
    return ''.join(parts)


def generate_partition_conf(instance_root, partition_id):
    """Read ``<instance_root>/P`` and return the text of ``P.conf``."""
    partition_dir = os.path.join(instance_root, partition_id)
    return render_partition_conf(
        partition_id,
        partition_dir,
        partition_programs(partition_dir, partition_id),
        Owner.of_path(partition_dir),
    )
