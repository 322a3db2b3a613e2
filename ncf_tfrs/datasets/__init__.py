"""TFDS datasets of ncf_tfrs.

Importing this package registers the builders with TFDS, so that
`tfds.builder("movielens_users/32m")` and `tfds.load(...)` find them.
"""

from ncf_tfrs.datasets.movielens_users import movielens_users_dataset_builder

MovieLensUsers = movielens_users_dataset_builder.Builder
