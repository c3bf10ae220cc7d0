"""Seconds per test file from a `pytest --durations=0` log, longest first, in the form of
conftest.FILE_SECONDS (which orders the files for the two workers).

  python -m pytest -q --durations=0 > LOG; python tests/file_times.py LOG
"""

import collections
import re
import sys


def file_seconds(lines) -> dict[str, float]:
    """``{file: seconds}`` summed over a log's setup, call and teardown durations."""
    seconds = collections.Counter()
    for line in lines:
        m = re.match(r"\s*([\d.]+)s (?:call|setup|teardown)\s+tests/(\S+?)::", line)
        if m:
            seconds[m.group(2)] += float(m.group(1))
    return dict(seconds.most_common())


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        for name, s in file_seconds(f).items():
            print(f'    "{name}": {round(s)},')
