"""Run a cron.d file's ``@reboot`` entry as cron would.

cron (vixie cron, cronie, Debian's cron) reads a system crontab line as
``@reboot USER COMMAND``; in COMMAND, ``\\%`` stands for ``%``, a backslash
before any other character stays as it is (and that character is taken as
it is), and the first other ``%`` ends the command (what follows is its
standard input, with ``%`` as newlines). The command runs as
``/bin/sh -c COMMAND`` with a minimal environment; here an empty one, and
with the limits cron's own service has: under systemd, a soft limit of
1024 open files (``LimitNOFILE=1024:524288``); here ``CRON_SOFT_NOFILE``
and this process's hard limit.
"""

import resource
import subprocess

# systemd's default soft limit of open files, which cron's jobs inherit
CRON_SOFT_NOFILE = 1024


def cron_limits():
    """For ``subprocess``'s ``preexec_fn``: the job's limits as cron gives
    them (a soft limit of ``CRON_SOFT_NOFILE`` open files, the hard one
    kept)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (min(CRON_SOFT_NOFILE, hard), hard)
    )


def cron_split(command):
    """(the command cron gives to /bin/sh, its standard input)."""
    out = []
    escaped = False
    for i, char in enumerate(command):
        if escaped:
            if char == '%':
                out[-1] = '%'  # the backslash goes
            else:
                out.append(char)
            escaped = False
        elif char == '\\':
            out.append(char)
            escaped = True
        elif char == '%':
            return ''.join(out), command[i + 1 :].replace('%', '\n')
        else:
            out.append(char)
    return ''.join(out), ''


def reboot_entries(text):
    """The (user, command) of every ``@reboot`` line of a cron.d file."""
    entries = []
    for line in text.splitlines():
        fields = line.split(None, 2)
        if len(fields) == 3 and fields[0] == '@reboot':
            entries.append((fields[1], fields[2]))
    return entries


def run_reboot_entry(cron_file, timeout=120):
    """Run the file's one ``@reboot`` entry as cron would (as the current
    user: the tests run as the entry's user; cron's limits); the
    CompletedProcess."""
    [(_, command)] = reboot_entries(cron_file.read_text())
    shell_command, stdin = cron_split(command)
    return subprocess.run(
        ['/bin/sh', '-c', shell_command],
        input=stdin,
        env={},
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cron_limits,
    )
