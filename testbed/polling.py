"""Wait for a state with a deadline, instead of sleeping and hoping."""

import time

DEFAULT_TIMEOUT = 30.0


def wait_until(
    predicate, timeout=DEFAULT_TIMEOUT, interval=0.05, what='condition'
):
    """Call ``predicate`` until it returns a true value; return that value.

    Raises AssertionError naming ``what`` (and the last value seen) when the
    deadline passes.
    """
    deadline = time.monotonic() + timeout
    value = None
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f'timed out after {timeout}s waiting for {what}; '
                f'last value: {value!r}'
            )
        time.sleep(interval)
