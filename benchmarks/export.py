"""Model export: the Trainer's SavedModel export as it was (before) and as it is (now).

Before (2026-11-24): a ``tf.Module`` root tracking TFT's tf_keras
``TransformFeaturesLayer``, and signatures traced with AutoGraph, each calling the
Keras classifier (so tf_keras traced the layer again at save, and Keras traced the
classifier once per signature). Now: ``export.export_serving_model``, where the
classifier is traced once and the Transform graph is a plain module. (The frozen
baseline leaves out the ``class_ids`` output and fixes k=3: the same graph work.)

Each round runs each variant in a fresh process (TensorFlow caches traces): the
demo classifier (shipped source weights) with the demo run's Transform graph,
timed in three parts: tracing the serving signatures, ``tf.saved_model.save``,
and loading the SavedModel plus the first ``serving_default`` call (what the
Evaluator and TF Serving pay). Variants alternate so that other load on the
machine hits both alike.

    python benchmarks/export.py [--transform-graph demo_workdir/tfx_root/Transform/transform_graph/N] [--rounds 3]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import _results  # benchmarks/_results.py (scripts run with benchmarks/ on sys.path)

VARIANTS = ("tf_keras TFT layer, a trace per signature (before)", "one trace, TFT graph module (now)")
_PARTS = ("trace_s", "save_s", "load_and_first_call_s")


def _measure(variant: str, transform_graph: str, folder: str) -> dict[str, float]:
    """One export in this process; prints nothing but the JSON of its timings."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft

    from components import signatures
    from components.modules import export, features
    from components.modules import model as model_lib
    from pipeline.demo import demo

    output = tft.TFTransformOutput(transform_graph)
    names = [name.decode() for name in output.vocabulary_by_name(features.LABEL_VOCAB_NAME)]
    settings = demo.demo_config(folder, demo.SHIPPED_WEIGHTS).trainer
    backbone = model_lib.build_backbone(
        settings.backbone, settings.image_size, settings.weights, settings.backbone_alpha
    )
    classifier = model_lib.build_classifier(backbone, settings.backbone, len(names), settings.dropout)
    path = os.path.join(folder, "model")
    start = time.monotonic()
    if variant == VARIANTS[0]:
        root = tf.Module()
        root.tft_layer = output.transform_features_layer()
        root.model_variables = list(classifier.variables)
        baseline = _signatures_before(classifier, root.tft_layer, output, names, settings.image_size)
        traced = time.monotonic()
        tf.saved_model.save(root, path, signatures=baseline)
    else:
        export.export_serving_model(classifier, output, names, settings, path)
        traced = start  # tracing happens inside; reported as part of the save
    saved = time.monotonic()
    image = tf.io.encode_jpeg(np.full((96, 96, 3), 128, np.uint8)).numpy()
    tf.saved_model.load(path).signatures[signatures.DEFAULT_SIGNATURE](
        **{signatures.IMAGE_BYTES_INPUT: tf.constant([image])}
    )
    loaded = time.monotonic()
    return {"trace_s": traced - start, "save_s": saved - traced, "load_and_first_call_s": loaded - saved}


def _signatures_before(classifier: object, tft_layer: object, output: object, names: list[str], size: int) -> dict:
    """The 2026-11-24 signatures (frozen here as the baseline): AutoGraph, the classifier called in each."""
    import tensorflow as tf

    from components import signatures
    from components.modules import features

    image_spec = {features.IMAGE_KEY: output.raw_feature_spec()[features.IMAGE_KEY]}
    pixels_spec = tf.TensorSpec([None, size, size, 3], tf.float32, name=signatures.PIXELS_INPUT)

    def predict(raw: dict) -> dict:
        image = features.decode_transformed(tft_layer(raw)[features.transformed_name(features.IMAGE_KEY)], size)
        probabilities = classifier(image, training=False)
        scores, class_ids = tf.math.top_k(probabilities, k=min(3, len(names)))
        return {
            signatures.CLASSES_OUTPUT: tf.gather(tf.constant(names), class_ids),
            signatures.SCORES_OUTPUT: scores,
            signatures.PROBABILITIES_OUTPUT: probabilities,
        }

    serve_images = tf.function(lambda image_bytes: predict({features.IMAGE_KEY: tf.reshape(image_bytes, [-1, 1])}))
    serve_examples = tf.function(lambda e: predict(tf.io.parse_example(e, image_spec)))
    label = features.transformed_name(features.LABEL_KEY)
    transform = tf.function(lambda e: {label: tft_layer(tf.io.parse_example(e, output.raw_feature_spec()))[label]})
    serve_pixels = tf.function(lambda p: {signatures.PROBABILITIES_OUTPUT: classifier(p, training=False)})
    return {
        signatures.DEFAULT_SIGNATURE: serve_images.get_concrete_function(
            tf.TensorSpec([None], tf.string, name=signatures.IMAGE_BYTES_INPUT)
        ),
        signatures.EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(
            tf.TensorSpec([None], tf.string, name=signatures.EXAMPLES_INPUT)
        ),
        signatures.TRANSFORM_SIGNATURE: transform.get_concrete_function(
            tf.TensorSpec([None], tf.string, name=signatures.EXAMPLES_INPUT)
        ),
        signatures.PIXELS_SIGNATURE: serve_pixels.get_concrete_function(pixels_spec),
    }


def _run(variant: str, transform_graph: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable,
            __file__,
            "--measure",
            variant,
            "--transform-graph",
            transform_graph,
            "--dir",
            folder,
        ]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _latest_transform_graph() -> str:
    found = sorted(glob.glob(os.path.join("demo_workdir", "tfx_root", "Transform", "transform_graph", "*")))
    if not found:
        raise SystemExit("No demo Transform graph: run `make demo` first or pass --transform-graph.")
    return max(found, key=os.path.getmtime)


def main() -> None:
    """Runs the benchmark, prints the table and writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transform-graph", default="")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", default="", help=argparse.SUPPRESS)
    parser.add_argument("--dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=_results.default_path("export"))
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(_measure(args.measure, args.transform_graph, args.dir)))
        return
    graph = args.transform_graph or _latest_transform_graph()
    runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
    for round_index in range(args.rounds):
        for variant in VARIANTS:
            runs[variant].append(_run(variant, graph))
            print(f"round {round_index + 1}/{args.rounds} {variant}: {runs[variant][-1]}", flush=True)
    medians = {
        variant: {part: statistics.median(run[part] for run in results) for part in _PARTS}
        for variant, results in runs.items()
    }
    for values in medians.values():
        values["export_s"] = values["trace_s"] + values["save_s"]
    baseline = medians[VARIANTS[0]]
    print("\n| variant | trace + save s | load + first call s | export vs before | load vs before |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for variant, values in medians.items():
        print(
            f"| {variant} | {values['export_s']:.2f} | {values['load_and_first_call_s']:.2f} | "
            f"{values['export_s'] / baseline['export_s']:.2f} | "
            f"{values['load_and_first_call_s'] / baseline['load_and_first_call_s']:.2f} |"
        )
    _results.write(args.out, {"rounds": args.rounds, "transform_graph": graph, "runs": runs, "medians": medians})


if __name__ == "__main__":
    main()
