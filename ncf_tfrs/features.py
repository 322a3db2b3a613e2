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
# Training batches only: the movie's share of training ratings, for the
# retrieval task's sampling-bias (logQ) correction.
MOVIE_SAMPLING_PROB = "movie_sampling_prob"
# A user's ratings given in place of (or besides) the user id: movie ids [B, H]
# padded with HISTORY_PAD, and their ratings [B, H] (0 where padded). Training
# batches carry them for their first examples (see `make_dataset`).
HISTORY_MOVIE_ID = "history_movie_id"
HISTORY_RATING = "history_rating"
HISTORY_PAD = ""

# MovieLens's half-star rating levels, lowest first, and ml-32m's count of
# ratings at each (mean 3.54, 63% above LIKED_THRESHOLD).
RATING_LEVELS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)
ML32M_RATING_COUNTS = (
    525_132, 946_675, 531_063, 2_028_622, 1_685_386, 6_054_990, 4_290_105,
    8_367_654, 2_974_000, 4_596_577)

# Movie metadata.
TITLE = "title"
GENRES = "genres"
