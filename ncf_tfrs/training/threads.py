"""How many threads TensorFlow's runtime runs a training step's ops on.

A training step here is many small ops on independent branches (the
retrieval chunks' softmax, four embedding tables' sparse gathers and
updates, the NCF's MLP), not a few large ones. TensorFlow's default gives
every op all the cores (intra-op) and also runs as many ops at once
(inter-op), so on a small machine the two pools ask for twice the cores and
each op pays for splitting work it barely has. Half the cores per op and two
ops at once keeps every core busy without oversubscribing them; the
measurements behind it are in docs/results/training_speed.md.

The settings must be made before TensorFlow runs its first op: the train
command makes them first thing (`configure`); a process that already ran
TensorFlow keeps its own, with a warning.
"""

from __future__ import annotations

import dataclasses
import os

from absl import logging
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class ThreadConfig:
  """Thread pools of the TensorFlow runtime.

  Attributes:
    intra_op: threads one op may split its work over. None: half the cores,
      at least 1; 0: TensorFlow's default (all the cores).
    inter_op: ops run at once. None: 2 (1 on a one-core machine); 0:
      TensorFlow's default (as many as the cores).
  """
  intra_op: int | None = None
  inter_op: int | None = None

  def __post_init__(self):
    for name in ("intra_op", "inter_op"):
      value = getattr(self, name)
      if value is not None and value < 0:
        raise ValueError(f"{name}_threads must be >= 0 (0: TensorFlow's "
                         f"default), got {value}.")


def resolve(config: ThreadConfig, cores: int | None = None) -> tuple[int, int]:
  """(intra-op, inter-op) threads that `config` asks for on `cores` cores
  (default: this machine's); 0 stands for TensorFlow's default."""
  cores = cores or os.cpu_count() or 1
  intra = max(1, cores // 2) if config.intra_op is None else config.intra_op
  inter = min(2, cores) if config.inter_op is None else config.inter_op
  return intra, inter


def configure(config: ThreadConfig) -> tuple[int, int]:
  """Sets the runtime's thread pools; returns those it runs with.

  In a process whose TensorFlow runtime already started with other settings
  (a notebook, a test session), those stay, and a warning says so.
  """
  intra, inter = resolve(config)
  try:
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
  except RuntimeError:
    logging.warning(
        "TensorFlow is already running in this process: it keeps its "
        "thread pools (intra-op %d, inter-op %d) instead of %d and %d.",
        *current(), intra, inter)
  return current()


def current() -> tuple[int, int]:
  """(intra-op, inter-op) threads of this process's runtime (0: default)."""
  return (tf.config.threading.get_intra_op_parallelism_threads(),
          tf.config.threading.get_inter_op_parallelism_threads())
