r"""Training throughput under each tf.distribute strategy on this host.

  python -m ncf_tfrs.bench_distribute --bench_data_dir /tmp/tfds

Runs the train command as it is run in production (real processes, loopback
TF_CONFIG for the multi-worker case) for `--short_epochs` and `--long_epochs`
epochs, and reports ratings/s of the difference, so start-up, tracing and
evaluation cancel out. On a host with one CPU socket the strategies share the
same cores: the figures show the overhead of each strategy, not a speed-up.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

_FLAGFILE = flags.DEFINE_string("flagfile_for_runs", "configs/ml32m.flags",
                                "Flagfile of the measured runs.")
_DATASET = flags.DEFINE_string("bench_dataset", "synthetic-small",
                               "Dataset of the measured runs.")
_DATA_DIR = flags.DEFINE_string("bench_data_dir", None, "TFDS data dir.")
_SHORT = flags.DEFINE_integer("short_epochs", 2, "Epochs of the short run.")
_LONG = flags.DEFINE_integer("long_epochs", 8, "Epochs of the long run.")
_OUTPUT = flags.DEFINE_string("output", "bench_distribute.json", "JSON out.")
_TIMEOUT = flags.DEFINE_integer("timeout_s", 900, "Limit of each run.")

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


def train_seconds(strategy: str, processes: int, extra: list[str],
                  epochs: int) -> tuple[float, int]:
  """Seconds and ratings the chief trained in one run of the train command.
  """
  with tempfile.TemporaryDirectory() as model_dir:
    command = [sys.executable, "-m", "ncf_tfrs.train",
               f"--flagfile={_FLAGFILE.value}", f"--dataset={_DATASET.value}",
               f"--model_dir={model_dir}", "--export_dir=", "--eval_users=100",
               f"--epochs={epochs}", f"--distribution_strategy={strategy}",
               *extra]
    if _DATA_DIR.value:
      command.append(f"--data_dir={_DATA_DIR.value}")
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
        _, err = run.communicate(timeout=_TIMEOUT.value)
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
  return metrics["train_seconds"], metrics["steps_run"] * batch_size


def main(argv):
  del argv
  results = []
  for name, (strategy, processes, extra) in SETUPS.items():
    short, short_ratings = train_seconds(strategy, processes, extra,
                                         _SHORT.value)
    long, long_ratings = train_seconds(strategy, processes, extra, _LONG.value)
    results.append({"setup": name, "strategy": strategy,
                    "processes": processes,
                    "ratings_timed": long_ratings - short_ratings,
                    "ratings_per_s": (long_ratings - short_ratings) /
                                     (long - short)})
    print(results[-1], flush=True)
  with open(_OUTPUT.value, "w") as f:
    json.dump({"flagfile": _FLAGFILE.value, "dataset": _DATASET.value,
               "cpus": os.cpu_count(), "results": results}, f, indent=2)
  print("\n| setup | ratings/s |\n|---|---|")
  for r in results:
    print(f"| {r['setup']} | {r['ratings_per_s']:,.0f} |")


if __name__ == "__main__":
  app.run(main)
