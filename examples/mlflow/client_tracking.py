"""Tracking through `MlflowClient` alone, in the shape of MLflow's client documentation:
experiments created with tags and found by filter strings, a run created, fed with
`log_batch` entities and ended with `set_terminated`, its metric history as a DataFrame,
and searches read page by page with their tokens.

Only the imports differ from the MLflow script (`import casstore as mlflow`).
"""

import time

import pandas as pd

from casstore import MlflowClient
from casstore.entities import Metric, Param, RunTag, ViewType

if __name__ == "__main__":
    client = MlflowClient()
    exp_id = client.create_experiment("client-tracking", tags={"team": "growth", "project": "churn"})
    client.create_experiment("client-tracking-scratch", tags={"team": "growth"})
    client.set_experiment_tag(exp_id, "owner", "ana")
    growth = client.search_experiments(filter_string="tags.team = 'growth'", order_by=["name ASC"])
    print("growth experiments:", [e.name for e in growth])

    run = client.create_run(exp_id, run_name="manual", tags={"source": "client"})
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    loss = [0.9, 0.6, 0.45, 0.4]
    client.log_batch(run_id,
                     metrics=[Metric("loss", v, now + i, i) for i, v in enumerate(loss)],
                     params=[Param("lr", "0.01"), Param("epochs", str(len(loss)))],
                     tags=[RunTag("stage", "dev")])
    client.log_dict(run_id, {"features": ["age", "income"]}, "features.json")
    client.set_terminated(run_id)
    got = client.get_run(run_id)
    print("status:", got.info.status, "params:", sorted(got.data.params.items()), "loss:", got.data.metrics["loss"])
    history = pd.DataFrame([m.to_dictionary() for m in client.get_metric_history(run_id, "loss")])
    print(history[["step", "value"]].to_string(index=False))

    for i in range(4):
        extra = client.create_run(exp_id, run_name=f"extra-{i}")
        client.log_metric(extra.info.run_id, "score", i / 10)
        client.set_terminated(extra.info.run_id)
    names, token, pages = [], None, 0
    while True:
        page = client.search_runs([exp_id], filter_string="attributes.run_name LIKE 'extra-%'",
                                  order_by=["metrics.score DESC"], max_results=3, page_token=token)
        names += [r.info.run_name for r in page]
        pages += 1
        token = page.token
        if not token:
            break
    print(f"{len(names)} runs in {pages} pages:", names)
    print("view types:", [ViewType.to_string(v) for v in (ViewType.ACTIVE_ONLY, ViewType.DELETED_ONLY, ViewType.ALL)])
