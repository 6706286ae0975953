"""Deletion-service benchmark: a bounded load run against `unlearnkit serve` on 127.0.0.1.

  PYTHONPATH=src python benchmarks/service.py            # -> results/service/service.{json,md}
  PYTHONPATH=src python benchmarks/service.py --quick    # smaller, for a smoke run
  PYTHONPATH=src python benchmarks/service.py --part load   # 2,000 deletions, kill -9 -> load.*
  python benchmarks/service.py --dataset fashion_mnist --ensemble runs/fashion-s3t \
      --out results/fashion_mnist/service --curve ''   # serve the 60k S3T ensemble

One S3T ensemble (digits, smallcnn, m x L x B LoRA blocks) is trained (or ``--ensemble DIR``
loads one, e.g. the 42,000-sample Fashion-MNIST ensemble of benchmarks/s3t_scale.py --save,
with ``--dataset fashion_mnist``), then served by a real
`unlearnkit serve` child process (uvicorn, background retrain in its own child process). The
client (httpx, threads) measures, with the served work held constant inside each comparison:
  1. baseline: predictions only, all m shards live (no deletions, no retrain);
  2. retrain: shard 0 is killed by deleting a sample from each of its slices; predictions are
     measured while it retrains in the background (m - 1 shards live), until it is swapped in;
  3. the same m - 1 live shards without a retrain: a fresh server on a fresh copy with
     ``--no-background-retrain`` and shard 0 killed the same way; predictions alone (the
     reference for 2.), then a stream of single-id deletions (one client, back to back) of
     samples of shard 0, already switched off, so the live shards and their served prefixes
     stay the same while the prediction clients keep going (checked before and after).
Every percentile is reported with its n, and no p99 is printed from fewer than 100 samples
(n and max instead). Reported: prediction throughput and p50/p99 per window, deletion p50/p99
and where each deletion's time went (the server's Server-Timing phases vs the HTTP stack around
them), the retrain time, a load curve (8 and 32 predicting clients, a fresh server each, the
protocol of 3.) and the targets (deletion p99 <= 25 ms; prediction p99 while a shard retrains
within +-20% of predictions alone on the same live shards). ``--part load``:
2,000 paced deletions and 20,000 predictions with background retrains, one kill -9 and a
restart, then acknowledged vs applied deletions from the ledger. The machine's load average is
recorded: the CPUs may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from unlearnkit.data import load_dataset
from unlearnkit.exact import S3TConfig, S3TEnsemble
from unlearnkit.exact.data_ref import has_reference
from unlearnkit.exact.recipe import ensemble_data
from unlearnkit.models import create_model, select_trainable
from unlearnkit.models.checkpoint import atomic_write_text
from unlearnkit.service import DeletionService, ServiceConfig
from unlearnkit.service.auth import Principal
from unlearnkit.training import TrainConfig, train

OUT = Path("results/service")
TOKEN = "bench-token-0123456789"


MIN_P99_SAMPLES = 100  # fewer samples than this: a "p99" is the max or close to it; not reported


def stop_server(proc: subprocess.Popen) -> None:
    """Ask the server to shut down (SIGINT, as Ctrl-C); kill it if it has not within 60 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def percentiles(values: list[float]) -> dict[str, Any]:
    """n, p50, mean and max in ms, and p99 only from at least ``MIN_P99_SAMPLES`` values
    (else ``p99_ms`` is None: report n and max instead)."""
    if not values:
        return {"n": 0, "p99_ms": None}
    a = np.asarray(values) * 1000.0
    enough = len(values) >= MIN_P99_SAMPLES
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2) if enough else None,
        "mean_ms": round(float(a.mean()), 2),
        "max_ms": round(float(a.max()), 2),
    }


def p99_text(w: dict[str, Any]) -> str:
    """ "p99 X ms (n=N)", or "no p99: n=N < 100, max X ms"."""
    if w.get("p99_ms") is not None:
        return f"p99 {w['p99_ms']} ms (n={w['n']}), max {w.get('max_ms')} ms"
    return f"no p99: n={w.get('n', 0)} < {MIN_P99_SAMPLES}, max {w.get('max_ms')} ms"


def p99_cell(w: dict[str, Any]) -> str:
    """A table cell: the p99, or "n/a (max X)" from fewer than 100 samples."""
    return str(w["p99_ms"]) if w.get("p99_ms") is not None else f"n/a (max {w.get('max_ms')})"


def server_phases(header: str | None) -> dict[str, float]:
    """``Server-Timing: accept;dur=0.8, lock;dur=0.0, ...`` -> {phase: seconds}."""
    out: dict[str, float] = {}
    for part in (header or "").split(","):
        name, _, dur = part.strip().partition(";dur=")
        if name and dur:
            out[name] = float(dur) / 1000.0
    return out


def phase_table(rows: list[dict[str, float]], total: list[float]) -> dict[str, Any]:
    """p50/p99 of each server phase, of their sum, and of what the client saw beyond it (the
    HTTP stack, the event loop, the network, the client)."""
    names = sorted({k for r in rows for k in r})
    out = {name: percentiles([r.get(name, 0.0) for r in rows]) for name in names}
    server = [sum(r.values()) for r in rows]
    out["server_total"] = percentiles(server)
    out["outside_server"] = percentiles([t - sv for t, sv in zip(total, server, strict=True)])
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    model_dir: Path,
    port: int,
    log: Any,
    background_retrain: bool = True,
    threads: int = 1,
) -> subprocess.Popen:
    """``unlearnkit serve`` on ``model_dir`` as a child process (torch on ``threads``
    threads), returned once its /healthz answers 200."""
    env = {
        **os.environ,
        "UNLEARNKIT_TOKENS": json.dumps(
            {"tokens": [{"name": "bench", "token": TOKEN, "scopes": ["admin"]}]}
        ),
    }
    cmd = [
        sys.executable,
        "-m",
        "unlearnkit",
        "serve",
        "--from",
        str(model_dir),
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--snapshot-every",
        "50",
        *([] if background_retrain else ["--no-background-retrain"]),
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    end = time.monotonic() + 180
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit("the server exited during start-up; see its log")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start in 180 s")


class ClientThreads:
    """Client threads started on enter and stopped (``stop`` set, joined) on exit."""

    threads: list[threading.Thread]
    stop: threading.Event

    def __enter__(self) -> Any:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


class Predictors(ClientThreads):
    """``n`` threads posting prediction batches back to back; (start, latency, status) rows."""

    def __init__(self, url: str, x: torch.Tensor, n: int) -> None:
        self.url, self.body, self.n = url, {"inputs": x.tolist()}, n
        self.rows: list[tuple[float, float, int]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(n)]

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                r = client.post("/v1/predict", json=self.body, headers=headers)
                self.rows.append((t0, time.perf_counter() - t0, r.status_code))

    def window(self, start: float, end: float, batch: int) -> dict[str, Any]:
        rows = [r for r in self.rows if start <= r[0] < end]
        lat = [r[1] for r in rows]
        out = percentiles(lat)
        out["seconds"] = round(end - start, 2)
        out["requests_per_s"] = round(len(rows) / max(end - start, 1e-9), 1)
        out["images_per_s"] = round(len(rows) * batch / max(end - start, 1e-9), 1)
        out["non_200"] = sum(r[2] != 200 for r in rows)
        return out


def deletion_stream(
    url: str, x: torch.Tensor, stream: list[int], clients: int, batch: int
) -> dict[str, Any]:
    """Single-id deletions back to back from one client while ``clients`` clients predict:
    latency, codes and the server's own phases (Server-Timing) of every deletion."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    lat, codes, phases = [], [], []
    with Predictors(url, x, clients) as pred:
        start = time.perf_counter()
        with httpx.Client(base_url=url, timeout=60) as deleter:
            for i in stream:
                t = time.perf_counter()
                r = deleter.post(
                    "/v1/deletions",
                    json={"sample_ids": [i]},
                    headers={**headers, "Idempotency-Key": f"d{i}"},
                )
                lat.append(time.perf_counter() - t)
                codes.append(r.status_code)
                phases.append(server_phases(r.headers.get("server-timing")))
        end = time.perf_counter()
    return {
        "predictions": pred.window(start, end, batch),
        "deletions": {
            **percentiles(lat),
            "non_202": sum(c != 202 for c in codes),
            "requests_per_s": round(len(lat) / (end - start), 1),
        },
        "phases": phase_table(phases, lat),
    }


def kill_ids(ensemble: S3TEnsemble, shard: int, slices: int) -> list[int]:
    """One sample of each slice of ``shard``: deleting them switches every block of it off."""
    return [int(ensemble.partition.members(shard, k)[0]) for k in range(slices)]


def dead_shard_stream(ensemble: S3TEnsemble, args: argparse.Namespace) -> list[int]:
    """``args.deletions`` ids of shard 0 other than its kill ids: once shard 0 is switched off,
    deleting them leaves the live shards and their served prefixes as they are."""
    kill = set(kill_ids(ensemble, 0, args.slices))
    pool = [int(i) for i in ensemble.partition.members(0) if int(i) not in kill]
    if len(pool) < args.deletions:
        raise SystemExit(f"shard 0 holds {len(pool)} deletable ids, {args.deletions} needed")
    return [int(i) for i in np.random.default_rng(0).choice(pool, args.deletions, replace=False)]


def served_work(status: dict[str, Any]) -> dict[str, Any]:
    """What a prediction computes: the live shards and each one's served prefix (if reported)."""
    keys = ("live_shards", "serving")
    return {k: status[k] for k in keys if k in status}


def kill_shard_0(client: httpx.Client, ensemble: S3TEnsemble, args: argparse.Namespace) -> None:
    r = client.post(
        "/v1/deletions",
        json={"sample_ids": kill_ids(ensemble, 0, args.slices)},
        headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "kill-shard-0"},
    )
    assert r.status_code == 202, r.text


def steady(
    ensemble: S3TEnsemble, work: Path, x: torch.Tensor, args: argparse.Namespace, clients: int
) -> dict[str, Any]:
    """The same served work throughout: a fresh server on a fresh copy without background
    retrains, shard 0 switched off, then predictions alone and predictions during a stream of
    deletions of shard 0's other samples (the live shards are checked unchanged at the end)."""
    directory = work / f"model_steady_{clients}"
    ensemble.save(directory)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with (work / f"server_steady_{clients}.log").open("wb") as log:
        proc = start_server(directory, port, log, background_retrain=False)
        try:
            with httpx.Client(base_url=url, timeout=120) as client:
                kill_shard_0(client, ensemble, args)
                for _ in range(20):  # warm-up
                    client.post("/v1/predict", json={"inputs": x.tolist()}, headers=headers)
                before = served_work(client.get("/v1/model", headers=headers).json())
                with Predictors(url, x, clients) as pred:
                    start = time.perf_counter()
                    time.sleep(args.window)
                    end = time.perf_counter()
                alone = pred.window(start, end, args.batch)
                out = deletion_stream(
                    url, x, dead_shard_stream(ensemble, args), clients, args.batch
                )
                after = served_work(client.get("/v1/model", headers=headers).json())
        finally:
            stop_server(proc)
    if before != after:
        raise SystemExit(f"the served work changed during the steady run: {before} -> {after}")
    return {"clients": clients, "served_work": before, "alone": alone, **out}


def curve(
    ensemble: S3TEnsemble, work: Path, x: torch.Tensor, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """``steady`` for each number of predicting clients (a fresh server each)."""
    rows = []
    for clients in args.curve:
        row = steady(ensemble, work, x, args, clients)
        rows.append(row)
        print(
            f"  {clients} clients: {row['alone']['requests_per_s']} req/s, predict "
            f"{p99_text(row['alone'])}; during deletions predict {p99_text(row['predictions'])}, "
            f"delete {p99_text(row['deletions'])}",
            flush=True,
        )
    return rows


def in_process(
    model_dir: Path, ensemble: S3TEnsemble, x: torch.Tensor, args: argparse.Namespace
) -> dict[str, Any]:
    """The engine without HTTP on a fresh copy of the same model (after the server stopped):
    what a prediction (all shards live) and a deletion cost before uvicorn, the thread pool and
    the network stack."""
    service = DeletionService(ServiceConfig(model_dir=model_dir, background_retrain=False))
    service.start()
    try:
        who = Principal(name="bench", scopes=frozenset({"admin"}))
        pred, dele = [], []
        for _ in range(100):
            t = time.perf_counter()
            service.predict(x)
            pred.append(time.perf_counter() - t)
        others = [i for s in range(args.shards) for i in ensemble.partition.members(s)]
        stream = np.random.default_rng(1).choice(others, size=args.deletions, replace=False)
        for i in stream.tolist():
            t = time.perf_counter()
            service.submit_deletion(who, [int(i)], f"in-process-{i}")
            dele.append(time.perf_counter() - t)
    finally:
        service.close()
    return {"deletions": percentiles(dele), "predictions": percentiles(pred)}


def train_ensemble(bundle: Any, args: argparse.Namespace) -> tuple[S3TEnsemble, float]:
    """The served model: a smallcnn backbone pretrained on the public split, then frozen, and
    m x L x B LoRA blocks trained on D (manual retrain policy: the server retrains)."""
    cfg = S3TConfig(
        num_shards=args.shards,
        num_slices=args.slices,
        num_sequences=args.sequences,
        lora_rank=args.rank,
        train=TrainConfig(epochs=args.epochs, lr=0.02, batch_size=32),
        retrain_policy="manual",
    )
    t0 = time.perf_counter()
    torch.manual_seed(0)  # a backbone pretrained on the disjoint public split, then frozen
    net = create_model("smallcnn", bundle.num_classes, bundle.in_chans, bundle.image_size)
    select_trainable(net, "full")
    train(net, bundle.public, TrainConfig(epochs=args.pretrain_epochs, lr=0.05, schedule="cosine"))
    backbone = {k: v.detach().clone() for k, v in net.state_dict().items()}
    ensemble = S3TEnsemble.train(
        bundle.train, cfg, num_classes=bundle.num_classes, backbone_state=backbone
    )
    return ensemble, time.perf_counter() - t0


def served_ensemble(args: argparse.Namespace) -> tuple[S3TEnsemble, float, Any]:
    """The ensemble ``--ensemble`` names (its shape replaces the benchmark's) or a fresh one,
    and its data. A saved ensemble's data comes from its own data reference (data set, folder,
    options such as s3t_scale.py's ``--subset``; fingerprint-checked), so it is the data it was
    trained on."""
    if args.ensemble is None:
        bundle = load_dataset(args.dataset, args.data_dir, public_fraction=0.3)
        return (*train_ensemble(bundle, args), bundle)
    ensemble = S3TEnsemble.load(args.ensemble)
    meta = ensemble.meta
    if has_reference(meta):
        if meta["dataset"] != args.dataset:
            raise SystemExit(
                f"{args.ensemble} was trained on {meta['dataset']}, not {args.dataset}"
            )
        bundle = ensemble_data(meta)
    else:  # trained from Python on arrays: the named data set, checked as far as it can be
        bundle = load_dataset(args.dataset, args.data_dir, public_fraction=0.3)
        if meta.get("train_fingerprint") not in (None, bundle.train.fingerprint()):
            raise SystemExit(f"{args.ensemble} was not trained on {args.dataset}'s training split")
    c = ensemble.config
    args.shards, args.slices, args.sequences = c.num_shards, c.num_slices, c.num_sequences
    args.epochs, args.pretrain_epochs, args.rank = c.train.epochs, None, c.lora_rank
    args.adapt = c.adapt
    return ensemble, ensemble.train_seconds, bundle


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    load_start = os.getloadavg()
    ensemble, train_s, bundle = served_ensemble(args)
    test = bundle.test
    if 0 < args.eval_size < len(test):  # one forward per shard: the full test set costs minutes
        keep = np.random.default_rng(7).choice(len(test), args.eval_size, replace=False)
        test = test.subset(torch.from_numpy(np.sort(keep)))
    test_acc = ensemble.accuracy(test)
    work = Path(tempfile.mkdtemp(prefix="unlearnkit-bench-service-"))
    ensemble.save(work / "model")
    ensemble.save(work / "model_in_process")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    x = bundle.test.x[: args.batch]
    log = (work / "server.log").open("wb")
    proc = start_server(work / "model", port, log)
    results: dict[str, Any] = {}
    try:
        client = httpx.Client(base_url=url, timeout=120)
        for _ in range(20):  # warm-up
            client.post("/v1/predict", json={"inputs": x.tolist()}, headers=headers)

        def model() -> dict[str, Any]:
            return client.get("/v1/model", headers=headers).json()

        # 1. baseline: all m shards live
        work_all = served_work(model())
        with Predictors(url, x, args.clients) as pred:
            start = time.perf_counter()
            time.sleep(args.window)
            end = time.perf_counter()
        results["baseline"] = {**pred.window(start, end, args.batch), "served_work": work_all}

        # 2. predictions while shard 0 retrains in the background (m - 1 shards live)
        with Predictors(url, x, args.clients) as pred:
            t_kill = time.perf_counter()
            kill_shard_0(client, ensemble, args)
            started = ended = None
            work_during = None
            deadline = time.perf_counter() + 300
            while time.perf_counter() < deadline:
                status = model()
                now = time.perf_counter()
                if started is None and status["retrain_in_progress"] is not None:
                    started, work_during = now, served_work(status)
                if status["retrains_done"] >= 1:
                    ended = now
                    break
                time.sleep(0.2)
            if started is None or ended is None:
                raise SystemExit("the background retrain did not finish in 300 s")
            swapped = model()
        results["during_retrain"] = {
            **pred.window(started, ended, args.batch),
            "served_work": work_during,
        }
        results["retrain"] = {
            "shard": 0,
            "wall_s_kill_to_swap": round(ended - t_kill, 2),
            "wall_s_measured_window": round(ended - started, 2),
            "version_after_swap": swapped["version"],
            "live_shards_after": swapped["live_shards"],
        }
        final = model()
        results["final_model"] = {
            k: final.get(k)
            for k in (
                "version",
                "live_shards",
                "dead_shards",
                "deleted_samples",
                "retrains_done",
                "retrains_pending",
                "remaining_capacity",
            )
        }
        metrics = client.get("/metrics", headers=headers).text
        results["server_5xx"] = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("unlearnkit_http_requests_total") and 'status="5' in line
        )
        client.close()
    finally:
        stop_server(proc)
        log.close()
    # 3. the same live shards as 2. without a retrain: predictions alone, then during deletions
    # of shard 0's samples (switched off already, so the served work does not change)
    same = steady(ensemble, work, x, args, args.clients)
    if same["served_work"].get("live_shards") != (work_during or {}).get("live_shards"):
        raise SystemExit(
            f"the reference serves {same['served_work']}, the retrain window {work_during}"
        )
    results["same_shards_no_retrain"] = same["alone"]
    results["deletion_stream_predictions"] = same["predictions"]
    results["deletions"] = same["deletions"]
    results["deletion_phases"] = same["phases"]
    results["steady_served_work"] = same["served_work"]
    results["in_process"] = in_process(work / "model_in_process", ensemble, x, args)
    results["curve"] = curve(ensemble, work, x, args) if args.curve else []
    ref, during = results["same_shards_no_retrain"], results["during_retrain"]
    both = ref.get("p99_ms") is not None and during.get("p99_ms") is not None
    change = (during["p99_ms"] - ref["p99_ms"]) / ref["p99_ms"] if both else None
    return {
        "setup": {
            "dataset": args.dataset,
            "train_samples": len(bundle.train),
            "model": "smallcnn",
            "num_shards": args.shards,
            "num_slices": args.slices,
            "num_sequences": args.sequences,
            "lora_rank": args.rank,
            "adapt": args.adapt,  # which layers the blocks adapt (None: all)
            "test_samples_scored": len(test),
            "epochs_per_stage": args.epochs,
            "pretrain_epochs_public": args.pretrain_epochs,
            "train_seconds": round(train_s, 1),
            "test_accuracy": round(test_acc, 2),
            "prediction_batch": args.batch,
            "prediction_clients": args.clients,
            "server": "unlearnkit serve (uvicorn, 1 worker, torch threads 1), retrain in a "
            "child process",
            "cpu_count": os.cpu_count(),
            "load_average_at_start": load_start,
            "load_average_at_end": os.getloadavg(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        **results,
        "targets": {
            "deletion_p99_ms": results["deletions"].get("p99_ms"),
            "deletion_n": results["deletions"].get("n"),
            "deletion_p99_le_25ms": None
            if results["deletions"].get("p99_ms") is None
            else bool(results["deletions"]["p99_ms"] <= 25.0),
            "prediction_p99_change_during_retrain": None if change is None else round(change, 3),
            "prediction_p99_reference": "predictions alone on the same live shards, no retrain",
            "prediction_p99_within_20pct": None if change is None else bool(abs(change) <= 0.2),
        },
    }


# -- the load test: thousands of deletions, a kill -9 and a restart, nothing lost ---------------
class LoadClients(ClientThreads):
    """Prediction clients and paced deletion clients that outlive a server restart: a request
    that gets no answer (the server is down) is sent again with the same Idempotency-Key."""

    def __init__(self, url: str, x: torch.Tensor, ids: list[int], args: argparse.Namespace):
        self.url, self.body, self.args = url, {"inputs": x.tolist()}, args
        self.todo = list(ids)
        self.todo_lock = threading.Lock()
        self.acked: dict[int, str] = {}  # sample id -> request id of its 202
        self.deletion_rows: list[tuple[float, float, int]] = []  # (start, latency, status)
        self.prediction_rows: list[tuple[float, float, int]] = []
        self.no_answer = {"predict": 0, "delete": 0}
        self.stop = threading.Event()
        interval = args.load_clients_delete / args.load_deletion_rate
        self.threads = [
            threading.Thread(target=self._predict) for _ in range(args.load_clients_predict)
        ] + [
            threading.Thread(target=self._delete, args=(interval,))
            for _ in range(args.load_clients_delete)
        ]

    def _predict(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    r = client.post("/v1/predict", json=self.body, headers=headers)
                except httpx.TransportError:
                    self.no_answer["predict"] += 1
                    time.sleep(0.05)
                    continue
                self.prediction_rows.append((t0, time.perf_counter() - t0, r.status_code))

    def _next_id(self) -> int | None:
        with self.todo_lock:
            return self.todo.pop() if self.todo else None

    def _delete(self, interval: float) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                i = self._next_id()
                if i is None:
                    return
                due = time.perf_counter() + interval
                headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": f"load-{i}"}
                while not self.stop.is_set():  # until this id is acknowledged
                    t0 = time.perf_counter()
                    try:
                        r = client.post("/v1/deletions", json={"sample_ids": [i]}, headers=headers)
                    except httpx.TransportError:
                        self.no_answer["delete"] += 1
                        time.sleep(0.1)
                        continue
                    self.deletion_rows.append((t0, time.perf_counter() - t0, r.status_code))
                    if r.status_code == 202:
                        self.acked[i] = r.json()["request_id"]
                        break
                    time.sleep(0.1)  # a 429 / 503: back off, same key
                time.sleep(max(0.0, due - time.perf_counter()))


def ledger_deletions(path: Path) -> list[tuple[str, str, list[int]]]:
    """(request id, status, sample ids) of every deletion event in a ledger file."""
    import sqlite3

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT request_id, status, payload FROM events WHERE kind = 'deletion'"
        ).fetchall()
    return [(rid, status, json.loads(payload)["sample_ids"]) for rid, status, payload in rows]


def load_test(args: argparse.Namespace) -> dict[str, Any]:
    """>= 2,000 single-id deletions (paced) and >= 20,000 predictions against one server,
    background retrains of the shards the deletions kill, one kill -9 halfway and a restart;
    then the acknowledged deletions are compared with the ledger."""
    torch.set_num_threads(1)
    load_start = os.getloadavg()
    bundle = load_dataset(
        "synthetic",
        n_train=args.load_samples,
        n_test=64,
        image_size=8,
        channels=1,
        public_fraction=0.2,
    )
    ensemble, train_s = train_ensemble(bundle, args)
    work = Path(tempfile.mkdtemp(prefix="unlearnkit-bench-load-"))
    directory = work / "model"
    ensemble.save(directory)
    # shard 0 is never deleted from, so predictions always have a live shard to answer with
    others = [i for s in range(1, args.shards) for i in ensemble.partition.members(s)]
    if len(others) < args.load_deletions:
        raise SystemExit(f"only {len(others)} deletable samples for {args.load_deletions}")
    rng = np.random.default_rng(0)
    ids = [int(i) for i in rng.choice(others, size=args.load_deletions, replace=False)]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    x = bundle.test.x[: args.batch]
    log = (work / "server.log").open("wb")
    proc = start_server(directory, port, log)
    kill: dict[str, Any] = {}
    start = time.perf_counter()
    with LoadClients(url, x, ids, args) as clients:
        while len(clients.acked) < args.load_deletions // 2:
            time.sleep(0.05)
        kill["acked_before"] = len(clients.acked)
        kill["at_s"] = round(time.perf_counter() - start, 2)
        proc.kill()  # SIGKILL: no shutdown, no final snapshot
        proc.wait()
        t_down = time.perf_counter()
        proc = start_server(directory, port, log)
        kill["restart_s"] = round(time.perf_counter() - t_down, 2)
        while not (
            len(clients.acked) == args.load_deletions
            and sum(r[2] == 200 for r in clients.prediction_rows) >= args.load_predictions
        ):
            time.sleep(0.2)
            if time.perf_counter() - start > args.load_timeout_s:
                break
    wall = time.perf_counter() - start
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            final = client.get("/v1/model", headers={"Authorization": f"Bearer {TOKEN}"}).json()
            metrics = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    finally:
        stop_server(proc)
        log.close()
    events = ledger_deletions(directory / "service" / "ledger.sqlite3")
    applied = [(rid, sids) for rid, status, sids in events if status == "applied"]
    applied_ids = [i for _, sids in applied for i in sids]
    acked_ids = set(clients.acked)
    d_codes = [r[2] for r in clients.deletion_rows]
    p_codes = [r[2] for r in clients.prediction_rows]
    return {
        "setup": {
            "dataset": "synthetic 8x8 (timing only)",
            "train_samples": len(bundle.train),
            "model": "smallcnn",
            "num_shards": args.shards,
            "num_slices": args.slices,
            "num_sequences": args.sequences,
            "train_seconds": round(train_s, 1),
            "prediction_clients": args.load_clients_predict,
            "deletion_clients": args.load_clients_delete,
            "deletion_rate_target_per_s": args.load_deletion_rate,
            "server": "unlearnkit serve, torch threads 1, background retrain in a child process",
            "cpu_count": os.cpu_count(),
            "load_average_at_start": load_start,
            "load_average_at_end": os.getloadavg(),
        },
        "wall_s": round(wall, 1),
        "kill": kill,
        "deletions": {
            "requested_ids": len(ids),
            "acknowledged": len(acked_ids),
            "applied_in_ledger": len(set(applied_ids)),
            "acknowledged_not_applied": len(acked_ids - set(applied_ids)),
            "applied_not_acknowledged": len(set(applied_ids) - acked_ids),
            "ids_in_more_than_one_event": len(applied_ids) - len(set(applied_ids)),
            "ack_request_id_matches_ledger": all(
                clients.acked[i] == rid for rid, sids in applied for i in sids if i in clients.acked
            ),
            "http_requests": len(d_codes),
            "status_counts": {str(c): d_codes.count(c) for c in sorted(set(d_codes))},
            "no_answer_while_down": clients.no_answer["delete"],
            "latency_202": percentiles([r[1] for r in clients.deletion_rows if r[2] == 202]),
        },
        "predictions": {
            "requests": len(p_codes),
            "status_counts": {str(c): p_codes.count(c) for c in sorted(set(p_codes))},
            "no_answer_while_down": clients.no_answer["predict"],
            "latency_200": percentiles([r[1] for r in clients.prediction_rows if r[2] == 200]),
        },
        "server_5xx_after_restart": sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("unlearnkit_http_requests_total") and 'status="5' in line
        ),
        "final_model": {
            k: final.get(k)
            for k in ("version", "live_shards", "dead_shards", "deleted_samples", "retrains_done")
        },
    }


def load_markdown(res: dict[str, Any]) -> str:
    s, d, p, k = res["setup"], res["deletions"], res["predictions"], res["kill"]
    return "\n".join(
        [
            "# Deletion service load test",
            "",
            f"S3T {s['num_shards']}x{s['num_slices']}x{s['num_sequences']} smallcnn on "
            f"{s['train_samples']} {s['dataset']} samples, served by `unlearnkit serve` on "
            f"127.0.0.1; {s['prediction_clients']} prediction clients and "
            f"{s['deletion_clients']} deletion clients (single ids, paced at "
            f"{s['deletion_rate_target_per_s']}/s, shard 0 never deleted from). CPUs: "
            f"{s['cpu_count']}, load average at the start "
            f"{', '.join(f'{v:.1f}' for v in s['load_average_at_start'])}.",
            "",
            f"Wall time {res['wall_s']} s. kill -9 after {k['acked_before']} acknowledged "
            f"deletions (t = {k['at_s']} s); the restarted server answered its health check "
            f"{k['restart_s']} s later.",
            "",
            "| | count |",
            "|---|---|",
            f"| deletion ids requested | {d['requested_ids']} |",
            f"| acknowledged (202) | {d['acknowledged']} |",
            f"| applied in the ledger | {d['applied_in_ledger']} |",
            f"| acknowledged, not applied | {d['acknowledged_not_applied']} |",
            f"| applied, not acknowledged | {d['applied_not_acknowledged']} |",
            f"| ids in more than one event (duplicates) | {d['ids_in_more_than_one_event']} |",
            f"| deletion HTTP requests (with retries) | {d['http_requests']} |",
            f"| deletion status codes | {d['status_counts']} |",
            f"| deletion requests unanswered while the server was down | "
            f"{d['no_answer_while_down']} |",
            f"| prediction requests | {p['requests']} |",
            f"| prediction status codes | {p['status_counts']} |",
            f"| prediction requests unanswered while down | {p['no_answer_while_down']} |",
            f"| 5xx counted by the restarted server | {res['server_5xx_after_restart']:.0f} |",
            "",
            f"Deletion latency (202): p50 {d['latency_202'].get('p50_ms')} ms, "
            f"{p99_text(d['latency_202'])}. Prediction latency (200): p50 "
            f"{p['latency_200'].get('p50_ms')} ms, {p99_text(p['latency_200'])}.",
            f"Final model: {res['final_model']}.",
            "",
        ]
    )


def markdown(res: dict[str, Any]) -> str:
    s, t, ip = res["setup"], res["targets"], res["in_process"]
    m = s["num_shards"]
    rows = [
        (f"alone, all {m} shards live", res["baseline"]),
        (
            f"while shard 0 retrains ({res['retrain']['wall_s_measured_window']} s), {m - 1} live",
            res["during_retrain"],
        ),
        (f"alone, the same {m - 1} live, no retrain (fresh server)", res["same_shards_no_retrain"]),
        (f"during the deletion stream, the same {m - 1} live", res["deletion_stream_predictions"]),
    ]
    lines = [
        "# Deletion service benchmark",
        "",
        f"S3T on {s.get('dataset', 'digits')} ({s['train_samples']} training samples): "
        f"smallcnn, {s['num_shards']} shards x {s['num_slices']} slices x "
        f"{s['num_sequences']} sequences, LoRA rank {s.get('lora_rank', 4)} (adapt "
        f"{s.get('adapt') or 'all'}) on a backbone "
        f"pretrained on the public split, {s['epochs_per_stage']} epochs per stage; trained in "
        f"{s['train_seconds']} s, test accuracy {s['test_accuracy']}% "
        f"(on {s.get('test_samples_scored', 'all')} test images). Served by `unlearnkit "
        f"serve` on 127.0.0.1; {s['prediction_clients']} prediction clients, batches of "
        f"{s['prediction_batch']} images. CPUs: {s['cpu_count']} (load average "
        f"{', '.join(f'{v:.1f}' for v in s['load_average_at_start'])} at the start, "
        f"{', '.join(f'{v:.1f}' for v in s['load_average_at_end'])} at the end: a shared "
        "machine).",
        "",
        "Each comparison holds the served work constant: the retrain window is compared with "
        "predictions on the same live shards without a retrain, and the deletion stream "
        "deletes samples of shard 0, already switched off, so no deletion changes what a "
        f"prediction computes. No p99 is given from fewer than {MIN_P99_SAMPLES} requests "
        "(n/a, with the max).",
        "",
        "| predictions | n (requests) | req/s | images/s | p50 ms | p99 ms | max ms | non-200 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, w in rows:
        lines.append(
            f"| {name} | {w.get('n', 0)} | {w.get('requests_per_s')} | "
            f"{w.get('images_per_s')} | {w.get('p50_ms')} | {p99_cell(w)} | {w.get('max_ms')} | "
            f"{w.get('non_200')} |"
        )
    d = res["deletions"]
    lines += [
        "",
        f"Deletions (single ids of the switched-off shard 0, one per request, back to back, "
        f"applied before the 202): n={d['n']}, p50 {d['p50_ms']} ms, {p99_text(d)}, "
        f"{d['requests_per_s']} req/s, non-202: {d['non_202']}. Served work "
        f"throughout: {res.get('steady_served_work')}.",
        f"Retrain of shard 0: {res['retrain']['wall_s_kill_to_swap']} s from the deletion that "
        f"killed it to the swap (version {res['retrain']['version_after_swap']}). "
        f"Server 5xx responses in the whole run: {res['server_5xx']:.0f}.",
        f"Final model: {res['final_model']}.",
        "",
        f"In-process engine on a fresh copy of the model (no HTTP, no other client): "
        f"predictions with all shards live, p50 {ip['predictions']['p50_ms']} ms, "
        f"{p99_text(ip['predictions'])}; then single-id deletions on live shards (ledger "
        f"commit + apply + result commit), p50 {ip['deletions']['p50_ms']} ms, "
        f"{p99_text(ip['deletions'])}.",
        "",
        f"Targets: deletion p99 <= 25 ms: {t['deletion_p99_le_25ms']} ({p99_text(d)}); "
        f"prediction p99 while a shard retrains within +-20% of predictions alone on the same "
        f"live shards: {t['prediction_p99_within_20pct']} (change "
        f"{t['prediction_p99_change_during_retrain']}; None: fewer than {MIN_P99_SAMPLES} "
        "requests in a window).",
        "",
    ]
    phases = res.get("deletion_phases") or {}
    if phases:
        lines += [
            "Where a deletion's time goes (the server's Server-Timing header, per request):",
            "",
            "| phase | n | p50 ms | p99 ms | max ms |",
            "|---|---|---|---|---|",
        ]
        for name, v in phases.items():
            lines.append(
                f"| {name} | {v.get('n')} | {v.get('p50_ms')} | {p99_cell(v)} | {v.get('max_ms')} |"
            )
        lines.append("")
    if res.get("curve"):
        lines += [
            "Load curve (a fresh server per row, shard 0 switched off and no retrain, so every "
            "row serves the same live shards; predictions alone, then during the deletion "
            "stream of shard 0's samples):",
            "",
            "| predicting clients | n alone | predictions/s (alone) | predict p99 ms (alone) | "
            "n with deletions | predictions/s (with deletions) | predict p99 ms (with deletions) "
            "| n deletions | delete p50 ms | delete p99 ms | non-2xx |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in res["curve"]:
            b, pr, d = row["alone"], row["predictions"], row["deletions"]
            lines.append(
                f"| {row['clients']} | {b['n']} | {b['images_per_s']} | {p99_cell(b)} | "
                f"{pr.get('n', 0)} | {pr.get('images_per_s')} | {p99_cell(pr)} | {d['n']} | "
                f"{d.get('p50_ms')} | {p99_cell(d)} | "
                f"{b['non_200'] + pr.get('non_200', 0) + d['non_202']} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller smoke run")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--curve", default="8,32", help="predicting clients per load-curve row ('' for none)"
    )
    parser.add_argument("--tag", default="service", help="output file stem")
    parser.add_argument("--part", choices=["main", "load"], default="main")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--ensemble",
        type=Path,
        default=None,
        help="serve this saved S3T ensemble (e.g. from benchmarks/s3t_scale.py --save) instead "
        "of training one on digits",
    )
    parser.add_argument(
        "--eval-size", type=int, default=2000, help="test images scored for the accuracy line"
    )
    args = parser.parse_args()
    args.curve = [int(c) for c in args.curve.split(",") if c]
    args.shards, args.slices, args.sequences = 4, 3, 3
    args.epochs = 2 if args.quick else 4
    args.pretrain_epochs = 3 if args.quick else 10
    args.window = 4.0 if args.quick else 12.0
    args.deletions = 30 if args.quick else 150
    args.batch, args.clients, args.rank, args.adapt = 16, 2, 4, None
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part == "load":
        args.epochs, args.pretrain_epochs = 2, 3
        args.load_deletions = 300 if args.quick else 2000
        args.load_predictions = 2000 if args.quick else 20000
        args.load_samples = 600 if args.quick else 3600
        args.load_clients_predict, args.load_clients_delete = 2, 2
        args.load_deletion_rate = 8.0 if not args.quick else 30.0
        args.load_timeout_s = 1200.0
        res = load_test(args)
        atomic_write_text(args.out / "load.json", json.dumps(res, indent=1))
        atomic_write_text(args.out / "load.md", load_markdown(res))
        print(load_markdown(res))
        return
    res = run(args)
    atomic_write_text(args.out / f"{args.tag}.json", json.dumps(res, indent=1))
    atomic_write_text(args.out / f"{args.tag}.md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
