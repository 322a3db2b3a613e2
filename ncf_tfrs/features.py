"""Feature names, in one place.

The same names are used by the TFDS dataset, the tf.data pipeline, the model
inputs and the exported serving signatures, so a caller's request keys match
the dataset's columns.
"""

USER_ID = "user_id"
MOVIE_ID = "movie_id"
RATING = "user_rating"
TIMESTAMP = "timestamp"
# Synthetic data only: the planted model's probability that the rating is liked.
ORACLE = "oracle_liked_prob"
# Label of the ranking task: liked = rating > LIKED_THRESHOLD, as in the notebook.
LIKED = "liked"
LIKED_THRESHOLD = 3.0

# Movie metadata.
TITLE = "title"
GENRES = "genres"
