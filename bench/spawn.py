"""The spawn alone: supervisor's own fork against the floor's, on this
Python.

One partition of N sleepers (slapgrid's programs; the partition root's,
or as root also another user's: ``user=`` switches) on a running
supervisord, started by supervisor's own ``startProcessGroup()`` and by
the plugin's ``startPartition()`` (the floor spawn), each on a fresh
supervisord, three times; the time goes
from the call to the fork of the last process (read from /proc
afterwards, at clock-tick resolution), and the time between two
``spawned:`` lines of supervisord's log, and supervisord's own CPU time
per process (what the load of a shared machine changes least). The
medians are printed::

    python -m bench.spawn [N]      (default: env BENCH_SPAWN_PROCESSES, 200)

First, the spawn alone (no supervisord: see ``mechanism``); with
BENCH_SPAWN_ALONE=1, only that.

``make spawn-pythons`` has a venv per Python to run it with.
"""

import datetime
import os
import statistics
import sys
import time

from bench.common import raise_fd_limit, running_node, workdir
from bench.offline import give_to
from supervisor_slapos import floorspawn
from supervisor_slapos.partitionconf import generate_partition_conf
from testbed.proc import process_start_time

REPEATS = 3
PARTITION = 'slappart0'
OWN, FLOOR = 'supervisor', 'floor'


def clock_ticks_now():
    """Now, in seconds since boot (/proc's clock for process starts)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def cpu_seconds(pid):
    """``pid``'s CPU time (user and system), in seconds."""
    with open(f'/proc/{pid}/stat', 'rb') as f:
        fields = f.read().rsplit(b')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def run_once(processes, variant, user=None):
    with workdir() as root, running_node(root) as node:
        node.make_partition(PARTITION, run=[f's{i}' for i in range(processes)])
        if user:
            give_to(root, user)
        (node.include_dir / f'{PARTITION}.conf').write_text(
            generate_partition_conf(str(node.instance_root), PARTITION)
        )
        node.start(wait=False)
        node.wait_running(timeout=300)
        cpu = cpu_seconds(node.process.pid)
        start = clock_ticks_now()
        if variant == OWN:
            node.rpc.supervisor.startProcessGroup(PARTITION, True)
        else:
            node.rpc.slapos.startPartition(PARTITION)
        cpu = cpu_seconds(node.process.pid) - cpu
        infos = node.rpc.supervisor.getAllProcessInfo()
        assert len(infos) == processes, infos[:3]
        assert all(i['statename'] == 'RUNNING' for i in infos), infos[:3]
        spawned = [
            datetime.datetime.strptime(
                line[:23], '%Y-%m-%d %H:%M:%S,%f'
            ).timestamp()
            for line in (root / 'supervisord.log').read_text().splitlines()
            if " INFO spawned: '" in line
        ]
        return (
            max(process_start_time(i['pid']) for i in infos) - start,
            (spawned[-1] - spawned[0]) / (len(spawned) - 1),
            cpu / processes,
        )


def mechanism(processes, ballast_mb=30):
    """The spawn alone, without supervisord: ``processes`` children of
    ``/bin/true`` from this Python grown by ``ballast_mb`` MB, with pipes
    on 0, 1, 2: supervisor's way (fork, then Python closes the fds up to
    1024 and execs) against ``floorspawn.SPAWN``. Returns {way: (parent
    CPU, wall time) per spawn}, in seconds."""
    ballast = [bytes(1024) for _ in range(ballast_mb * 1024)]
    stdio = os.pipe()[0], os.open(os.devnull, os.O_WRONLY), os.dup(2)
    floor = floorspawn.Floor('/bin/true', ['true'], dict(os.environ), None, -1)

    def own():
        pid = os.fork()
        if pid == 0:
            for target, fd in enumerate(stdio):
                os.dup2(fd, target)
            os.closerange(3, 1024)
            os.execve('/bin/true', ['true'], dict(os.environ))
        return pid

    def at_floor():
        return floorspawn.SPAWN(floor, stdio, 1024)[0]

    times = {}
    for way, spawn in ((OWN, own), (FLOOR, at_floor)):
        cpu, wall = time.process_time(), time.perf_counter()
        pids = [spawn() for _ in range(processes)]
        times[way] = (
            (time.process_time() - cpu) / processes,
            (time.perf_counter() - wall) / processes,
        )
        for pid in pids:
            os.waitpid(pid, 0)
    del ballast
    return times


def main():
    processes = int(
        sys.argv[1]
        if len(sys.argv) > 1
        else os.environ.get('BENCH_SPAWN_PROCESSES', 200)
    )
    raise_fd_limit()
    python = '.'.join(map(str, sys.version_info[:3]))
    alone = mechanism(processes)
    print(
        f'Python {python}, the spawn alone ({processes} x /bin/true from '
        f'a 30 MB Python): supervisor\'s way {alone[OWN][0] * 1000:.3f} ms '
        f'CPU ({alone[OWN][1] * 1000:.2f} ms wall) per spawn, the floor '
        f'{alone[FLOOR][0] * 1000:.3f} ms CPU ({alone[FLOOR][1] * 1000:.2f}'
        f' ms wall)',
        flush=True,
    )
    if os.environ.get('BENCH_SPAWN_ALONE'):
        return
    for user in [None] + (['nobody'] if os.getuid() == 0 else []):
        runs = {
            variant: [
                run_once(processes, variant, user) for _ in range(REPEATS)
            ]
            for variant in (OWN, FLOOR)
        }
        total = {v: statistics.median(r[0] for r in runs[v]) for v in runs}
        each = {
            v: statistics.median(r[1] for r in runs[v]) * 1000 for v in runs
        }
        cpu = {
            v: statistics.median(r[2] for r in runs[v]) * 1000 for v in runs
        }
        print(
            f'Python {python}, {processes} processes'
            f'{f" as {user}" if user else ""}: to the last fork, '
            f'supervisor\'s own {total[OWN]:.2f} s, the floor '
            f'{total[FLOOR]:.2f} s; between two "spawned:" lines, '
            f'{each[OWN]:.2f} ms and {each[FLOOR]:.2f} ms; supervisord\'s '
            f'CPU per process {cpu[OWN]:.2f} ms and {cpu[FLOOR]:.2f} ms',
            flush=True,
        )


if __name__ == '__main__':
    main()
