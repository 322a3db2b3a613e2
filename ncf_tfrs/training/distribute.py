"""Where training runs: tf.distribute strategies for the train command.

One flagfile trains under every strategy; `--distribution_strategy` only
changes where the steps run:

- default: this process's default device.
- mirrored: synchronous data parallelism over this host's devices (GPUs, or
  the CPU split into `num_cpu_devices` logical devices).
- multi_worker_mirrored: the same over several hosts; each host runs the same
  command with its own TF_CONFIG, and worker 0 (or the "chief" task) writes
  the checkpoints, metrics and export.
- parameter_server: asynchronous training for embedding tables too large for
  one worker. Variables larger than `ps_min_shard_bytes` are split by rows
  across the "ps" tasks; the "chief" task runs this training code and sends
  steps to the "worker" tasks, which (like the ps tasks) only run a
  `tf.distribute.Server` (`serve_if_server_task`).

Batch semantics: `batch_size` is the global batch of one synchronous step; with
R replicas each replica trains on batch_size / R ratings, and its gradients
are summed with the others', which with the model's summed losses is the
gradient of the global batch. Retrieval chunks (`retrieval_batch_size`) are
cut from each replica's share, so a replica's in-batch negatives are the other
movies of its own chunk. Under parameter_server every worker step is a whole
`batch_size` batch, applied as soon as it is done.

Data sharding: with one input pipeline per worker, pipeline w of W trains on
per-replica batches w, w + W, w + 2W... of the same seeded permutation of the
ratings, so a synchronous global step covers exactly the ratings of the
single-device run's batch at that step, and no two replicas share a batch.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable

from absl import logging
import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker_mirrored",
              "parameter_server")


@dataclasses.dataclass(frozen=True)
class DistributeConfig:
  """How training is distributed.

  Attributes:
    strategy: one of `STRATEGIES`.
    num_cpu_devices: split the host CPU into this many logical devices, for
      `mirrored` on hosts without GPUs (tests, overhead measurements); 0 keeps
      the physical devices.
    ps_min_shard_bytes: under parameter_server, variables are split into
      shards of at least this many bytes, at most one shard per ps task.
    cluster_timeout_s: how long a worker waits for the others to join before
      it gives up (so a missing peer fails the run instead of hanging it).
  """
  strategy: str = "default"
  num_cpu_devices: int = 0
  ps_min_shard_bytes: int = 256 << 10
  cluster_timeout_s: int = 600

  def __post_init__(self):
    if self.strategy not in STRATEGIES:
      raise ValueError(
          f"Unknown strategy {self.strategy!r}; expected one of {STRATEGIES}.")


def tf_config() -> dict:
  """The cluster description of this process (TF_CONFIG), {} if unset."""
  return json.loads(os.environ.get("TF_CONFIG") or "{}")


def _task() -> tuple[str | None, int]:
  task = tf_config().get("task", {})
  return task.get("type"), int(task.get("index", 0))


def serve_if_server_task(config: DistributeConfig) -> bool:
  """Runs this process as a parameter-server cluster's worker or ps task.

  Under parameter_server only the chief runs the training program; worker and
  ps tasks just host a server until the chief's cluster goes away. Returns
  False (at once) on every other process; does not return on a server task.
  """
  task_type, task_id = _task()
  if config.strategy != "parameter_server" or task_type not in ("worker",
                                                                 "ps"):
    return False
  resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
  logging.info("Starting the %s %d server of a parameter-server cluster.",
               task_type, task_id)
  server = tf.distribute.Server(
      resolver.cluster_spec(), job_name=task_type, task_index=task_id,
      protocol=resolver.rpc_layer or "grpc", start=True)
  server.join()
  return True  # Unreachable: join() returns only when the process is killed.


def make_strategy(
    config: DistributeConfig,
    cluster_resolver: tf.distribute.cluster_resolver.ClusterResolver | None = (
        None)
) -> tf.distribute.Strategy:
  """The strategy of `config`; create it before any other TensorFlow work.

  Args:
    config: the run's distribution settings.
    cluster_resolver: the cluster of a parameter-server strategy (default: from
      TF_CONFIG); tests pass an in-process cluster's resolver.

  Returns:
    The strategy; `default` is TensorFlow's default strategy.
  """
  if config.num_cpu_devices:
    _split_cpu(config.num_cpu_devices)
  if config.strategy == "default":
    return tf.distribute.get_strategy()
  if config.strategy == "mirrored":
    devices = None
    if not tf.config.list_logical_devices("GPU") and config.num_cpu_devices:
      devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices)
  if config.strategy == "multi_worker_mirrored":
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=config.cluster_timeout_s))
  resolver = (cluster_resolver or
              tf.distribute.cluster_resolver.TFConfigClusterResolver())
  num_ps = len(resolver.cluster_spec().as_dict().get("ps", []))
  if not num_ps:
    raise ValueError("parameter_server needs 'ps' tasks in the cluster "
                     "(TF_CONFIG); see the README's multi-host section.")
  return tf.distribute.ParameterServerStrategy(
      resolver,
      variable_partitioner=(
          tf.distribute.experimental.partitioners.MinSizePartitioner(
              min_shard_bytes=config.ps_min_shard_bytes, max_shards=num_ps)))


def _split_cpu(num_devices: int) -> None:
  """Splits the first CPU into `num_devices` logical devices, once."""
  [cpu] = tf.config.list_physical_devices("CPU")[:1]
  current = tf.config.get_logical_device_configuration(cpu)
  wanted = [tf.config.LogicalDeviceConfiguration()] * num_devices
  if current and len(current) == num_devices:
    return
  try:
    tf.config.set_logical_device_configuration(cpu, wanted)
  except RuntimeError as e:
    raise RuntimeError(
        f"Cannot split the CPU into {num_devices} devices: TensorFlow is "
        "already initialized in this process. Create the strategy first."
    ) from e


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run's files (checkpoints, metrics).

  The "chief" task if the cluster has one, otherwise worker 0; a process
  outside any cluster is its own chief, and so is a parameter-server
  strategy's coordinator.
  """
  if is_parameter_server(strategy):
    return True  # Only the coordinator runs the training program.
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  if resolver.task_type == "chief":
    return True
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return (not has_chief and resolver.task_type == "worker" and
          int(resolver.task_id) == 0)


def is_parameter_server(strategy: tf.distribute.Strategy) -> bool:
  return isinstance(strategy, tf.distribute.ParameterServerStrategy)


def replicas_per_step(strategy: tf.distribute.Strategy) -> int:
  """Replicas that share one synchronous step's global batch."""
  if is_parameter_server(strategy):
    return 1  # Each worker step is a whole batch, on the worker's device.
  return strategy.num_replicas_in_sync


def check_batch_size(strategy: tf.distribute.Strategy, batch_size: int,
                     retrieval_batch_size: int | None) -> int:
  """The per-replica batch; fails early on sizes that don't divide evenly.

  Logs a warning when a replica's share is smaller than a retrieval chunk:
  the replica's chunks, hence its negatives, then shrink, and retrieval
  metrics can differ from a single-device run.
  """
  replicas = replicas_per_step(strategy)
  if batch_size % replicas:
    raise ValueError(
        f"The global batch size {batch_size} does not divide evenly over "
        f"{replicas} replicas; use a multiple of {replicas}.")
  per_replica = batch_size // replicas
  if retrieval_batch_size and per_replica < retrieval_batch_size:
    logging.warning(
        "Each of %d replicas trains on %d ratings, fewer than a retrieval "
        "chunk (%d): its in-batch negatives are the %d other movies of its "
        "share, not %d as on one device.", replicas, per_replica,
        retrieval_batch_size, per_replica - 1, retrieval_batch_size - 1)
  return per_replica


def distribute_training_data(
    strategy: tf.distribute.Strategy,
    make_shard: Callable[[int, int, int, int, int], tf.data.Dataset],
    batch_size: int,
    steps_per_epoch: int,
    first_step: int = 0):
  """The training input of `model.fit` under `strategy`.

  Args:
    strategy: the run's strategy (not the default one).
    make_shard: (per_replica_batch, num_shards, shard_index,
      batches_per_pass, first_batch) -> one pipeline's dataset: per-replica
      batches shard_index, shard_index + num_shards... of the run's seeded
      permutation of each epoch, one pass per epoch, at most
      `batches_per_pass` each, from `first_batch` on.
    batch_size: the global batch of one step (see the module docstring).
    steps_per_epoch: steps of one epoch; pass it to `model.fit` too.
    first_step: the step a resumed run starts at (0 for a new one).

  Returns:
    A distributed dataset (synchronous strategies) or a `DatasetCreator`
    (parameter_server, repeated: its workers take batches as they are free).
  """

  def pipeline(context: tf.distribute.InputContext) -> tf.data.Dataset:
    per_replica = context.get_per_replica_batch_size(batch_size)
    per_pipeline = context.num_replicas_in_sync // context.num_input_pipelines
    # One pass = one epoch, so passes (reshuffles) stay aligned with epochs.
    ds = make_shard(per_replica, context.num_input_pipelines,
                    context.input_pipeline_id, steps_per_epoch * per_pipeline,
                    first_step * per_pipeline)
    return ds.repeat() if is_parameter_server(strategy) else ds

  if is_parameter_server(strategy):
    return tf.keras.utils.experimental.DatasetCreator(pipeline)
  return strategy.distribute_datasets_from_function(pipeline)


def distribute_validation_data(
    strategy: tf.distribute.Strategy,
    make_shard: Callable[[int, int], tf.data.Dataset],
    steps: int):
  """The `validation_data` of `model.fit` under `strategy`, and its steps.

  Synchronous strategies take the dataset as it is (Keras shards it by
  element over the workers). Under parameter_server, Keras evaluates a model
  with its own test_step only without a visitation guarantee: each worker
  evaluates its own shard, repeated, and the `steps` batches are dealt to
  whichever worker is free, so a shard may be seen less or more than once.

  Args:
    strategy: the run's strategy.
    make_shard: (num_shards, shard_index) -> that shard's finite dataset.
    steps: batches of one pass over the whole validation slice.
  """
  if not is_parameter_server(strategy):
    return make_shard(1, 0), None
  return tf.keras.utils.experimental.DatasetCreator(
      lambda context: make_shard(context.num_input_pipelines,
                                 context.input_pipeline_id).repeat()), steps


def embedding_shards(model: tf.keras.Model) -> dict[str, list[str]]:
  """Devices holding each embedding table's shards, by variable name."""
  shards = {}
  for layer in model.submodules:
    if isinstance(layer, tf.keras.layers.Embedding):
      table = layer.embeddings
      parts = getattr(table, "variables", [table])
      name = parts[0].name.split(":")[0].split("/part_")[0]
      shards[name] = [p.device for p in parts]
  return shards
