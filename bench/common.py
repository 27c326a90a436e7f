"""What every benchmark shares: a loaded node, timing, results, clean-up."""

import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import supervisor

from supervisor_slapos.partitionconf import generate_partition_conf
from testbed import stacks
from testbed.cron import cron_limits
from testbed.node import SupervisorNode

PROCESSES_PER_PARTITION = 2
RUN_ENTRIES = ('a', 'b')
# Kept out of the loaded partitions' names (p0, p1, ...).
SPARE_PARTITION = 'bench'


# results


@dataclass
class Row:
    """One line of the results table.

    ``kind`` says how to read the ratio: ``speedup`` is baseline / plugin
    ("x faster"), ``relative`` is plugin / baseline. ``stack`` names the
    Python, slapos.core and supervisor the row was measured on
    (:func:`stack_label`; filled by ``python -m bench`` when empty).
    """

    benchmark: str
    n: int
    metric: str
    plugin: float
    baseline: float = None
    unit: str = 'ms'
    kind: str = 'speedup'
    note: str = ''
    stack: str = ''

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
    # the machine's 1-minute load average, sampled while it ran
    load: list = field(default_factory=list)
    # which run, when a report joins several of one benchmark and stack
    run: str = ''


# stacks

# what a stack's own Python says of itself (Python 3.9's importlib.metadata
# does not see the eggs of a buildout's sys.path: then the PKG-INFO of the
# egg the module was imported from)
_VERSIONS = """\
import importlib, importlib.metadata, os, sys
def version(name, module):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        path = importlib.import_module(module).__file__
        egg = path[:path.index('.egg' + os.sep) + 4]
        with open(os.path.join(egg, 'EGG-INFO', 'PKG-INFO')) as f:
            for line in f:
                if line.startswith('Version:'):
                    return line.split()[1]
print(sys.version.split()[0], version('slapos.core', 'slapos.grid'),
      version('supervisor', 'supervisor'))
"""


def stack_label(stack):
    """``name (Python X, slapos.core Y, supervisor Z)`` of a
    testbed.stacks.Stack, as its own Python reports them."""
    result = subprocess.run(
        stack.code_command(_VERSIONS),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode:
        return f'{stack.name} (versions unknown: {result.stderr[-200:]})'
    python, slapos, supervisor = result.stdout.split()
    return (
        f'{stack.name} (Python {python}, slapos.core {slapos}, '
        f'supervisor {supervisor})'
    )


def bench_stack():
    """The stack of a benchmark that runs supervisord in this Python."""
    return stacks.newest()


def label(outcome, stack):
    """Name ``stack`` on every row of ``outcome`` without one and in front
    of its targets."""
    text = stack_label(stack)
    for row in outcome.rows:
        row.stack = row.stack or text
    for target in outcome.targets:
        target.description = f'{stack.name}: {target.description}'
    return outcome


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average every ``interval`` seconds into
    ``samples`` until stopped (a context manager)."""

    def __init__(self, samples, interval=10):
        super().__init__(daemon=True)
        self.samples = samples
        self.interval = interval
        self.stopping = threading.Event()

    def run(self):
        while True:
            self.samples.append(os.getloadavg()[0])
            if self.stopping.wait(self.interval):
                return

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.join()
        self.samples.append(os.getloadavg()[0])


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
        memory = f'{memory / 2**30:.1f} GiB'
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


def measure(action, reps, budget=None, setup=None, teardown=None, min_reps=3):
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
        if (
            budget is not None
            and len(samples) >= min_reps
            and sum(samples) > budget
        ):
            break
    return samples


# nodes


class BenchNode(SupervisorNode):
    """A SupervisorNode that fills itself with loaded partitions; with
    ``plugin=False`` a plain supervisord (the baseline).

    ``stack`` (a testbed.stacks.Stack; default: this Python) is the one
    whose Python runs supervisord, with its eggs first on ``sys.path``
    (``Stack.module_command``), and the listener (``python -m``, as the
    setup writes it); with ``cron_limit`` supervisord starts with the
    limits cron gives its jobs (a soft limit of 1024 open files:
    testbed.cron.cron_limits)."""

    def __init__(self, root, stack=None, cron_limit=False, **kwargs):
        self.stack = stack
        self.cron_limit = cron_limit
        super().__init__(root, **kwargs)

    def write_config(self):
        super().write_config()
        if self.stack is not None and self.listener is not None:
            text = self.config.read_text()
            self.config.write_text(
                text.replace(
                    f'command = {sys.executable} -m '
                    f'supervisor_slapos.listener',
                    f'command = {self.stack.python} -m '
                    f'supervisor_slapos.listener',
                )
            )

    def start(self, wait=True, module='supervisor.supervisord'):
        if self.stack is None and not self.cron_limit:
            return super().start(wait, module)
        stack = self.stack or bench_stack()
        self.process = subprocess.Popen(
            [
                *self.command_prefix,
                *stack.module_command(module, '-n', '-c', self.config),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, **self.environ},
            cwd=self.cwd,
            preexec_fn=cron_limits if self.cron_limit else None,
        )
        if wait:
            self.wait_running()
        return self

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

    def start_populated(self, count, timeout=300):
        """``populate(count)``, then start and wait until supervisord
        runs (its first read of 2N programs takes a while); return the
        partition ids."""
        pids = self.populate(count)
        self.start(wait=False)
        self.wait_running(timeout=timeout)
        return pids


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
