"""Generate ``P.conf`` from a partition's ``etc/run`` and ``etc/service``.

The text is the one slapgrid writes (see SPEC), so that a node can move
between slapgrid and this plugin without restarting anything.
"""
import os
import pwd
import re
from dataclasses import dataclass

from supervisor_slapos import naming

RUN_DIR = os.path.join('etc', 'run')
SERVICE_DIR = os.path.join('etc', 'service')
WATCHDOG_MARK = '-on-watch'

# Characters that would break the generated file or supervisor's parser:
# "," separates group members, ";" and "#" start comments, "%" expands,
# " ", ":" and "/" are refused in process names.
ENTRY_NAME_RE = re.compile(r'[A-Za-z0-9_.+@=-]+')

GROUP_TEMPLATE = """\
[group:{group}]
programs={programs}
"""

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
{owner}serverurl=AUTO
redirect_stderr=true
stdout_logfile={directory}/.{program_id}.log
stdout_logfile_maxbytes=100KB
stdout_logfile_backups=1
"""

OWNER_TEMPLATE = """\
user={uid}
group={gid}
environment=USER="{user}",LOGNAME="{user}",HOME="{home}"
"""

EMPTY_TEMPLATE = """\
; {pid} is started but has no services
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
    """Who the partition's processes run as (only when supervisord is root)."""
    uid: int
    gid: int
    user: str
    home: str

    @classmethod
    def of_path(cls, path):
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
    return [e.name for e in entries
            if ENTRY_NAME_RE.fullmatch(e.name)
            and e.is_file() and os.access(e.path, os.X_OK)]


def partition_programs(partition_dir, pid):
    """The programs of partition ``pid`` whose directory is ``partition_dir``.

    An entry in both etc/run and etc/service is one program: the service,
    in the run entry's place, as slapgrid does.
    """
    programs = {}
    for subdir, mark in ((RUN_DIR, ''), (SERVICE_DIR, WATCHDOG_MARK)):
        directory = os.path.join(partition_dir, subdir)
        for name in executables(directory):
            programs[name] = Program(program_id=f'{pid}_{name}',
                                     process_name=name + mark,
                                     command=os.path.join(directory, name))
    return list(programs.values())


def render_partition_conf(pid, partition_dir, programs, owner=None):
    """The text of ``P.conf``; ``owner`` adds user=/group=/environment=."""
    if not programs:
        return EMPTY_TEMPLATE.format(pid=pid, run=RUN_DIR, service=SERVICE_DIR)
    owner_text = '' if owner is None else OWNER_TEMPLATE.format(
        uid=owner.uid, gid=owner.gid, user=owner.user, home=owner.home)
    parts = [GROUP_TEMPLATE.format(
        group=naming.group_name(pid),
        programs=','.join(p.program_id for p in programs))]
    for program in programs:
        parts.append(PROGRAM_TEMPLATE.format(
            program_id=program.program_id, directory=partition_dir,
            command=program.command, process_name=program.process_name,
            owner=owner_text))
    return ''.join(parts)


def generate_partition_conf(instance_root, pid, as_root=None):
    """Read ``<instance_root>/P`` and return the text of ``P.conf``.

    ``as_root`` (default: whether this process is root) adds the owner
    of the partition directory as the processes' user.
    """
    partition_dir = os.path.join(instance_root, pid)
    if as_root is None:
        as_root = os.geteuid() == 0
    owner = Owner.of_path(partition_dir) if as_root else None
    return render_partition_conf(
        pid, partition_dir, partition_programs(partition_dir, pid), owner)
