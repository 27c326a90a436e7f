"""``python -m bench``: run the benchmarks, write BENCHMARKS.md.

The benchmarks of a SlapOS node's start (offline, reboot) run once on each
stack of ``--stacks`` (testbed/stacks.py), the others in this Python.
``--save FILE`` keeps the outcomes (JSON) and ``--merge FILE...`` writes
the report from outcomes saved by earlier runs: pieces run apart (sizes,
stacks, benchmarks), one report.
"""

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time

from bench import fleet, memory, offline, report, reread, scoped, status
from bench.common import LoadSampler, Outcome, Row, Target, bench_stack, label
from testbed import stacks

BENCHMARKS = {
    'scoped': lambda args: scoped.run(args.sizes),
    'status': lambda args: status.run(args.sizes),
    'offline': lambda args: offline.run(args.sizes),
    'sync': lambda args: _sync().run(args.sync_instances),
    'memory': lambda args: memory.run(args.sizes),
    'fleet': lambda args: fleet.run(),
    'reread': lambda args: reread.run(args.sizes),
    'reboot': lambda args: _reboot().run(
        args.reboot_sizes,
        args.reboot_conditions,
        big_sizes=args.reboot_big_sizes,
    ),
}
# run once per stack of --stacks (the others: in this Python)
ON_STACKS = ('offline', 'reboot')


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
        raise argparse.ArgumentTypeError(
            f'not a list of sizes: {text!r}'
        ) from None
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
            f'unknown {what} {unknown or text!r}; known: {", ".join(known)}'
        )
    return [name for name in known if name in listed]


def names(text):
    return chosen(text, list(BENCHMARKS), 'benchmark(s)')


def conditions(text):
    return chosen(
        text, _reboot().CONDITIONS, 'master condition(s)', at_least_one=True
    )


def stack_names(text):
    return chosen(text, stacks.NAMES, 'stack(s)', at_least_one=True)


def optional_sizes(text):
    return sizes(text) if text.strip() else []


def option(parser, name, convert, default, help, shown=None):
    """``--name``, from env BENCH_<NAME> or else ``default`` (text, both
    converted by ``convert``); the help says both."""
    env = 'BENCH_' + name.upper().replace('-', '_')
    parser.add_argument(
        f'--{name}',
        type=convert,
        default=convert(os.environ.get(env, default)),
        help=f'{help}; env {env}; default {shown or default}',
    )


def make_parser():
    parser = argparse.ArgumentParser(
        prog='python -m bench', description=__doc__.strip()
    )
    option(
        parser,
        'sizes',
        sizes,
        '10,100,1000',
        'numbers of partitions (2 processes each)',
    )
    option(
        parser,
        'only',
        names,
        ','.join(BENCHMARKS),
        f'benchmarks to run, among {", ".join(BENCHMARKS)}',
        shown='all',
    )
    option(
        parser, 'sync-instances', int, '200', 'instances of the sync benchmark'
    )
    option(
        parser,
        'reboot-sizes',
        sizes,
        '3,50',
        'started partitions of the reboot benchmark (and one stopped)',
        shown='3,50 (its buildout time and cron delay: env '
        'BENCH_REBOOT_BUILDOUT_SECONDS, default 2, and '
        'BENCH_REBOOT_CRON_DELAY, default 30)',
    )
    option(
        parser,
        'reboot-big-sizes',
        optional_sizes,
        '1000',
        'started partitions of the reboot benchmark with the master '
        'refusing only, deployed without slapgrid (testbed\'s '
        'deploy_locally); empty: none',
    )
    option(
        parser,
        'reboot-conditions',
        conditions,
        'up,refusing,hanging',
        'master conditions of the reboot benchmark, among up, refusing, '
        'hanging',
        shown='all (with the master hanging, slapgrid alone takes minutes)',
    )
    option(
        parser,
        'stacks',
        stack_names,
        ','.join(stacks.NAMES),
        f'the stacks that {" and ".join(ON_STACKS)} run on, among '
        f'{", ".join(stacks.NAMES)} (one that cannot be built here is '
        f'skipped, with a note)',
    )
    option(
        parser,
        'output',
        str,
        'BENCHMARKS.md',
        "markdown report ('-': stdout only)",
    )
    parser.add_argument(
        '--save', metavar='FILE', help='also write the outcomes to FILE (JSON)'
    )
    parser.add_argument(
        '--merge',
        metavar='FILE',
        nargs='+',
        help='run nothing: the report of the outcomes '
        'saved in FILEs (--save), in their order',
    )
    return parser


def run_one(name, args, stack=None):
    """Run benchmark ``name`` (on ``stack``: a stack name, or None for
    this Python); its Outcome, each row and target naming its stack."""
    if stack is not None:
        # testbed (slapgrid nodes, stacks.current()) takes it from there
        os.environ[stacks.STACK_ENV] = stack
        try:
            built = stacks.current()
        except stacks.Unavailable as error:
            return Outcome(name, notes=[f'not run on {stack}: {error}'])
    else:
        built = bench_stack()
    load = []
    with LoadSampler(load):
        outcome = BENCHMARKS[name](args)
    outcome.load = load
    return label(outcome, built)


def save(outcomes, path):
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(
            [dataclasses.asdict(outcome) for outcome in outcomes], f, indent=1
        )


def load_outcomes(path):
    with open(path, encoding='utf-8') as f:
        saved = json.load(f)
    return [
        Outcome(
            **dict(
                item,
                rows=[Row(**row) for row in item['rows']],
                targets=[Target(**target) for target in item['targets']],
                sections=[tuple(section) for section in item['sections']],
            )
        )
        for item in saved
    ]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = make_parser().parse_args(argv)
    started = time.monotonic()
    outcomes = []
    if args.merge:
        for path in args.merge:
            outcomes.extend(load_outcomes(path))
    for name in [] if args.merge else args.only:
        for stack in args.stacks if name in ON_STACKS else [None]:
            where = f' on {stack}' if stack else ''
            print(f'bench: {name}{where} ...', file=sys.stderr, flush=True)
            begun = time.monotonic()
            outcomes.append(run_one(name, args, stack))
            print(
                f'bench: {name}{where} done in '
                f'{time.monotonic() - begun:.0f} s',
                file=sys.stderr,
                flush=True,
            )
    if args.save:
        save(outcomes, args.save)
    command = shlex.join(['python', '-m', 'bench', *argv])
    text = report.render(
        outcomes, command, None if args.merge else time.monotonic() - started
    )
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
