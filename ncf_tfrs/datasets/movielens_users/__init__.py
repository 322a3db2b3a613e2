"""`movielens_users`: MovieLens ratings as one TFDS example per user."""

from ncf_tfrs.datasets.movielens_users.formats import MovieLensFormatError
from ncf_tfrs.datasets.movielens_users.movielens_users_dataset_builder import Builder
from ncf_tfrs.datasets.movielens_users.movielens_users_dataset_builder import MovieLensUsersConfig
from ncf_tfrs.datasets.movielens_users.movielens_users_dataset_builder import decode_flat
from ncf_tfrs.datasets.movielens_users.movielens_users_dataset_builder import ROW_LENGTHS
