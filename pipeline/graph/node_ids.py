"""The one home of the pipeline's node ids: the graph sets them, runs, reports, the CLI and Kubeflow read them.

They are also MLMD's node names and the Kubeflow task names, so changing one
breaks the cache and the run history of existing pipeline roots: the values stay
TFX's defaults where TFX has one.
"""

EXAMPLE_GEN = "FileBasedExampleGen"
SCHEMA_GEN = "ImportSchemaGen"
STATISTICS_GEN = "StatisticsGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
TRANSFORM = "Transform"
BASE_MODEL_IMPORTER = "base_model_importer"
TUNER = "Tuner"  # only with tuning on: its best hyperparameters feed the Trainer
TRAINER = "Trainer"
SERVED_MODEL = "served_model"
EVALUATOR = "Evaluator"  # the gate on this run's test split
SERVED_TEST_EVALUATOR = "served_test_evaluator"  # the gate on the served version's own test split
PUSHER = "Pusher"
BULK_INFERRER = "BulkInferrer"  # the candidate's predictions on test: the model card's mistakes
FROM_SCRATCH_TRAINER = "from_scratch_trainer"
TRANSFER_VS_SCRATCH_EVALUATOR = "transfer_vs_scratch_evaluator"
