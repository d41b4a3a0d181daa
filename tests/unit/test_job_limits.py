"""Job bounds without a gateway: quantities and ``resources``, local limits, the n_jobs clamp, the
memory watch of the local runner, the deadline in the dispatcher, parameter ceilings."""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal

import pytest

from kubepredict.config import Settings
from kubepredict.errors import ConfigError, InvalidInput
from kubepredict.ml import algorithms
from kubepredict.runner import limits
from kubepredict.runner.base import JobRunner
from kubepredict.runner.local import LocalProcessRunner, _Worker
from kubepredict.runner.resources import check_resources, format_bytes, maximums, parse_quantity


@pytest.mark.parametrize(
    "text, value",
    [
        ("500m", Decimal("0.5")),
        ("2Gi", 2 * 2**30),
        ("1.5", Decimal("1.5")),
        (2, 2),
        ("1e3", 1000),
        ("128974848", 128974848),
        ("129M", 129 * 10**6),
    ],
)
def test_quantities(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["abc", "2Gb", "", "1..2", "-1", "Gi", None, True, [1], "1e999999"])
def test_bad_quantities_name_their_field(text):
    with pytest.raises(InvalidInput) as err:
        parse_quantity(text, field="resources.limits.cpu")
    assert err.value.details["field"] == "resources.limits.cpu"


def test_format_bytes():
    assert format_bytes(2 * 2**30) == "2 GiB" and format_bytes(600 * 2**20) == "600 MiB"
    assert format_bytes(1.5 * 2**30) == "1.5 GiB"


def test_check_resources_accepts_the_kubernetes_shape_and_bounds_it():
    ok = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2, "memory": "4Gi"}}
    assert check_resources(ok, {"memory": "8Gi"}) == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    assert check_resources(None) == {} and check_resources({}) == {}
    with pytest.raises(InvalidInput) as err:
        check_resources({"limits": {"memory": "9Gi"}}, {"memory": "8Gi"})
    assert err.value.details["field"] == "resources.limits.memory" and err.value.details["maximum"] == "8Gi"


def test_maximums_follow_the_runner():
    assert maximums(Settings(runner="local", job_max_memory="3Gi")) == {"memory": "3Gi"}
    assert maximums(Settings(runner="kubernetes"))["cpu"] == "8"


def test_local_limits_from_settings_and_the_request():
    s = Settings(job_memory_limit="1Gi", job_max_memory="4Gi", job_cpu_limit=None)
    assert limits.local_limits(s, {}) == limits.JobLimits(2**30, limits.cores())
    assert limits.local_limits(s, {"limits": {"memory": "512Mi", "cpu": "500m"}}) == limits.JobLimits(2**29, 1)
    assert limits.local_limits(s, {"limits": {"memory": "3Gi"}}).memory_bytes == 3 * 2**30  # raised, up to the max
    assert limits.local_limits(s, {"limits": {"memory": "64Gi"}}).memory_bytes == 4 * 2**30
    assert limits.local_limits(s, {"requests": {"memory": "2Gi"}}).memory_bytes == 2 * 2**30
    assert limits.local_limits(s, {"limits": {"cpu": "1000"}}).cpus == limits.cores()
    assert limits.local_limits(Settings(job_cpu_limit="1"), None).cpus == 1


def test_shards_running_together_share_the_cores(monkeypatch):
    """Each of N shards at once gets cores // N (at least 1) unless the request or settings say otherwise."""
    monkeypatch.setattr(limits, "cores", lambda: 4)
    s = Settings(job_cpu_limit=None)
    assert [limits.local_limits(s, {}, share=n).cpus for n in (1, 2, 3, 4, 8)] == [4, 2, 1, 1, 1]
    assert limits.local_limits(s, {"limits": {"cpu": "3"}}, share=4).cpus == 3  # asked for: given
    assert limits.local_limits(Settings(job_cpu_limit="2"), None, share=4).cpus == 2


def test_limits_travel_in_the_environment():
    bounds = limits.JobLimits(123 * 2**20, 2)
    env = bounds.env()
    assert env["OPENBLAS_NUM_THREADS"] == env["LOKY_MAX_CPU_COUNT"] == "2"
    assert limits.JobLimits.from_env(env) == bounds
    assert limits.JobLimits.from_env({}) is None


@pytest.mark.parametrize(
    "n_jobs, cpus, expected", [(100_000, 2, 2), (-1, 2, 2), (-2, 4, 3), (1, 4, 1), (None, 2, None)]
)
def test_n_jobs_is_clamped(n_jobs, cpus, expected):
    assert limits.clamp_parallelism({"n_jobs": n_jobs, "n_estimators": 5}, cpus) == {
        "n_jobs": expected,
        "n_estimators": 5,
    }
    assert limits.clamp_parallelism({"n_jobs": n_jobs}, None) == {"n_jobs": n_jobs}


def test_settings_read_the_bounds_and_refuse_bad_ones():
    s = Settings.from_env(
        {
            "KUBEPREDICT_JOB_MEMORY_LIMIT": "2Gi",
            "KUBEPREDICT_JOB_DEADLINE_SECONDS": "60",
            "KUBEPREDICT_JOB_CPU_LIMIT": "1",
            "KUBEPREDICT_JOB_MAX_MEMORY": "8Gi",
        }
    )
    assert (s.job_memory_limit, s.job_deadline_seconds, s.job_cpu_limit, s.job_max_memory) == ("2Gi", 60, "1", "8Gi")
    defaults = Settings.from_env({})
    assert (defaults.job_memory_limit, defaults.job_max_memory, defaults.job_deadline_seconds) == ("4Gi", "16Gi", 3600)
    for env in (
        {"KUBEPREDICT_JOB_MEMORY_LIMIT": "lots"},
        {"KUBEPREDICT_JOB_DEADLINE_SECONDS": "0"},
        {"KUBEPREDICT_JOB_CPU_LIMIT": "0"},
    ):
        with pytest.raises(ConfigError):
            Settings.from_env(env)


def test_the_memory_limit_is_kept_by_the_kernel_in_a_worker():
    code = (
        "import numpy as np\nfrom kubepredict.runner import limits\n"
        "limits.apply(limits.JobLimits(400 * 2**20, 1))\n"
        "try:\n    np.ones(600 * 2**20 // 8)\nexcept MemoryError:\n    print('refused')\n"
        "limits.relax_memory()\nprint(len(bytearray(100 * 2**20)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["refused", str(100 * 2**20)], out.stderr


def test_the_runner_kills_a_worker_above_its_memory_limit_and_fails_the_job_for_good(tmp_path):
    runner = LocalProcessRunner(Settings(data_dir=tmp_path), start_method="exec")
    failed, lost = [], []
    runner.on_failed = lambda *args: failed.append(args)
    runner.on_lost = lambda *args: lost.append(args)
    # Memory the kernel limit does not see (a child process): only the runner's watch catches it.
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; b = bytearray(300 * 2**20); time.sleep(60)"], start_new_session=True
    )
    runner._procs[("job_x", None)] = _Worker(proc, attempt=1, memory_bytes=100 * 2**20)
    deadline = time.monotonic() + 20
    while not failed and time.monotonic() < deadline:
        runner.poll()
        time.sleep(0.1)
    assert proc.wait(timeout=10) < 0  # killed
    ((job_id, attempt, code, message),) = failed
    assert (job_id, attempt, code) == ("job_x", 1, "memory_limit_exceeded")
    assert "used more than 100 MiB of memory (limit 100 MiB)" in message
    runner.poll()
    assert runner.running() == 0 and len(lost) == 1  # reported lost too, which the catalogue ignores once failed


def test_a_worker_under_its_limit_is_left_alone(tmp_path):
    runner = LocalProcessRunner(Settings(data_dir=tmp_path), start_method="exec")
    runner.on_failed = lambda *args: pytest.fail(f"failed {args}")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        runner._procs[("job_y", None)] = _Worker(proc, attempt=1, memory_bytes=2**30)
        runner.poll()
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


class Idle(JobRunner):
    """A runner that starts nothing, with a deadline of half a second."""

    deadline_seconds = 0.5

    def submit(self, spec):
        pass

    def cancel(self, job_id):
        pass


def test_the_dispatcher_fails_overdue_jobs_for_good(tmp_path):
    from kubepredict.bootstrap import bootstrap
    from kubepredict.runner.dispatcher import Dispatcher

    svc = bootstrap(Settings(data_dir=tmp_path, job_max_attempts=3))
    svc.catalog.enqueue(job={"job_id": "job_slow", "kind": "train", "max_attempts": 3, "request": {}})
    dispatcher = Dispatcher(svc.catalog, Idle(), svc.settings)
    dispatcher.tick()
    assert svc.catalog.get_job("job_slow")["status"] == "running"
    time.sleep(0.7)
    dispatcher.tick()
    job = svc.catalog.get_job("job_slow")
    assert job["status"] == "failed" and job["attempt"] == 1
    assert job["error"] == {
        "code": "deadline_exceeded",
        "message": "the job ran longer than 0.5 s (limit 0.5 s) and was stopped",
    }


def test_the_dispatcher_fails_a_sharded_job_whose_shard_is_overdue(tmp_path):
    from kubepredict.bootstrap import bootstrap
    from kubepredict.runner.dispatcher import Dispatcher

    svc = bootstrap(Settings(data_dir=tmp_path, job_max_attempts=3))
    svc.catalog.enqueue(
        job={"job_id": "job_sharded", "kind": "predict", "max_attempts": 3, "request": {}}, shards=[(0, 5), (5, 10)]
    )
    dispatcher = Dispatcher(svc.catalog, Idle(), svc.settings)
    dispatcher.tick()
    assert [s["status"] for s in svc.catalog.get_job("job_sharded")["shard_status"]] == ["running", "running"]
    time.sleep(0.7)
    dispatcher.tick()
    job = svc.catalog.get_job("job_sharded")
    assert job["status"] == "failed" and job["error"]["code"] == "deadline_exceeded"
    assert job["error"]["message"].startswith("shard ") and "ran longer than 0.5 s" in job["error"]["message"]


@pytest.mark.parametrize(
    "params",
    [
        {"n_estimators": 10**9},
        {"n_estimators": 1e9},
        {"n_jobs": 100_000},
        {"max_iter": 10**7},
        {"n_neighbors": 10**6},
        {"cache_size": 10**6},
        {"hidden_layer_sizes": [8000, 8000]},
        {"hidden_layer_sizes": 5000},
        {"hidden_layer_sizes": [4000] * 5},
        {"hidden_layer_sizes": [1] * 65},
    ],
)
def test_params_above_the_ceilings_are_refused(params):
    with pytest.raises(InvalidInput) as err:
        algorithms.check_ceilings(params)
    assert err.value.code == "param_ceiling" and err.value.details["field"] == f"params.{next(iter(params))}"


def test_params_within_the_ceilings_pass():
    algorithms.check_ceilings(
        {
            "n_estimators": 5000,
            "n_jobs": -1,
            "hidden_layer_sizes": [4096, 4096, 4096, 4096],
            "max_iter": 100_000,
            "alpha": 1e12,
            "n_neighbors": True,
        }
    )
    algorithms.validate_request("mlp", "classification", {"hidden_layer_sizes": [100, 50]})
    with pytest.raises(InvalidInput):
        algorithms.validate_request("random_forest", "classification", {"n_estimators": 10**6})
    with pytest.raises(InvalidInput):
        algorithms.validate_request("auto", None, {"n_estimators": 10**6})


def test_a_loaded_models_n_jobs_is_clamped_for_a_predict_job():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = Pipeline([("scale", StandardScaler()), ("forest", RandomForestClassifier(n_jobs=100_000))])
    limits.clamp_model(pipeline, 2)
    assert pipeline[-1].n_jobs == 2
    alone = RandomForestClassifier(n_jobs=-1)
    limits.clamp_model(alone, 3)
    assert alone.n_jobs == 3
    untouched = RandomForestClassifier()
    limits.clamp_model(untouched, 2)
    assert untouched.n_jobs is None


class Tracking(Idle):
    """Idle, but remembers what it started and what it was told to cancel."""

    deadline_seconds = 0.0

    def __init__(self):
        self.started, self.cancelled = [], []

    def submit(self, spec):
        self.started.append(spec.job_id)

    def running_ids(self):
        return sorted(set(self.started) - set(self.cancelled))

    def cancel(self, job_id):
        self.cancelled.append(job_id)


def test_the_dispatcher_stops_cancelled_workers_but_lets_succeeded_ones_exit(tmp_path):
    """A worker records success a moment before its process (or pod) ends: deleting its Job then threw
    away the Job and its logs (seen on a real kubelet); cancelled jobs' workers are still stopped."""
    from kubepredict.bootstrap import bootstrap
    from kubepredict.runner.dispatcher import Dispatcher

    svc = bootstrap(Settings(data_dir=tmp_path))
    for job_id in ("job_done", "job_stop"):
        svc.catalog.enqueue(job={"job_id": job_id, "kind": "predict", "max_attempts": 1, "request": {}})
    runner = Tracking()
    dispatcher = Dispatcher(svc.catalog, runner, svc.settings)
    dispatcher.tick()
    assert runner.started == ["job_done", "job_stop"]
    svc.catalog.succeed_predict("job_done", 1, summary={"rows": 0})
    svc.catalog.cancel("job_stop")
    dispatcher.tick()
    assert runner.cancelled == ["job_stop"]
