"""Typed configuration of a training run: the defaults of every command.

`ncf_tfrs.train` turns its absl flags into an `ExperimentConfig`; everything
below the entry point takes these frozen dataclasses, never flags, so the
library can be driven from Python (tests, benchmarks, notebooks) as well.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping, Optional

from ncf_tfrs import model as model_lib
from ncf_tfrs.training import distribute
from ncf_tfrs.training import evaluation
from ncf_tfrs.training import threads


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Which ratings, and how they are split.

  Attributes:
    dataset: a `movielens_users` config: '32m', '1m', 'synthetic-small'...
    data_dir: TFDS data directory; None for TFDS's default.
    manual_dir: folder with the official MovieLens archive (.zip or the
      extracted folder) for machines without internet.
    download: whether a missing real release may be downloaded.
    split: 'random' (the notebook's 80/20 over ratings), 'temporal' or
      'stratified' (per user, as the literature's ml-100k tables).
    test_fraction: share of ratings held out for the test split, scored
      once at the end.
    validation_fraction: share of the training split held out for
      validation, on which training keeps its epochs and stops early; 0
      trains on the whole training split and keeps the last epoch.
    seed: seed of the splits (and of shuffling).
    cold_user_fraction: share of the users held out of training entirely
      (seeded), before the split, for the cold-user evaluation: each gives
      their first ratings as a new user's request would
      (`ncf_tfrs.training.cold_users`); 0 holds out no one.
    cold_known_ratings: n > 0 trains instead with each held-out user's first
      n ratings by time (in the training split, never validation or test)
      and scores those users by id on their later ratings: what retraining
      with the ratings a new user brings would serve them, the reference
      for the history side. 0: the held-out users stay out of training.
  """
  dataset: str = "synthetic-small"
  data_dir: str | None = None
  manual_dir: str | None = None
  download: bool = True
  split: str = "random"
  test_fraction: float = 0.2
  validation_fraction: float = 0.1
  seed: int = 42
  cold_user_fraction: float = 0.0
  cold_known_ratings: int = 0

  def __post_init__(self):
    if not 0.0 <= self.validation_fraction < 1.0:
      raise ValueError("validation_fraction must be in [0, 1), got "
                       f"{self.validation_fraction}.")
    if not 0.0 <= self.cold_user_fraction < 1.0:
      raise ValueError("cold_user_fraction must be in [0, 1), got "
                       f"{self.cold_user_fraction}.")
    if self.cold_known_ratings < 0:
      raise ValueError("cold_known_ratings must be >= 0, got "
                       f"{self.cold_known_ratings}.")
    if self.cold_known_ratings and not self.cold_user_fraction:
      raise ValueError("cold_known_ratings > 0 needs cold_user_fraction > 0: "
                       "it trains with the first ratings of held-out users.")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """The training loop.

  Attributes:
    model_dir: where checkpoints, logs, vocabularies and metrics.json go.
    epochs: the most passes over the training split; with validation data,
      training stops earlier once no task has improved on it for
      `early_stopping_patience` epochs.
    early_stopping_patience: epochs without a better validation metric
      before training stops (0: run every epoch). Either way each task keeps
      the weights of its best validation epoch.
    batch_size: ratings per step (the ranking task's batch; retrieval runs
      over chunks of `ModelConfig.retrieval_batch_size`). Under a
      multi-replica strategy, the global batch of a synchronous step: each of
      R replicas takes batch_size / R (see `ncf_tfrs.distribute`).
    eval_batch_size: ratings per step when evaluating.
    checkpoint_every_seconds: seconds of training between the backups a
      killed run resumes from (checked at each execution's end; a backup is
      also written at each epoch end). Time, not steps: a backup costs the
      same whatever a step costs, so a step count right for one machine and
      dataset backs up every few seconds on a faster one.
    checkpoint_every_steps: when set, back up every this many steps instead
      (rounded up to whole executions), at the same steps in every run.
    steps_per_execution: training steps run per call into the TensorFlow
      graph; more saves per-step Python overhead, callbacks see fewer calls.
    eval_every_steps: steps between evaluations of a fixed sample of the
      validation slice (the test split without one), recorded as the
      learning curve in metrics.json; 0: none.
    curve_sample_ratings: ratings each curve point evaluates.
  """
  model_dir: str = "runs/demo"
  epochs: int = 3
  early_stopping_patience: int = 2
  batch_size: int = 16384
  eval_batch_size: int = 65536
  checkpoint_every_seconds: float = 60.0
  checkpoint_every_steps: Optional[int] = None
  steps_per_execution: int = 10
  eval_every_steps: int = 0
  curve_sample_ratings: int = 200_000

  def __post_init__(self):
    if self.early_stopping_patience < 0:
      raise ValueError("early_stopping_patience must be >= 0, got "
                       f"{self.early_stopping_patience}.")
    if self.checkpoint_every_seconds < 0:
      raise ValueError("checkpoint_every_seconds must be >= 0, got "
                       f"{self.checkpoint_every_seconds}.")
    if (self.checkpoint_every_steps is not None and
        self.checkpoint_every_steps < 1):
      raise ValueError("checkpoint_every_steps must be >= 1, got "
                       f"{self.checkpoint_every_steps}.")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """What the train command exports for serving when training finishes.

  (`ncf_tfrs.export` does the exporting; the train command hands it these.)

  Attributes:
    export_dir: TF Serving model root; None skips the export.
    model_name: model name under it (the ScaNN index and the ScaNN-op model
      get suffixes).
    scann_model: also export the SavedModel with the ScaNN op inside.
  """
  export_dir: str | None = "export"
  model_name: str = "ncf_tfrs"
  scann_model: bool = True


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  data: DataConfig = DataConfig()
  model: model_lib.ModelConfig = model_lib.ModelConfig()
  optimizer: model_lib.OptimizerConfig = model_lib.OptimizerConfig()
  train: TrainConfig = TrainConfig()
  eval: evaluation.ListEvalConfig = evaluation.ListEvalConfig()
  export: ExportConfig = ExportConfig()
  distribute: distribute.DistributeConfig = distribute.DistributeConfig()
  threads: threads.ThreadConfig = threads.ThreadConfig()

  def __post_init__(self):
    if (self.data.cold_user_fraction and not self.data.cold_known_ratings
        and not self.model.history_share):
      raise ValueError("cold_user_fraction > 0 needs history_share > 0: "
                       "held-out users are served from their ratings "
                       "(or cold_known_ratings > 0, to train with them).")

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> ExperimentConfig:
    """The config that `dataclasses.asdict` (or `to_json`) turned into `values`.

    Sections and fields left out keep their defaults, so a config.json from
    an older run still loads; an unknown name is an error rather than a
    silently ignored setting.
    """
    return _from_dict(cls, values)

  @classmethod
  def from_json(cls, text: str) -> ExperimentConfig:
    """Parses what `to_json` wrote (a model directory's config.json)."""
    return cls.from_dict(json.loads(text))


def _from_dict(cls: type, values: Mapping[str, Any]):
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise ValueError(f"Unknown {cls.__name__} fields: {unknown}.")
  kwargs = {}
  for name, value in values.items():
    default = fields[name].default
    if dataclasses.is_dataclass(default):
      value = _from_dict(type(default), value)
    elif isinstance(value, list):
      value = tuple(value)  # JSON has no tuples; the configs use them.
    kwargs[name] = value
  return cls(**kwargs)
