"""The training stage: typed config, the loop, callbacks, checkpoints, evaluation.

- `config`: `ExperimentConfig`, the typed settings of a run and the defaults
  of every command.
- `loop`: `run`, from config to a trained model and metrics.json.
- `callbacks`: what the loop hooks into Keras's fit.
- `checkpoints`: the model directory, and the trained model back from it.
- `resume`: backups a killed run continues from exactly, with its history.
- `distribute`: tf.distribute strategies for the loop.
- `threads`: TensorFlow's thread pools, set before the loop's first op.
- `evaluation`: offline top-k list metrics of what the product serves.
- `cold_users`: the same for users held out of training, served from their
  first ratings.
- `projector`: the movie embeddings for TensorBoard's projector.
"""

from ncf_tfrs.training.checkpoints import load_trained
from ncf_tfrs.training.config import DataConfig
from ncf_tfrs.training.config import ExperimentConfig
from ncf_tfrs.training.config import ExportConfig
from ncf_tfrs.training.config import TrainConfig
from ncf_tfrs.training.loop import run
from ncf_tfrs.training.loop import TrainedRun
from ncf_tfrs.training.loop import write_metrics
