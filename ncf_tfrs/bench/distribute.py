r"""Training throughput under each tf.distribute strategy on this host.

  python -m ncf_tfrs.bench --suite distribute --config synthetic-small \
      --product_flagfile configs/ml32m.flags --data_dir /tmp/tfds

Runs the train command as it is run in production (real processes, loopback
TF_CONFIG for the multi-worker case) for `epochs` epochs, `repeats` times,
and reports the median ratings/s of the epochs after the first (the chief's
`epoch_seconds`), so start-up and tracing are left out. On a host with one
CPU socket the strategies share the same cores: the figures show the overhead of each strategy, not a speed-up.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile

import numpy as np

# name -> (strategy flag, processes, extra flags)
SETUPS = {
    "one device": ("default", 1, []),
    "mirrored, 2 CPU replicas": ("mirrored", 1, ["--num_cpu_devices=2"]),
    "multi_worker_mirrored, 2 local workers": ("multi_worker_mirrored", 2, []),
}


def _free_ports(count: int) -> list[int]:
  sockets = [socket.socket() for _ in range(count)]
  try:
    for s in sockets:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def ratings_per_s(flagfile: str, dataset: str, data_dir: str | None,
                  strategy: str, processes: int, extra: list[str],
                  epochs: int, timeout_s: float) -> float:
  """Training ratings/s after the first epoch, in one train command run."""
  with tempfile.TemporaryDirectory() as model_dir:
    command = [sys.executable, "-m", "ncf_tfrs.train",
               f"--flagfile={flagfile}", f"--dataset={dataset}",
               f"--model_dir={model_dir}", "--export_dir=", "--eval_users=100",
               f"--epochs={epochs}", f"--distribution_strategy={strategy}",
               *extra]
    if data_dir:
      command.append(f"--data_dir={data_dir}")
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(processes)]}
    runs = []
    for index in range(processes):
      env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
      if processes > 1:
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})
      runs.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE))
    try:
      for run in runs:
        _, err = run.communicate(timeout=timeout_s)
        if run.returncode:
          raise RuntimeError(err.decode(errors="replace")[-3000:])
    finally:
      for run in runs:
        if run.poll() is None:
          run.kill()
    with open(os.path.join(model_dir, "metrics.json")) as f:
      metrics = json.load(f)
    with open(os.path.join(model_dir, "config.json")) as f:
      batch_size = json.load(f)["train"]["batch_size"]
  ratings_per_epoch = metrics["steps_run"] // epochs * batch_size
  timed = metrics["epoch_seconds"][1:]
  return ratings_per_epoch * len(timed) / sum(timed)


def run_suite(flagfile: str, dataset: str, data_dir: str | None,
              epochs: int, repeats: int, timeout_s: float) -> dict:
  """Every setup of `SETUPS`, `repeats` runs each; medians of ratings/s."""
  results = []
  for name, (strategy, processes, extra) in SETUPS.items():
    rates = [ratings_per_s(flagfile, dataset, data_dir, strategy, processes,
                           extra, epochs, timeout_s)
             for _ in range(repeats)]
    results.append({"setup": name, "strategy": strategy,
                    "processes": processes, "epochs": epochs,
                    "repeats": rates,
                    "ratings_per_s": float(np.median(rates))})
    print(results[-1], flush=True)
  return {"flagfile": flagfile, "dataset": dataset, "cpus": os.cpu_count(),
          "results": results}


def print_table(report: dict) -> None:
  print("\n| setup | ratings/s (median) | runs |\n|---|---|---|")
  for r in report["results"]:
    runs = ", ".join(f"{x:,.0f}" for x in r["repeats"])
    print(f"| {r['setup']} | {r['ratings_per_s']:,.0f} | {runs} |")
