"""Logger names that the user modules share with the CLI's quiet console (``pipeline/local/console.py``).

The Transform and Trainer modules log with plain ``logging``; these names mark
records that the console treats specially. Nothing here imports TensorFlow.
"""

# Records of loggers under this prefix go to the run's log file only, not the console.
FILE_ONLY_PREFIX = "image_pipeline.file_only"
# A transient status line (e.g. the batch within an epoch) at DEBUG level: only an
# interactive console enables this logger, and it rewrites one line in place.
STATUS_LOGGER = "image_pipeline.status"
