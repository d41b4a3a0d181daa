"""``kubepredict``: serve | worker | dispatcher | metrics | gc | relay | connector | stream-scorer | upload | train |
predict | result | alias | bundle | import | verify | demo."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from . import __version__

GATEWAY = click.option(
    "--gateway",
    envvar="KUBEPREDICT_GATEWAY_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Gateway base URL.",
)
TOKEN = click.option(
    "--token", envvar="KUBEPREDICT_API_TOKEN", default=None, help="Bearer token, if the gateway needs one."
)


def _settings(**overrides):
    from .config import Settings

    return Settings.from_env(**overrides)


def _client(gateway, token):
    from .client import Client

    return Client(gateway, token)


def _fail(exc: Exception):
    raise click.ClickException(str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kubepredict")
def main():
    """Train and serve scikit-learn models as serverless functions."""


# ---- server side ------------------------------------------------------------------------------
@main.command()
@click.option("--host", default=None, help="Listen address (default 127.0.0.1, or KUBEPREDICT_HOST).")
@click.option("--port", type=int, default=None, help="Port (default 8080, or KUBEPREDICT_PORT).")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for the SQLite catalogue and the object store (default ./data).",
)
@click.option("--no-dispatch", is_flag=True, help="Serve functions only; another process runs the jobs.")
def serve(host, port, data_dir, no_dispatch):
    """Run the gateway with the four functions, the web page and the job dispatcher."""
    from . import logs
    from .server import serve as run

    logs.configure()
    run(_settings(host=host, port=port, data_dir=data_dir), dispatch=not no_dispatch)


@main.command()
@click.argument("job_id")
@click.option("--attempt", type=int, default=None, help="The attempt the dispatcher claimed (omit to claim here).")
@click.option("--shard", type=int, default=None, help="Score only this shard of a sharded predict job.")
@click.option("--sharded", is_flag=True, help="The shard is JOB_COMPLETION_INDEX (a Kubernetes Indexed Job pod).")
def worker(job_id, attempt, shard, sharded):
    """Run one job (what a local worker process or a Kubernetes pod executes)."""
    from .runner.worker import worker_main

    sys.exit(worker_main(job_id, attempt, shard, sharded=sharded))


METRICS_PORT = click.option(
    "--metrics-port",
    type=int,
    envvar="KUBEPREDICT_METRICS_PORT",
    default=8081,
    show_default=True,
    help="Serve job and function-call metrics here (0: off).",
)
METRICS_HOST = click.option("--metrics-host", envvar="KUBEPREDICT_METRICS_HOST", default="0.0.0.0", show_default=True)


@main.command()
@METRICS_PORT
@METRICS_HOST
def dispatcher(metrics_port, metrics_host):
    """Claim queued jobs and start them (when the functions run under OpenFaaS/Kubeless).

    Also serves the catalogue's metrics (jobs, queue, rows predicted, outbox backlog, and the calls
    Kubeless functions counted in the catalogue) on ``/metrics``.
    """
    from . import logs, metrics
    from .bootstrap import bootstrap
    from .runner.dispatcher import Dispatcher, make_runner

    logs.configure()
    svc = bootstrap(_settings())
    if metrics_port:
        metrics.serve_metrics(metrics.catalog_registry(svc.catalog), metrics_port, metrics_host)
    _run_until_sigterm(Dispatcher(svc.catalog, make_runner(svc.settings), svc.settings))


@main.command("metrics")
@click.option("--port", type=int, envvar="KUBEPREDICT_METRICS_PORT", default=8081, show_default=True)
@METRICS_HOST
def metrics_server(port, metrics_host):
    """Serve only the catalogue's metrics (no dispatching), e.g. next to Kubeless functions."""
    from . import logs, metrics
    from .bootstrap import bootstrap

    logs.configure()
    svc = bootstrap(_settings())
    metrics.serve_metrics(metrics.catalog_registry(svc.catalog), port, metrics_host)
    _wait_for_sigterm()
    svc.catalog.dispose()


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="The gateway's data folder when it uses the defaults (SQLite and folder store there).",
)
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option(
    "--grace-seconds",
    type=float,
    default=None,
    help="Only what was written longer ago than this (default KUBEPREDICT_ORPHAN_GRACE_SECONDS, 3600).",
)
def gc(data_dir, dry_run, grace_seconds):
    """Remove orphaned objects: dataset and model files no catalogue row owns, and leftover staging files.

    Only objects older than the grace period are touched, so an upload in progress is safe.
    """
    from .bootstrap import bootstrap
    from .errors import KubepredictError
    from .services import orphans

    svc = bootstrap(_settings(data_dir=data_dir))
    try:
        found = orphans.sweep(svc, dry_run=dry_run, grace_seconds=grace_seconds)
    except KubepredictError as exc:
        _fail(exc)
    finally:
        svc.catalog.dispose()
    for key in found.found:
        click.echo(("would remove " if dry_run else "removed ") + key)
    verb = "found" if dry_run else "removed"
    click.echo(
        f"{len(found.found) if dry_run else found.removed} orphaned objects {verb}"
        + (f", {len(found.failed)} could not be removed" if found.failed else "")
    )
    if found.failed:
        sys.exit(1)


@main.command()
@click.argument("model_id")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="The gateway's data folder when it uses the defaults (SQLite and folder store there).",
)
def verify(model_id, data_dir):
    """Retrain MODEL_ID from its stored request and dataset; exit 0 if held-out predictions are identical, else 1."""
    from .bootstrap import bootstrap
    from .errors import KubepredictError
    from .services import reproduce

    svc = bootstrap(_settings(data_dir=data_dir))
    try:
        report = reproduce.verify(svc, model_id)
    except KubepredictError as exc:
        _fail(exc)
    finally:
        svc.catalog.dispose()
    click.echo(json.dumps(report, indent=2))
    verdict = "identical: the model is reproducible" if report["identical"] else "DIFFERENT: not reproducible"
    click.echo(verdict, err=True)
    sys.exit(0 if report["identical"] else 1)


def _wait_for_sigterm(alive=lambda: True) -> None:
    """Block until SIGTERM, Ctrl-C, or ``alive()`` turns false."""
    import signal
    import threading

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5) and alive():
            pass
    except KeyboardInterrupt:
        pass


def _run_until_sigterm(loop) -> None:
    """Run a ``loops.BackgroundLoop`` in its thread until SIGTERM or Ctrl-C, then stop it cleanly."""
    loop.start()
    _wait_for_sigterm(loop.is_alive)
    loop.stop()


@main.command()
def relay():
    """Publish the outbox to Kafka (KUBEPREDICT_KAFKA_BOOTSTRAP_SERVERS) as CloudEvents, in commit order."""
    from . import logs
    from .bootstrap import bootstrap
    from .events.relay import OutboxRelay

    logs.configure()
    svc = bootstrap(_settings())
    if not svc.settings.kafka_bootstrap_servers:
        raise click.ClickException("set KUBEPREDICT_KAFKA_BOOTSTRAP_SERVERS")
    _run_until_sigterm(OutboxRelay(svc.catalog, svc.settings))
    svc.catalog.dispose()


@main.command()
@click.option(
    "--group",
    default=None,
    help="Consumer group id (default kubepredict-connector, or "
    "KUBEPREDICT_CONNECTOR_GROUP); run several to share the partitions.",
)
@click.option(
    "--exit-after-invoke",
    type=int,
    default=None,
    hidden=True,
    help="Tests only: exit abruptly after the Nth invocation, before committing its offset.",
)
def connector(group, exit_after_invoke):
    """Consume the train/predict request topics and invoke the functions through the gateway."""
    import logging

    from . import logs
    from .events.connector import KafkaConnector

    logs.configure()
    settings = _settings()
    if not settings.kafka_bootstrap_servers:
        raise click.ClickException("set KUBEPREDICT_KAFKA_BOOTSTRAP_SERVERS")
    hook = None
    if exit_after_invoke:

        def hook(delivery, status):
            if loop.invoked >= exit_after_invoke:
                logging.getLogger(__name__).warning(
                    "exiting after invoking %s[%s]@%s (%s), before the commit",
                    delivery.topic,
                    delivery.partition,
                    delivery.offset,
                    status,
                )
                logging.shutdown()
                os._exit(3)

    loop = KafkaConnector(settings, group_id=group, after_invoke=hook)
    _run_until_sigterm(loop)


@main.command("stream-scorer")
@click.option(
    "--group", default=None, help="Consumer group id (default kubepredict-stream, or KUBEPREDICT_STREAM_GROUP)."
)
@click.option(
    "--instance",
    default=None,
    help="This member's name, stable across its restarts (default: the host "
    "name); give each scorer of a group on one host its own.",
)
@click.option("--max-messages", type=int, default=500, show_default=True, help="Records per micro-batch at most.")
@click.option("--max-wait-ms", type=int, default=50, show_default=True, help="Wait for a micro-batch to fill.")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics on this port.")
@click.option("--metrics-host", default="0.0.0.0", show_default=True)
@click.option(
    "--exit-after-produce",
    type=int,
    default=None,
    hidden=True,
    help="Tests only: SIGKILL itself after producing the Nth batch's answers, before committing.",
)
def stream_scorer(group, instance, max_messages, max_wait_ms, metrics_port, metrics_host, exit_after_produce):
    """Score CloudEvents from kubepredict.predict.stream in micro-batches; answers to kubepredict.predictions."""
    import logging
    import signal as _signal

    from . import logs, metrics
    from .bootstrap import bootstrap
    from .events.stream import StreamScorer

    logs.configure()
    svc = bootstrap(_settings())
    if not svc.settings.kafka_bootstrap_servers:
        raise click.ClickException("set KUBEPREDICT_KAFKA_BOOTSTRAP_SERVERS")
    hook = None
    if exit_after_produce:

        def hook(records):
            if loop.batches + 1 >= exit_after_produce:
                logging.getLogger(__name__).warning(
                    "killing myself after producing %d answers, before the commit", len(records)
                )
                logging.shutdown()
                os.kill(os.getpid(), _signal.SIGKILL)

    if metrics_port:
        metrics.serve_metrics(metrics.REGISTRY, metrics_port, metrics_host)
    loop = StreamScorer(
        svc,
        group_id=group,
        instance=instance,
        max_messages=max_messages,
        max_wait=max_wait_ms / 1000,
        after_produce=hook,
    )
    _run_until_sigterm(loop)
    svc.catalog.dispose()
    if loop.failed is not None:
        raise SystemExit(1)


# ---- client side ------------------------------------------------------------------------------
def _progress_wait(client, job_id: str) -> dict:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(),
    ) as bar:
        task = bar.add_task(job_id, total=1.0, stage="queued")
        job = client.wait(job_id, lambda j: bar.update(task, completed=j["progress"], stage=j.get("stage") or ""))
    return job


def _table(title: str, rows: list[dict], columns: list[str]):
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[json.dumps(r.get(c)) if isinstance(r.get(c), (dict, list)) else str(r.get(c, "")) for c in columns])
    Console().print(t)


def _print_job(job: dict):
    from rich.console import Console

    c = Console()
    style = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(job["status"], "cyan")
    c.print(
        f"[bold]{job['job_id']}[/] ({job['kind']}): [{style}]{job['status']}[/]"
        + (f" — {job['error']['message']}" if job.get("error") and job["status"] == "failed" else "")
    )
    metrics = job.get("metrics") or {}
    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    if flat:
        _table("metrics", [{"metric": k, "value": round(v, 4)} for k, v in flat.items()], ["metric", "value"])
    summary = job.get("summary")
    if summary:
        from .catalog.records import compact_summary

        rest = {k: v for k, v in (compact_summary(summary) or {}).items() if k != "drift"}
        if rest:
            c.print_json(data=rest)
        _print_drift(c, summary.get("drift"))


def _print_drift(c, drift: dict | None) -> None:
    """A batch job's drift report as one line and a table of features, worst PSI first."""
    if not drift:
        return
    if not drift.get("available"):
        c.print(f"drift: not available — {drift.get('reason', '')}")
        return
    verdict = "[red]DETECTED[/]" if drift.get("detected") else "none above the threshold"
    c.print(f"drift: {verdict} (max PSI {drift.get('max_psi')}, threshold {drift.get('threshold')})")
    rows = [
        {
            "feature": f["feature"],
            "kind": f.get("kind"),
            "psi": f.get("psi"),
            "test": (f.get("test") or {}).get("name"),
            "p_value": (f.get("test") or {}).get("p_value"),
            "missing_change": (f.get("missing_rate") or {}).get("change"),
        }
        for f in drift.get("features", [])
    ]
    _table("drift per feature", rows, ["feature", "kind", "psi", "test", "p_value", "missing_change"])


@main.command()
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Dataset name (default: the file name).")
@GATEWAY
@TOKEN
def upload(csv_file, name, gateway, token):
    """Upload a CSV file as a dataset."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    try:
        with Progress(
            TextColumn("[bold]upload"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=True
        ) as bar:
            task = bar.add_task("upload", total=csv_file.stat().st_size)
            ds = _client(gateway, token).upload(csv_file, name, lambda sent: bar.update(task, completed=sent))
    except Exception as exc:  # noqa: BLE001 - the command's one-line error instead of a traceback
        _fail(exc)
    click.echo(f"{ds['dataset_id']}  {ds['name']}  {ds['rows']} rows")
    _table("columns", ds["columns"], ["name", "dtype", "missing", "unique"])


@main.command()
@click.argument("dataset_id")
@click.option("--target", default=None, help="Column to predict (omit for clustering).")
@click.option("--algorithm", default="auto", show_default=True, help="Catalogue name, sklearn class path, or auto.")
@click.option("--task", type=click.Choice(["classification", "regression", "clustering", "forecasting"]), default=None)
@click.option("--params", default="{}", help="Estimator parameters as JSON.")
@click.option("--name", default=None, help="Model name (versions are counted per name).")
@click.option(
    "--promote",
    default=None,
    help='Champion/challenger gate as JSON, e.g. \'{"metric": "f1_macro", "min_gain": 0.01, "dataset_id": "ds_…"}\'.',
)
@click.option("--time-column", default=None, help="Forecasting: the timestamp column.")
@click.option("--series", "series_columns", multiple=True, help="Forecasting: a column telling series apart.")
@click.option("--horizon", type=int, default=None, help="Forecasting: steps ahead.")
@click.option("--frequency", default=None, help="Forecasting: pandas offset alias (inferred when absent).")
@click.option("--feature", "features", multiple=True, help="A feature column (forecasting: exogenous; repeatable).")
@click.option("--no-wait", is_flag=True, help="Return once queued.")
@GATEWAY
@TOKEN
def train(
    dataset_id,
    target,
    algorithm,
    task,
    params,
    name,
    promote,
    time_column,
    series_columns,
    horizon,
    frequency,
    features,
    no_wait,
    gateway,
    token,
):
    """Train a model on a dataset (runs as a job)."""
    client = _client(gateway, token)
    body = {"dataset_id": dataset_id, "algorithm": algorithm}
    for k, v in (
        ("target", target),
        ("task", task),
        ("name", name),
        ("time_column", time_column),
        ("series_columns", list(series_columns)),
        ("horizon", horizon),
        ("frequency", frequency),
        ("features", list(features)),
    ):
        if v:
            body[k] = v
    try:
        body["params"] = json.loads(params)
        if promote:
            body["promote"] = json.loads(promote)
        queued = client.train(body)
        click.echo(f"queued {queued['job_id']} for model {queued['model_id']}")
        if not no_wait:
            _print_job(_progress_wait(client, queued["job_id"]))
    except Exception as exc:  # noqa: BLE001 - the command's one-line error instead of a traceback
        _fail(exc)


@main.command()
@click.argument("model_id")
@click.option("--dataset", "dataset_id", default=None, help="Score a whole uploaded dataset (batch job).")
@click.option("--row", "rows", multiple=True, help="One row as JSON, e.g. '{\"x\": 1}' (online; repeatable).")
@click.option("--explain", is_flag=True, help="Also each column's contribution to every prediction.")
@click.option("--no-wait", is_flag=True)
@GATEWAY
@TOKEN
def predict(model_id, dataset_id, rows, explain, no_wait, gateway, token):
    """Predict with a model: a batch job over a dataset, or a few rows online."""
    client = _client(gateway, token)
    extra = {"explain": True} if explain else {}
    try:
        if rows:
            out = client.predict({"model_id": model_id, "instances": [json.loads(r) for r in rows], **extra})
            click.echo(json.dumps(out, indent=2))
            return
        if not dataset_id:
            raise click.UsageError("give --dataset for a batch prediction or --row for online ones")
        queued = client.predict({"model_id": model_id, "dataset_id": dataset_id, **extra})
        click.echo(f"queued {queued['job_id']}")
        if not no_wait:
            _print_job(_progress_wait(client, queued["job_id"]))
    except click.UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - the command's one-line error instead of a traceback
        _fail(exc)


@main.command()
@click.argument("model_id")
@click.option("--horizon", type=int, default=None, help="Steps ahead (default: the model's horizon).")
@click.option("--series", "series", multiple=True, help="Only this series (its key value; repeatable).")
@GATEWAY
@TOKEN
def forecast(model_id, horizon, series, gateway, token):
    """Forecast online with a forecasting model, from the history stored with it."""
    client = _client(gateway, token)
    body: dict = {"model_id": model_id}
    if horizon:
        body["horizon"] = horizon
    if series:
        body["series"] = list(series)
    try:
        rows = client.forecast(body)["forecast"]
        _table(f"forecast of {model_id}", rows, list(rows[0]) if rows else ["timestamp"])
    except Exception as exc:  # noqa: BLE001 - the command's one-line error instead of a traceback
        _fail(exc)


@main.command()
@click.argument("job_id", required=False)
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--offset", type=int, default=0)
@click.option(
    "--csv",
    "csv_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the full results as CSV to this file.",
)
@GATEWAY
@TOKEN
def result(job_id, limit, offset, csv_out, gateway, token):
    """Show a job (status, metrics, predictions) or, without JOB_ID, list jobs."""
    client = _client(gateway, token)
    try:
        if not job_id:
            jobs = client.get("/function/result", limit=limit, offset=offset)["jobs"]
            _table("jobs", jobs, ["job_id", "kind", "status", "progress", "stage", "created_at"])
            return
        if csv_out:
            csv_out.write_bytes(client.csv(job_id))
            click.echo(f"wrote {csv_out}")
            return
        job = client.job(job_id, limit=limit, offset=offset)
        _print_job(job)
        if job.get("predictions"):
            p = job["predictions"]
            _table(
                f"predictions {p['offset']}–{p['offset'] + len(p['rows'])} of {p['total']}",
                p["rows"],
                list(p["rows"][0])
                if p["rows"] and "timestamp" in p["rows"][0]
                else ["row", "prediction", "probabilities"],
            )
    except Exception as exc:  # noqa: BLE001 - the command's one-line error instead of a traceback
        _fail(exc)


@main.command()
@click.argument("name")
@click.argument("alias", required=False)
@click.argument("version", type=int, required=False)
@click.option("--delete", is_flag=True, help="Remove ALIAS.")
@GATEWAY
@TOKEN
def alias(name, alias, version, delete, gateway, token):
    """List NAME's aliases; point ALIAS at VERSION (promote, roll back); or --delete ALIAS."""
    client = _client(gateway, token)
    try:
        if alias and delete:
            client.delete_alias(name, alias)
            click.echo(f"removed {name}@{alias}")
        elif alias:
            if version is None:
                raise click.UsageError("give the VERSION to point the alias at (or --delete)")
            moved = client.set_alias(name, alias, version)
            click.echo(f"{name}@{alias} -> v{moved['version']} ({moved['model_id']})")
        else:
            listed = client.aliases(name)["aliases"]
            _table(f"aliases of {name}", listed, ["alias", "version", "model_id", "updated_at"])
    except click.UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - the command's one-line error instead of a traceback
        _fail(exc)


@main.command()
@click.argument("model_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Zip file.")
@GATEWAY
@TOKEN
def bundle(model_id, output, gateway, token):
    """Download MODEL_ID as a portable bundle (artefact, digest, request, dataset digest, versions)."""
    try:
        output.write_bytes(_client(gateway, token).bundle(model_id))
    except Exception as exc:  # noqa: BLE001 - the command's one-line error instead of a traceback
        _fail(exc)
    click.echo(f"wrote {output}")


@main.command("import")
@click.argument("bundle_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Import as a version of this name (default: the bundle's).")
@GATEWAY
@TOKEN
def import_(bundle_file, name, gateway, token):
    """Import a bundle as a new ready model version (digest, version and allow-list checked)."""
    try:
        model = _client(gateway, token).import_bundle(bundle_file.read_bytes(), name)
    except Exception as exc:  # noqa: BLE001 - the command's one-line error instead of a traceback
        _fail(exc)
    click.echo(f"{model['model_id']}  {model['name']} v{model['version']}  ready")


@main.command()
@GATEWAY
@TOKEN
def demo(gateway, token):
    """Upload the bundled iris data, train a random forest, predict, print results."""
    from .demo import run_demo

    try:
        run_demo(_client(gateway, token), _progress_wait, _print_job, _table)
    except Exception as exc:  # noqa: BLE001 - the command's one-line error instead of a traceback
        _fail(exc)


if __name__ == "__main__":
    main()
