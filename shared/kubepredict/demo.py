"""``kubepredict demo``: the whole loop against a running gateway with the bundled iris data."""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path


def run_demo(client, wait, print_job, table) -> None:
    data = resources.files("kubepredict").joinpath("data/iris.csv").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        train_csv = Path(tmp) / "iris.csv"
        train_csv.write_bytes(data)
        lines = data.decode().splitlines()
        header = lines[0].split(",")
        keep = [i for i, c in enumerate(header) if c != "species"]
        new_csv = Path(tmp) / "iris-new.csv"
        new_csv.write_text(
            "\n".join(",".join(row.split(",")[i] for i in keep) for row in lines[:1] + lines[1::10]) + "\n"
        )
        ds = client.upload(train_csv, "iris")
        print(f"1/4 uploaded {ds['dataset_id']}: {ds['rows']} rows, {len(ds['columns'])} columns")
        queued = client.train(
            {
                "dataset_id": ds["dataset_id"],
                "target": "species",
                "algorithm": "random_forest",
                "params": {"n_estimators": 100},
                "name": "iris-demo",
            }
        )
        print(f"2/4 training {queued['model_id']} in job {queued['job_id']}")
        print_job(wait(client, queued["job_id"]))
        new = client.upload(new_csv, "iris-new")
        job = client.predict({"model_id": queued["model_id"], "dataset_id": new["dataset_id"]})
        print(f"3/4 predicting {new['rows']} new rows in job {job['job_id']}")
        wait(client, job["job_id"])
        done = client.job(job["job_id"], limit=10)
        print("4/4 results (first 10 rows):")
        table("predictions", done["predictions"]["rows"], ["row", "prediction", "probabilities"])
        print(f"full CSV: GET /function/result/{job['job_id']}?format=csv")
