"""When the listener next asks the master, and next starts offline.

supervisord's ``TICK_60`` comes at the same wall-clock second on every node
of a fleet, so a fleet that syncs on the tick hits its master with every
node in one second of each minute. Instead each node keeps its own
*phase*: a moment in [0, 60) s after each wall-clock minute, fixed for the
node (derived from its computer id), and every request lands on it, backoff
attempts included. The start attempt does not wait for the phase (the
offline start must not wait for anything).

No I/O and no clock of its own: every method is given ``now`` (seconds
since the epoch), and the random generator comes in from the caller.
"""

import hashlib
import math

PERIOD = 60.0
# Backoff while the master does not answer: 60 s, 120 s, then 240 s, each
# times a random factor in JITTER, then moved to the nearest moment of the
# phase. With 240 s at most between two attempts (270 s after rounding),
# every node is back within 5 minutes of the master's return, whatever the
# length of the outage.
BACKOFF_BASE = 60.0
BACKOFF_CAP = 240.0
JITTER = (0.5, 1.0)


def phase_of(identity, period=PERIOD):
    """A moment in [0, ``period``) for ``identity`` (a computer id):
    the same at every restart, spread evenly over the period between
    nodes, sub-second."""
    digest = hashlib.sha256(identity.encode('utf-8')).digest()
    return int.from_bytes(digest[:8], 'big') / 2**64 * period


class Schedule:
    """The moments of one node.

    ``next_attempt`` is when to ask the master next (None: at once, as at
    the start); ``next_offline_start`` when to run the offline start again
    (None: not while the master answers).
    """

    def __init__(
        self, phase, rng, period=PERIOD, base=BACKOFF_BASE, cap=BACKOFF_CAP
    ):
        if not 0 <= phase < period:
            raise ValueError(f'phase must be in [0, {period:g}): {phase!r}')
        self.phase = phase
        self.period = period
        self.base = base
        self.cap = cap
        self.random = rng
        self.failures = 0
        self.next_attempt = None
        self.next_offline_start = None
        # No wait is ever longer: a moment further away means that the
        # wall clock went back (an NTP step), and it is due at once.
        self.longest_wait = cap + period

    def landing(self, target, now):
        """The moment of the phase nearest to ``target``, but at least half
        a period after ``now`` (two attempts never come close together)."""
        moment = round((target - self.phase) / self.period) * self.period
        moment += self.phase
        earliest = now + self.period / 2
        if moment < earliest:
            moment += (
                math.ceil((earliest - moment) / self.period) * self.period
            )
        return moment

    # asking the master

    def _due(self, moment, now):
        return now >= moment or moment - now > self.longest_wait

    def attempt_due(self, now):
        return self.next_attempt is None or self._due(self.next_attempt, now)

    def attempting(self, now):
        """An attempt begins: book the next one a period ahead, so that an
        attempt that ends in an unexpected error is not made again at
        once (succeeded or failed then say when it really is)."""
        self.next_attempt = self.landing(now + self.period, now)

    def succeeded(self, now):
        """The master answered: back to once a period, on the phase."""
        self.failures = 0
        self.next_attempt = self.landing(now + self.period, now)
        self.next_offline_start = None

    def failed(self, now):
        """The master did not answer: back off; return the delay chosen
        (before it lands on the phase)."""
        self.failures += 1
        delay = min(self.cap, self.base * 2 ** min(self.failures - 1, 30))
        delay *= self.random.uniform(*JITTER)
        self.next_attempt = self.landing(now + delay, now)
        return delay

    # the offline start

    def offline_start_due(self, now):
        return self.next_offline_start is not None and self._due(
            self.next_offline_start, now
        )

    def offline_started(self, now):
        """An offline start runs: the next one in about a period."""
        self.next_offline_start = self.landing(now + self.period, now)

    # waiting

    def seconds_until_due(self, now, asks_master=True):
        """Seconds until something is due (0: now), or None: nothing ever
        (no master and no offline start to repeat)."""
        if asks_master and self.attempt_due(now):
            return 0.0
        if self.offline_start_due(now):
            return 0.0
        moments = [self.next_offline_start]
        if asks_master:
            moments.append(self.next_attempt)
        moments = [m for m in moments if m is not None]
        return min(moments) - now if moments else None
