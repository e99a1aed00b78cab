"""Training throughput: the Trainer's input pipeline and loop vs the notebook baseline.

Both train the same classifier (demo MobileNetV2 alpha 0.35 with the shipped
source weights), batch size and image size, on the same generated images:

  baseline  keras.utils.image_dataset_from_directory(...) + model.fit (what the
            Keras transfer-learning guide does)
  pipeline  the Trainer's path: TFRecords of transformed (JPEG q95) examples read
            with tfx_bsl, decoded by ``features.decode_transformed``, fitted by
            ``trainer._fit_stage``

Stage 1 (frozen backbone) and stage 2 (top 40 layers) are timed separately; the
first epoch of each (tracing) is excluded. Prints a table and writes JSON.

    python benchmarks/training.py [--images 600] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

import _results  # benchmarks/_results.py (scripts run with benchmarks/ on sys.path)
import keras
import tensorflow as tf
from tensorflow_transform.tf_metadata import schema_utils
from tfx_bsl.public import tfxio

from components.modules import features, trainer
from components.modules import model as model_lib
from pipeline import demo, demo_data

BATCH = 32


def _write_transformed(root: str, path: str) -> list[str]:
    """The records Transform would write: image_xf (JPEG of the resized image), label_xf."""
    classes = sorted(os.listdir(root))
    with tf.io.TFRecordWriter(path) as writer:
        for label, name in enumerate(classes):
            for file_name in sorted(os.listdir(os.path.join(root, name))):
                encoded = tf.io.read_file(os.path.join(root, name, file_name))
                image = features.decode_and_resize(tf.reshape(encoded, [1]), demo.IMAGE_SIZE)
                jpeg = features.encode_transformed(image)[0].numpy()
                example = tf.train.Example(
                    features=tf.train.Features(
                        feature={
                            trainer.IMAGE_XF: tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
                            trainer.LABEL_XF: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                        }
                    )
                )
                writer.write(example.SerializeToString())
    return classes


def _pipeline_dataset(path: str, config: dict) -> tf.data.Dataset:
    schema = schema_utils.schema_from_feature_spec(
        {trainer.IMAGE_XF: tf.io.FixedLenFeature([], tf.string), trainer.LABEL_XF: tf.io.FixedLenFeature([], tf.int64)}
    )
    accessor = SimpleNamespace(
        tf_dataset_factory=lambda files, options, schema: tfxio.TFExampleRecord(files, schema=schema).TensorFlowDataset(
            options
        )
    )
    transform_output = SimpleNamespace(transformed_metadata=SimpleNamespace(schema=schema))
    return trainer._dataset(SimpleNamespace(data_accessor=accessor), transform_output, [path], config, train=True)


def _classifier(num_classes: int) -> tuple[keras.Model, keras.Model]:
    keras.utils.set_random_seed(0)
    backbone = model_lib.build_backbone(demo.BACKBONE, demo.IMAGE_SIZE, demo.SHIPPED_WEIGHTS, demo.ALPHA)
    classifier = model_lib.build_classifier(backbone, demo.BACKBONE, num_classes, 0.2)
    return classifier, model_lib.training_model(classifier, augment=True, seed=0)


def _images_per_s(fit: callable, images: int, epochs: int) -> float:
    fit(1)  # tracing
    started = time.perf_counter()
    fit(epochs)
    return images * epochs / (time.perf_counter() - started)


def _measure(dataset: tf.data.Dataset, images: int, epochs: int, num_classes: int, loop: str) -> dict[str, float]:
    classifier, fitted = _classifier(num_classes)

    def fit(count: int) -> None:
        if loop == "pipeline":
            trainer._fit_stage(fitted, dataset, dataset.take(1), (0, count), tempfile.mkdtemp())
        else:
            fitted.fit(dataset, validation_data=dataset.take(1), epochs=count, verbose=0)

    model_lib.freeze_backbone(classifier)
    model_lib.compile_model(fitted, 1e-3)
    stage1 = _images_per_s(fit, images, epochs)
    model_lib.unfreeze_top_layers(classifier, 40)
    model_lib.compile_model(fitted, 1e-4)
    stage2 = _images_per_s(fit, images, epochs)
    return {"stage1": stage1, "stage2": stage2}


def _child(variant: str, root: str, records: str, images: int, epochs: int) -> dict[str, float]:
    """Measures one variant in a fresh process (no state shared with the other)."""
    completed = subprocess.run(
        [sys.executable, __file__, "--measure", variant, root, records, str(images), str(epochs)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"{variant} run failed:\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def _measure_variant(variant: str, root: str, records: str, images: int, epochs: int) -> None:
    classes = sorted(os.listdir(root))
    if variant == "baseline":
        dataset = keras.utils.image_dataset_from_directory(
            root, image_size=(demo.IMAGE_SIZE, demo.IMAGE_SIZE), batch_size=BATCH, seed=0
        ).prefetch(tf.data.AUTOTUNE)
    else:
        dataset = _pipeline_dataset(records, {"batch_size": BATCH, "seed": 0, "image_size": demo.IMAGE_SIZE})
    print("RESULT " + json.dumps(_measure(dataset, images, epochs, len(classes), variant)))


def main() -> None:
    """Runs the benchmark, prints the table and writes JSON."""
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        variant, root, records, images, epochs = sys.argv[2:7]
        return _measure_variant(variant, root, records, int(images), int(epochs))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="Alternating runs per variant; the median is reported.")
    parser.add_argument("--out", default=_results.default_path("training"))
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="training_bench_")
    samples: dict[str, list[dict[str, float]]] = {"baseline": [], "pipeline": []}
    try:
        root = os.path.join(work, "images")
        count = demo_data.generate(root, demo_data.TARGET_CLASSES, args.images // 3, demo.IMAGE_SIZE, seed=0)
        records = os.path.join(work, "train.tfrecord")
        _write_transformed(root, records)
        for _ in range(args.rounds):
            for variant in samples:
                samples[variant].append(_child(variant, root, records, count, args.epochs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for stage in ("stage1", "stage2"):
        base = statistics.median(sample[stage] for sample in samples["baseline"])
        for variant, runs in samples.items():
            value = statistics.median(sample[stage] for sample in runs)
            rows.append(
                {
                    "stage": stage,
                    "variant": variant,
                    "images_per_s": round(value, 1),
                    "runs": [round(sample[stage], 1) for sample in runs],
                    "ratio": round(value / base, 3),
                }
            )
    print(
        f"Training throughput, {count} images {demo.IMAGE_SIZE}x{demo.IMAGE_SIZE}, batch {BATCH}, "
        f"{args.epochs} timed epochs, median of {args.rounds} alternating runs in fresh processes"
    )
    print(f"{'stage':<8} {'variant':<40} {'images/s':>9} {'vs baseline':>12}  runs")
    names = {"baseline": "image_dataset_from_directory + fit", "pipeline": "Trainer input pipeline + _fit_stage"}
    for row in rows:
        print(
            f"{row['stage']:<8} {names[row['variant']]:<40} {row['images_per_s']:>9.1f} {row['ratio']:>12.3f}  {row['runs']}"
        )
    _results.write(args.out, {"images": count, "rows": rows})


if __name__ == "__main__":
    main()
