"""Training throughput: the Trainer's input pipeline and loop vs the notebook baseline.

Both train the same classifier (demo MobileNetV2 alpha 0.35 with the shipped
source weights), batch size and image size, on the same generated images:

  baseline  keras.utils.image_dataset_from_directory(...) + model.fit (what the
            Keras transfer-learning guide does)
  pipeline  the Trainer's path: TFRecords of transformed (JPEG q95) examples read
            with tfx_bsl, decoded by ``features.decode_transformed``, fitted by
            ``train_loop.fit_stage``
  unknown_length  the same with the dataset's length hidden, as the Trainer was
            before it counted its splits (Keras then ends each epoch on an
            end-of-sequence error)

Stage 1 (frozen backbone) and stage 2 (top 40 layers) are timed separately, per
epoch; the first epoch of each (tracing) is dropped. Each variant runs in a fresh
process, alternating, several rounds; the table shows the median epoch and the
quartiles, and the CPU time the hypervisor stole meanwhile (this VM's main noise).
Prints a table and writes JSON.

    python benchmarks/training.py [--images 600] [--epochs 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import logging
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

from components.modules import features, train_data, train_loop
from components.modules import model as model_lib
from components.modules.settings import AugmentationSettings, TrainerSettings
from pipeline.demo import demo, demo_data

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
                            train_data.IMAGE_XF: tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
                            train_data.LABEL_XF: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                        }
                    )
                )
                writer.write(example.SerializeToString())
    return classes


def _pipeline_dataset(path: str, settings: TrainerSettings) -> tf.data.Dataset:
    spec = {
        train_data.IMAGE_XF: tf.io.FixedLenFeature([], tf.string),
        train_data.LABEL_XF: tf.io.FixedLenFeature([], tf.int64),
    }
    schema = schema_utils.schema_from_feature_spec(spec)
    accessor = SimpleNamespace(
        tf_dataset_factory=lambda files, options, schema: tfxio.TFExampleRecord(files, schema=schema).TensorFlowDataset(
            options
        )
    )
    transform_output = SimpleNamespace(
        transformed_metadata=SimpleNamespace(schema=schema), transformed_feature_spec=lambda: spec
    )
    dataset, _ = train_data.split_dataset(
        SimpleNamespace(data_accessor=accessor), transform_output, [path], settings, train=True
    )
    return dataset


def _classifier(num_classes: int) -> tuple[keras.Model, keras.Model]:
    keras.utils.set_random_seed(0)
    backbone = model_lib.build_backbone(demo.BACKBONE, demo.IMAGE_SIZE, demo.SHIPPED_WEIGHTS, demo.ALPHA)
    classifier = model_lib.build_classifier(backbone, demo.BACKBONE, num_classes, 0.2)
    # The augmentation measured before it became configurable: flip, rotation and zoom.
    augment = AugmentationSettings(flip="horizontal", rotation=0.1, zoom=0.1, translation=0.0)
    return classifier, model_lib.training_model(classifier, augment, seed=0)


class _EpochClock(keras.callbacks.Callback):
    """Wall seconds of each epoch (training steps, validation and the callbacks before it)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._started)


def _steal_seconds() -> float:
    """CPU time the hypervisor took from this VM since boot (Linux /proc/stat), 0 elsewhere."""
    try:
        with open("/proc/stat") as stat:
            return int(stat.readline().split()[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _measure(dataset: tf.data.Dataset, images: int, epochs: int, num_classes: int, loop: str) -> dict[str, list]:
    """Per-epoch images/s of stage 1 and stage 2; the first epoch of each (tracing) is dropped."""
    classifier, fitted = _classifier(num_classes)
    result: dict[str, list] = {}
    for stage, trainable, learning_rate in (("stage1", 0, 1e-3), ("stage2", 40, 1e-4)):
        if trainable:
            backbone = classifier.get_layer(model_lib.BACKBONE_LAYER_NAME)
            model_lib.unfreeze_from(classifier, len(backbone.layers) - trainable)
        else:
            model_lib.freeze_backbone(classifier)
        model_lib.compile_model(fitted, learning_rate)
        clock = _EpochClock()
        stolen = _steal_seconds()
        if loop == "baseline":
            fitted.fit(dataset, validation_data=dataset.take(1), epochs=epochs + 1, verbose=0, callbacks=[clock])
        else:
            train_loop.fit_stage(
                fitted, dataset, dataset.take(1), (0, epochs + 1), tempfile.mkdtemp(), extra_callbacks=(clock,)
            )
        result[stage] = [images / seconds for seconds in clock.seconds[1:]]
        result[f"{stage}_steal_s"] = [_steal_seconds() - stolen]
    return result


def _child(variant: str, root: str, records: str, images: int, epochs: int) -> dict[str, list]:
    """Measures one variant in a fresh process (no state shared with the others)."""
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
            root, image_size=(demo.IMAGE_SIZE, demo.IMAGE_SIZE), batch_size=BATCH, seed=0, verbose=False
        ).prefetch(tf.data.AUTOTUNE)
    else:
        dataset = _pipeline_dataset(records, TrainerSettings(batch_size=BATCH, seed=0, image_size=demo.IMAGE_SIZE))
        if variant == "unknown_length":
            dataset = dataset.filter(lambda images, labels: True)  # the Trainer before its split count
    loop = "baseline" if variant == "baseline" else "pipeline"
    print("RESULT " + json.dumps(_measure(dataset, images, epochs, len(classes), loop)))


VARIANTS = {
    "baseline": "image_dataset_from_directory + fit",
    "pipeline": "Trainer input pipeline + fit_stage",
    "unknown_length": "same, dataset length unknown (before)",
}


def _rows(samples: dict[str, list[dict[str, list]]]) -> list[dict]:
    """Median per-epoch images/s over all rounds, the quartiles, and the ratio to the baseline."""
    rows = []
    for stage in ("stage1", "stage2"):
        base = statistics.median(value for run in samples["baseline"] for value in run[stage])
        for variant, runs in samples.items():
            values = [value for run in runs for value in run[stage]]
            quartiles = statistics.quantiles(values, n=4)
            rows.append(
                {
                    "stage": stage,
                    "variant": variant,
                    "images_per_s": round(statistics.median(values), 1),
                    "p25": round(quartiles[0], 1),
                    "p75": round(quartiles[2], 1),
                    "epochs_timed": len(values),
                    "ratio": round(statistics.median(values) / base, 3),
                    "steal_s": round(sum(run[f"{stage}_steal_s"][0] for run in runs), 2),
                    "epoch_images_per_s": [round(value, 1) for value in values],
                }
            )
    return rows


def main() -> None:
    """Runs the benchmark, prints the table and writes JSON."""
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        variant, root, records, images, epochs = sys.argv[2:7]
        return _measure_variant(variant, root, records, int(images), int(epochs))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="Alternating fresh-process runs per variant.")
    parser.add_argument("--out", default=_results.default_path("training"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    work = tempfile.mkdtemp(prefix="training_bench_")
    samples: dict[str, list[dict[str, list]]] = {variant: [] for variant in VARIANTS}
    try:
        root = os.path.join(work, "images")
        count = demo_data.generate(root, demo_data.TARGET_CLASSES, args.images // 3, demo.IMAGE_SIZE, seed=0)
        records = os.path.join(work, "train.tfrecord")
        _write_transformed(root, records)
        for round_index in range(args.rounds):
            for variant in samples:
                logging.info("round %d/%d: %s", round_index + 1, args.rounds, variant)
                samples[variant].append(_child(variant, root, records, count, args.epochs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = _rows(samples)
    print(
        f"Training throughput, {count} images {demo.IMAGE_SIZE}x{demo.IMAGE_SIZE}, batch {BATCH}: median images/s "
        f"per epoch over {args.rounds} alternating fresh-process runs x {args.epochs} epochs (warm-up epoch dropped)"
    )
    print(f"{'stage':<8} {'variant':<40} {'images/s':>9} {'p25-p75':>13} {'vs baseline':>12} {'steal s':>8}")
    for row in rows:
        spread = f"{row['p25']:.0f}-{row['p75']:.0f}"
        print(
            f"{row['stage']:<8} {VARIANTS[row['variant']]:<40} {row['images_per_s']:>9.1f} {spread:>13} "
            f"{row['ratio']:>12.3f} {row['steal_s']:>8.2f}"
        )
    _results.write(args.out, {"images": count, "epochs": args.epochs, "rounds": args.rounds, "rows": rows})


if __name__ == "__main__":
    main()
