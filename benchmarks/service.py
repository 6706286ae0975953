"""Deletion-service benchmark: a bounded load run against `unlearnkit serve` on 127.0.0.1.

  PYTHONPATH=src python benchmarks/service.py            # -> results/service/service.{json,md}
  PYTHONPATH=src python benchmarks/service.py --quick    # smaller, for a smoke run

One S3T ensemble (digits, smallcnn, m x L x B LoRA blocks) is trained, then served by a real
`unlearnkit serve` child process (uvicorn, background retrain in its own child process). The
client (httpx, threads) measures three windows in the same run:
  1. baseline: predictions only (no deletions, no retrain);
  2. retrain: one shard is killed by deleting a sample from each of its slices; predictions are
     measured while that shard retrains in the background, until it is swapped back in;
  3. deletions: a stream of single-id deletion requests (one client, back to back) while the
     prediction clients keep going; shards that die meanwhile are retrained in the background.
Reported: prediction throughput and p50/p99 latency per window, deletion p50/p99, the retrain
time, and the targets of issue 7 (deletion p99 <= 50 ms; prediction p99 within +-20% while a
shard retrains). The machine's load average is recorded: the CPUs may be shared.
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
from unlearnkit.models import create_model, select_trainable
from unlearnkit.models.checkpoint import atomic_write_text
from unlearnkit.service import DeletionService, ServiceConfig
from unlearnkit.service.auth import Principal
from unlearnkit.training import TrainConfig, train

OUT = Path("results/service")
TOKEN = "bench-token-0123456789"


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    a = np.asarray(values) * 1000.0
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "mean_ms": round(float(a.mean()), 2),
        "max_ms": round(float(a.max()), 2),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, port: int, log: Any) -> subprocess.Popen:
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
        "1",
        "--snapshot-every",
        "50",
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


class Predictors:
    """``n`` threads posting prediction batches back to back; (start, latency, status) rows."""

    def __init__(self, url: str, x: torch.Tensor, n: int) -> None:
        self.url, self.body, self.n = url, {"inputs": x.tolist()}, n
        self.rows: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(n)]

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                r = client.post("/v1/predict", json=self.body, headers=headers)
                self.rows.append((t0, time.perf_counter() - t0, r.status_code))

    def __enter__(self) -> Predictors:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def window(self, start: float, end: float, batch: int) -> dict[str, Any]:
        rows = [r for r in self.rows if start <= r[0] < end]
        lat = [r[1] for r in rows]
        out = percentiles(lat)
        out["seconds"] = round(end - start, 2)
        out["requests_per_s"] = round(len(rows) / max(end - start, 1e-9), 1)
        out["images_per_s"] = round(len(rows) * batch / max(end - start, 1e-9), 1)
        out["non_200"] = sum(r[2] != 200 for r in rows)
        return out


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


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    load_start = os.getloadavg()
    bundle = load_dataset("digits", public_fraction=0.3)
    cfg = S3TConfig(
        num_shards=args.shards,
        num_slices=args.slices,
        num_sequences=args.sequences,
        lora_rank=4,
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
    train_s = time.perf_counter() - t0
    test_acc = ensemble.accuracy(bundle.test)
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

        # 1. baseline
        with Predictors(url, x, args.clients) as pred:
            start = time.perf_counter()
            time.sleep(args.window)
            end = time.perf_counter()
        results["baseline"] = pred.window(start, end, args.batch)

        # 2. predictions while shard 0 retrains in the background
        kill = [ensemble.partition.members(0, k)[0] for k in range(args.slices)]
        with Predictors(url, x, args.clients) as pred:
            t_kill = time.perf_counter()
            r = client.post(
                "/v1/deletions",
                json={"sample_ids": kill},
                headers={**headers, "Idempotency-Key": "kill-shard-0"},
            )
            assert r.status_code == 202, r.text
            started = ended = None
            deadline = time.perf_counter() + 300
            while time.perf_counter() < deadline:
                status = model()
                now = time.perf_counter()
                if started is None and status["retrain_in_progress"] is not None:
                    started = now
                if status["retrains_done"] >= 1:
                    ended = now
                    break
                time.sleep(0.2)
            if started is None or ended is None:
                raise SystemExit("the background retrain did not finish in 300 s")
            swapped = model()
        results["during_retrain"] = pred.window(started, ended, args.batch)
        results["retrain"] = {
            "shard": 0,
            "wall_s_kill_to_swap": round(ended - t_kill, 2),
            "wall_s_measured_window": round(ended - started, 2),
            "version_after_swap": swapped["version"],
            "live_shards_after": swapped["live_shards"],
        }

        # 3. deletion stream (single ids, one client) alongside predictions
        others = [i for s in range(1, args.shards) for i in ensemble.partition.members(s)]
        rng = np.random.default_rng(0)
        stream = [int(i) for i in rng.choice(others, size=args.deletions, replace=False)]
        lat, codes = [], []
        with Predictors(url, x, args.clients) as pred:
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
            end = time.perf_counter()
        results["deletion_stream_predictions"] = pred.window(start, end, args.batch)
        results["deletions"] = {
            **percentiles(lat),
            "non_202": sum(c != 202 for c in codes),
            "requests_per_s": round(len(lat) / (end - start), 1),
        }
        time.sleep(1.0)
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
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    results["in_process"] = in_process(work / "model_in_process", ensemble, x, args)
    base, during = results["baseline"], results["during_retrain"]
    change = (during["p99_ms"] - base["p99_ms"]) / base["p99_ms"] if base.get("n") else None
    return {
        "setup": {
            "dataset": "digits",
            "train_samples": len(bundle.train),
            "model": "smallcnn",
            "num_shards": args.shards,
            "num_slices": args.slices,
            "num_sequences": args.sequences,
            "lora_rank": 4,
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
            "deletion_p99_le_50ms": bool(results["deletions"].get("p99_ms", 1e9) <= 50.0),
            "prediction_p99_change_during_retrain": None if change is None else round(change, 3),
            "prediction_p99_within_20pct": None if change is None else bool(abs(change) <= 0.2),
        },
    }


def markdown(res: dict[str, Any]) -> str:
    s, t, ip = res["setup"], res["targets"], res["in_process"]
    rows = [
        ("baseline (predictions only)", res["baseline"]),
        (
            f"while shard 0 retrains ({res['retrain']['wall_s_measured_window']} s)",
            res["during_retrain"],
        ),
        ("during the deletion stream", res["deletion_stream_predictions"]),
    ]
    lines = [
        "# Deletion service benchmark",
        "",
        f"S3T on digits ({s['train_samples']} training samples): smallcnn, "
        f"{s['num_shards']} shards x {s['num_slices']} slices x {s['num_sequences']} sequences, "
        f"LoRA rank 4 on a backbone pretrained on the public split, {s['epochs_per_stage']} "
        f"epochs per stage; pretrained and trained in "
        f"{s['train_seconds']} s, test accuracy {s['test_accuracy']}%. Served by `unlearnkit "
        f"serve` on 127.0.0.1; {s['prediction_clients']} prediction clients, batches of "
        f"{s['prediction_batch']} images. CPUs: {s['cpu_count']} (load average "
        f"{', '.join(f'{v:.1f}' for v in s['load_average_at_start'])} at the start, "
        f"{', '.join(f'{v:.1f}' for v in s['load_average_at_end'])} at the end: a shared "
        "machine).",
        "",
        "| predictions | requests | req/s | images/s | p50 ms | p99 ms | non-200 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, w in rows:
        lines.append(
            f"| {name} | {w.get('n', 0)} | {w.get('requests_per_s')} | "
            f"{w.get('images_per_s')} | {w.get('p50_ms')} | {w.get('p99_ms')} | "
            f"{w.get('non_200')} |"
        )
    d = res["deletions"]
    lines += [
        "",
        f"Deletions (single id per request, back to back, applied before the 202): "
        f"{d['n']} requests, p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms, max {d['max_ms']} ms, "
        f"{d['requests_per_s']} req/s, non-202: {d['non_202']}.",
        f"Retrain of shard 0: {res['retrain']['wall_s_kill_to_swap']} s from the deletion that "
        f"killed it to the swap (version {res['retrain']['version_after_swap']}). "
        f"Server 5xx responses in the whole run: {res['server_5xx']:.0f}.",
        f"Final model: {res['final_model']}.",
        "",
        f"In-process engine on a fresh copy of the model (no HTTP, no other client): "
        f"{ip['predictions']['n']} predictions with all shards live, p50 "
        f"{ip['predictions']['p50_ms']} ms, p99 {ip['predictions']['p99_ms']} ms; then "
        f"{ip['deletions']['n']} single-id deletions (ledger commit + apply + result commit), "
        f"p50 {ip['deletions']['p50_ms']} ms, p99 {ip['deletions']['p99_ms']} ms.",
        "",
        f"Targets: deletion p99 <= 50 ms: {t['deletion_p99_le_50ms']} ({t['deletion_p99_ms']} "
        f"ms); prediction p99 within +-20% while a shard retrains: "
        f"{t['prediction_p99_within_20pct']} (change {t['prediction_p99_change_during_retrain']})."
        "",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller smoke run")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.shards, args.slices, args.sequences = 4, 3, 3
    args.epochs = 2 if args.quick else 4
    args.pretrain_epochs = 3 if args.quick else 10
    args.window = 4.0 if args.quick else 12.0
    args.deletions = 30 if args.quick else 150
    args.batch, args.clients = 16, 2
    res = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "service.json", json.dumps(res, indent=1))
    atomic_write_text(args.out / "service.md", markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
