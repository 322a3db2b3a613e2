"""The data stage: TFDS -> columns -> splits -> vocabularies -> tf.data.

- `movielens`: prepares the `movielens_users` TFDS dataset (download, offline
  archive or generator) and reads it once into flat columns (`Ratings`).
- `splits`: deterministic train / test splits, and the validation slice that
  training carves out of its training split.
- `vocabulary`: the model's id vocabularies, built from the training split.
- `batches`: a split as a tf.data pipeline of the dicts the model takes.
- `history`: what each user already rated, which serving leaves out.
"""

from ncf_tfrs.data.batches import make_dataset
from ncf_tfrs.data.batches import num_batches
from ncf_tfrs.data.history import RatedHistory
from ncf_tfrs.data.movielens import DATASET_CONFIGS
from ncf_tfrs.data.movielens import DATASET_NAME
from ncf_tfrs.data.movielens import DatasetNotFoundError
from ncf_tfrs.data.movielens import load
from ncf_tfrs.data.movielens import load_movies
from ncf_tfrs.data.movielens import Movies
from ncf_tfrs.data.movielens import prepare
from ncf_tfrs.data.movielens import Ratings
from ncf_tfrs.data.splits import carve_validation
from ncf_tfrs.data.splits import first_by_time
from ncf_tfrs.data.splits import hold_out_users
from ncf_tfrs.data.splits import SPLIT_METHODS
from ncf_tfrs.data.splits import split
from ncf_tfrs.data.splits import SplitMethod
from ncf_tfrs.data.vocabulary import Vocabulary
