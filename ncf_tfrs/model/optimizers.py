"""The optimizer: sparse Adagrad for embedding tables, Adam for the rest."""

from typing import List

import tensorflow as tf
import tensorflow_recommenders as tfrs

from ncf_tfrs.model.config import OptimizerConfig


def _embedding_variables(model: tf.keras.Model) -> List[tf.Variable]:
  return [v for layer in model.submodules
          if isinstance(layer, tf.keras.layers.Embedding)
          for v in layer.trainable_weights]


def _dense_variables(model: tf.keras.Model) -> List[tf.Variable]:
  embeddings = {v.ref() for v in _embedding_variables(model)}
  return [v for v in model.trainable_variables if v.ref() not in embeddings]


def make_optimizer(
    model: tf.keras.Model,
    config: OptimizerConfig = OptimizerConfig()
) -> tfrs.experimental.optimizers.CompositeOptimizer:
  """Adagrad for embedding tables, Adam for everything else.

  Adagrad updates only the rows a batch touches; Adam (tf-keras, legacy or
  not) decays its moments over the whole table every step. The optimizer
  cannot be serialized (`model.save`); use checkpoints or `save_weights`.

  Args:
    model: The model whose trainable variables the optimizer will update.
    config: Learning rates.

  Returns:
    An optimizer for `model.compile`.
  """
  embedding_optimizer = tf.keras.optimizers.legacy.Adagrad(
      config.embedding_learning_rate,
      initial_accumulator_value=config.adagrad_initial_accumulator)
  dense_optimizer = tf.keras.optimizers.legacy.Adam(config.dense_learning_rate)
  return tfrs.experimental.optimizers.CompositeOptimizer([
      (embedding_optimizer, lambda: _embedding_variables(model)),
      (dense_optimizer, lambda: _dense_variables(model)),
  ])


def create_slots(model: tf.keras.Model) -> None:
  """Creates the optimizer's variables (step counter, slots) for `model` now.

  Legacy Keras optimizers create them in their first `apply_gradients`,
  inside the first traced training step; `tf.function` then traces that
  step a second time, because the first trace created variables. Created
  beforehand (under the distribution strategy's scope, with the model
  built), the first trace is the only one: at ml-32m's size that trace is
  seconds of the run's start. The variables are the ones `apply_gradients`
  would create, with the same initial values.

  Args:
    model: a built model compiled with `make_optimizer`'s optimizer.
  """
  optimizer = model.optimizer
  for part, variables in zip(optimizer.optimizers,
                             (_embedding_variables(model),
                              _dense_variables(model))):
    # What OptimizerV2.apply_gradients runs first, lifted out of the graph.
    part._create_all_weights(variables)  # pylint: disable=protected-access
