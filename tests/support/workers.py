"""pytest-xdist workers: which one this process is, and the test database that is its own.

`make test` runs the suite in two worker processes. Each needs a Redis database no other uses:
the tests flush it and count every key in it.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio.connection import parse_url


def worker_index() -> int:
    """This process's pytest-xdist worker (gw0 -> 0, gw1 -> 1 …); 0 without xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) if re.fullmatch(r"gw\d+", worker) else 0


def url_of_worker(setting: str, index: int) -> str:
    """Worker `index`'s database, from a test Redis setting.

    The setting is one URL or several (separated by commas or spaces). Worker i takes the
    i-th URL; from one URL, worker i takes database db + i of that server (CI's
    redis://127.0.0.1:6379/13: 13 and 14).
    """
    urls = setting.replace(",", " ").split()
    if not urls:
        raise ValueError("no test Redis URL")
    if len(urls) > 1:
        if index >= len(urls):
            raise ValueError(
                f"pytest-xdist worker {index} has no test Redis: {len(urls)} URLs are given "
                "(give one per worker, or one URL: worker i then takes database db + i)"
            )
        return urls[index]
    url = urls[0]
    if index == 0:
        return url
    db = int(parse_url(url).get("db") or 0) + index
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "db"]
    if parts.scheme == "unix":  # unix:///path/to/socket?db=N
        # Written out: urlunsplit drops the "//" of an empty host ("unix:/path"), which
        # redis-py 8.2 refuses.
        return f"unix://{parts.path}?{urlencode([*query, ('db', str(db))])}"
    return urlunsplit(parts._replace(path=f"/{db}", query=urlencode(query)))
