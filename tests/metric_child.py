"""A child process that logs metrics to a run and then leaves, in one of several ways.

``python metric_child.py URL RUN_ID N MODE``: logs ``N`` points of metric ``m`` (value
``i``, step ``i``) through the tracking client, then by ``MODE``:
``exit`` returns without ending the run; ``hang`` prints ``logged`` and waits (to be
killed); ``fail`` makes every later store write fail, then returns without ending the run.
"""

from __future__ import annotations

import sys
import time

import casstore
from casstore.exceptions import StoreUnavailableError


def main() -> None:
    url, run_id, n, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    client = casstore.MlflowClient(tracking_uri=url)
    for i in range(n):
        client.log_metric(run_id, "m", float(i), step=i)
    if mode == "fail":
        def refuse(*args: object, **kwargs: object) -> bool:
            raise StoreUnavailableError("injected: the store refuses writes")

        client.store.backend.put_if_absent = refuse  # type: ignore[method-assign]
    if mode == "hang":
        print("logged", flush=True)
        time.sleep(600)


if __name__ == "__main__":
    main()
