"""What every benchmark shares: a loaded node, timing, results, clean-up."""
import contextlib
import os
import platform
import re
import shutil
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import supervisor

from supervisor_slapos.partitionconf import generate_partition_conf
from tests.node import SupervisorNode

PROCESSES_PER_PARTITION = 2
RUN_ENTRIES = ('a', 'b')
# Kept out of the loaded partitions' names (p0, p1, ...).
SPARE_PARTITION = 'bench'


# results

@dataclass
class Row:
    """One line of the results table.

    ``kind`` says how to read the ratio: ``speedup`` is baseline / plugin
    ("x faster"), ``relative`` is plugin / baseline.
    """
    benchmark: str
    n: int
    metric: str
    plugin: float
    baseline: float = None
    unit: str = 'ms'
    kind: str = 'speedup'
    note: str = ''

    @property
    def ratio(self):
        if self.baseline is None or not self.plugin or not self.baseline:
            return None
        if self.kind == 'speedup':
            return self.baseline / self.plugin
        return self.plugin / self.baseline


@dataclass
class Target:
    description: str
    figure: str
    met: bool
    why: str = ''


@dataclass
class Outcome:
    """What one benchmark gives back; ``sections`` are ``(title,
    markdown)`` pairs, each a section of its own in the report."""
    name: str
    rows: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    sections: list = field(default_factory=list)


def find_row(rows, n, metric):
    for row in rows:
        if row.n == n and row.metric == metric:
            return row
    return None


# the machine

def machine():
    """{label: value} describing where the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
        memory = f'{memory / 2 ** 30:.1f} GiB'
    except (ValueError, OSError):
        memory = '?'
    return {
        'cpu': cpu,
        'cores': str(os.cpu_count()),
        'memory': memory,
        'os': f'{platform.system()} {platform.release()}',
        'python': platform.python_version(),
        'supervisor': supervisor_version(),
    }


def supervisor_version():
    try:
        from importlib.metadata import version
        return version('supervisor')
    except Exception:  # metadata missing: an unpacked checkout
        return getattr(supervisor, '__version__', '?')


# timing

def median_ms(samples):
    return statistics.median(samples) * 1000.0


def measure(action, reps, budget=None, setup=None, teardown=None,
            min_reps=3):
    """Time ``action()`` ``reps`` times (``setup``/``teardown`` around
    each, untimed); stop early once ``budget`` seconds of timed work are
    spent and ``min_reps`` are done. Return the list of durations (s)."""
    samples = []
    for _ in range(reps):
        if setup is not None:
            setup()
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
        if teardown is not None:
            teardown()
        if (budget is not None and len(samples) >= min_reps
                and sum(samples) > budget):
            break
    return samples


# nodes

class BenchNode(SupervisorNode):
    """A SupervisorNode that can also run without the plugin (plain
    supervisord, the baseline)."""

    def __init__(self, root, plugin=True, **kwargs):
        self.plugin = plugin
        super().__init__(root, **kwargs)

    def write_config(self):
        super().write_config()
        text = self.config.read_text()
        if not self.plugin:
            text = remove_sections(text, ('rpcinterface:slapos',
                                          'ctlplugin:slapos'))
        self.config.write_text(text)

    def populate(self, count, autostart=False, first=0):
        """Create partitions p<first>..p<first+count-1>, each with two
        sleeper services, and write their P.conf directly (they are
        started partitions; their processes start only if ``autostart``)."""
        pids = []
        for index in range(first, first + count):
            pid = f'p{index}'
            self.make_partition(pid, run=list(RUN_ENTRIES))
            text = generate_partition_conf(str(self.instance_root), pid)
            if autostart:
                text = text.replace('autostart=false', 'autostart=true')
            (self.include_dir / f'{pid}.conf').write_text(text)
            pids.append(pid)
        return pids

    def cleanup(self):
        """Kill supervisord and everything in its session, even when it
        no longer answers, then forget it."""
        if self.process is None:
            return
        kill_session(self.process.pid)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self.process.stderr.close()
        self.process = None


def remove_sections(text, names):
    """``text`` (an ini file) without the sections called ``names``."""
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        match = re.match(r'\s*\[([^\]]+)\]', line)
        if match:
            skipping = match.group(1).strip() in names
        if not skipping:
            kept.append(line)
    return ''.join(kept)


def session_members(sid):
    """Pids of the processes whose session is ``sid`` (from /proc)."""
    pids = []
    for entry in os.scandir('/proc'):
        if not entry.name.isdigit():
            continue
        try:
            with open(f'/proc/{entry.name}/stat', 'rb') as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b')') + 2:].split()
        if int(fields[3]) == sid:  # state ppid pgrp session
            pids.append(int(entry.name))
    return pids


def kill_session(sid):
    """SIGKILL every process of session ``sid``: supervisord (started in a
    new session) and all it spawned, which keep its session."""
    for _ in range(5):
        pids = session_members(sid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def process_start_time(pid):
    """When ``pid`` was forked, in seconds since boot (clock ticks)."""
    with open(f'/proc/{pid}/stat', 'rb') as f:
        stat = f.read()
    fields = stat[stat.rfind(b')') + 2:].split()
    return int(fields[19]) / os.sysconf('SC_CLK_TCK')


def rss_kib(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise ValueError(f'no VmRSS for {pid}')


@contextlib.contextmanager
def workdir(prefix='bn'):
    """A short temporary directory under /tmp (unix socket paths are
    limited to about 100 bytes), removed afterwards."""
    path = tempfile.mkdtemp(prefix=prefix, dir='/tmp')
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def running_node(root, **kwargs):
    """A BenchNode made in ``root``; killed with all its processes at the
    end, whatever happens."""
    node = BenchNode(root, **kwargs)
    try:
        yield node
    finally:
        node.cleanup()


def raise_fd_limit():
    """Raise this process's soft fd limit to its hard limit (inherited by
    the supervisord it starts: 2000 processes need several fds each)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else 65536
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
