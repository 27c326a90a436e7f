"""``python -m bench``: run the benchmarks, write BENCHMARKS.md."""
import argparse
import os
import shlex
import sys
import time

from bench import fleet, memory, offline, report, reread, scoped, status

BENCHMARKS = {
    'scoped': lambda args: scoped.run(args.sizes),
    'status': lambda args: status.run(args.sizes),
    'offline': lambda args: offline.run(args.sizes),
    'sync': lambda args: _sync().run(args.sync_instances),
    'memory': lambda args: memory.run(args.sizes),
    'fleet': lambda args: fleet.run(),
    'reread': lambda args: reread.run(args.sizes),
}


def _sync():
    from bench import sync  # needs testbed/slapos_master.py and slapos.core
    return sync


def sizes(text):
    try:
        values = [int(v) for v in text.replace(',', ' ').split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'not a list of sizes: {text!r}')
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f'sizes must be >= 1: {text!r}')
    return sorted(set(values))


def names(text):
    chosen = [v for v in text.replace(',', ' ').split() if v]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f'unknown benchmark(s) {unknown}; known: {sorted(BENCHMARKS)}')
    return [name for name in BENCHMARKS if name in chosen]


def make_parser():
    parser = argparse.ArgumentParser(
        prog='python -m bench', description=__doc__.strip())
    parser.add_argument(
        '--sizes', type=sizes,
        default=sizes(os.environ.get('BENCH_SIZES', '10,100,1000')),
        help='numbers of partitions (2 processes each); env BENCH_SIZES; '
        'default 10,100,1000')
    parser.add_argument(
        '--only', type=names,
        default=names(os.environ.get('BENCH_ONLY', ','.join(BENCHMARKS))),
        help=f'benchmarks to run, among {", ".join(BENCHMARKS)}; '
        'env BENCH_ONLY; default all')
    parser.add_argument(
        '--sync-instances', type=int,
        default=int(os.environ.get('BENCH_SYNC_INSTANCES', '200')),
        help='instances of the sync benchmark; env BENCH_SYNC_INSTANCES; '
        'default 200')
    parser.add_argument(
        '--output', default=os.environ.get('BENCH_OUTPUT', 'BENCHMARKS.md'),
        help="markdown report ('-': stdout only); env BENCH_OUTPUT; "
        'default BENCHMARKS.md')
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = make_parser().parse_args(argv)
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
