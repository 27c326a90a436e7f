"""``python -m bench``: run the benchmarks, write BENCHMARKS.md."""
import argparse
import os
import shlex
import sys
import time

from bench import fleet, memory, offline, report, reread, scoped, status
from testbed import stacks

BENCHMARKS = {
    'scoped': lambda args: scoped.run(args.sizes),
    'status': lambda args: status.run(args.sizes),
    'offline': lambda args: offline.run(args.sizes),
    'sync': lambda args: _sync().run(args.sync_instances),
    'memory': lambda args: memory.run(args.sizes),
    'fleet': lambda args: fleet.run(),
    'reread': lambda args: reread.run(args.sizes),
    'reboot': lambda args: _reboot().run(args.reboot_sizes,
                                         args.reboot_conditions),
}


def _sync():
    from bench import sync  # needs testbed/slapos_master.py and slapos.core
    return sync


def _reboot():
    from bench import reboot  # needs slapos.core's slapgrid
    return reboot


def sizes(text):
    try:
        values = [int(v) for v in text.replace(',', ' ').split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'not a list of sizes: {text!r}')
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f'sizes must be >= 1: {text!r}')
    return sorted(set(values))


def chosen(text, known, what, at_least_one=False):
    """The names of ``known`` listed in ``text`` (commas or spaces), in
    ``known``'s order; ArgumentTypeError for an unknown one (or for none,
    with ``at_least_one``)."""
    listed = [v for v in text.replace(',', ' ').split() if v]
    unknown = sorted(set(listed) - set(known))
    if unknown or (at_least_one and not listed):
        raise argparse.ArgumentTypeError(
            f'unknown {what} {unknown or text!r}; known: {", ".join(known)}')
    return [name for name in known if name in listed]


def names(text):
    return chosen(text, list(BENCHMARKS), 'benchmark(s)')


def conditions(text):
    return chosen(text, _reboot().CONDITIONS, 'master condition(s)',
                  at_least_one=True)


def stack_name(text):
    if text not in stacks.NAMES:
        raise argparse.ArgumentTypeError(
            f'unknown stack {text!r}; known: {", ".join(stacks.NAMES)}')
    return text


def option(parser, name, convert, default, help, shown=None):
    """``--name``, from env BENCH_<NAME> or else ``default`` (text, both
    converted by ``convert``); the help says both."""
    env = 'BENCH_' + name.upper().replace('-', '_')
    parser.add_argument(
        f'--{name}', type=convert,
        default=convert(os.environ.get(env, default)),
        help=f'{help}; env {env}; default {shown or default}')


def conditions(text):
    known = _reboot().CONDITIONS
    chosen = [v for v in text.replace(',', ' ').split() if v]
    unknown = sorted(set(chosen) - set(known))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f'unknown master condition(s) {unknown or text!r}; known: '
            f'{", ".join(known)}')
    return [name for name in known if name in chosen]


def make_parser():
    parser = argparse.ArgumentParser(
        prog='python -m bench', description=__doc__.strip())
    option(parser, 'sizes', sizes, '10,100,1000',
           'numbers of partitions (2 processes each)')
    option(parser, 'only', names, ','.join(BENCHMARKS),
           f'benchmarks to run, among {", ".join(BENCHMARKS)}', shown='all')
    option(parser, 'sync-instances', int, '200',
           'instances of the sync benchmark')
    option(parser, 'reboot-sizes', sizes, '3,50',
           'started partitions of the reboot benchmark (and one stopped)',
           shown='3,50 (its buildout time and cron delay: env '
           'BENCH_REBOOT_BUILDOUT_SECONDS, default 2, and '
           'BENCH_REBOOT_CRON_DELAY, default 30)')
    option(parser, 'reboot-conditions', conditions, 'up,refusing,hanging',
           'master conditions of the reboot benchmark, among up, refusing, '
           'hanging', shown='all (with the master hanging, slapgrid alone '
           'takes minutes)')
    option(parser, 'stack', stack_name,
           stacks.chosen_name(),
           f'the reference stack of the real slapgrid nodes (reboot), '
           f'among {", ".join(stacks.NAMES)}',
           shown=f'${stacks.STACK_ENV}, else {stacks.DEFAULT}')
    option(parser, 'output', str, 'BENCHMARKS.md',
           "markdown report ('-': stdout only)")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = make_parser().parse_args(argv)
    # testbed's slapgrid nodes take it from there
    os.environ[stacks.STACK_ENV] = args.stack
    started = time.monotonic()
    outcomes = []
    for name in args.only:
        print(f'bench: {name} ...', file=sys.stderr, flush=True)
        begun = time.monotonic()
        outcomes.append(BENCHMARKS[name](args))
        print(f'bench: {name} done in {time.monotonic() - begun:.0f} s',
              file=sys.stderr, flush=True)
    command = shlex.join(['python', '-m', 'bench', *argv])
    text = report.render(outcomes, command, time.monotonic() - started)
    if args.output == '-':
        sys.stdout.write(text)
    else:
        with open(args.output, 'w', encoding='utf-8') as f:
            f.write(text)
        print(report.results_table(outcomes))
        print()
        print(report.targets_table(outcomes))
    return 0  # a missed target is a finding, not a failure


if __name__ == '__main__':
    sys.exit(main())
