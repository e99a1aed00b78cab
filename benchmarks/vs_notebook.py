"""The pipeline against the notebook a user would otherwise write, on the same images.

The notebook is the Keras transfer-learning guide's recipe (the project's seed):
``image_dataset_from_directory`` with a validation split, RandomFlip("horizontal") +
RandomRotation(0.1), the backbone frozen and called with ``training=False``, a new
GAP/Dropout/Dense head, then the top layers unfrozen at a low learning rate. Both
get the same backbone weights file, image size, batch size, epochs, learning rates
and number of fine-tuned layers, and both are judged on the same held-out images:
the pipeline's ``test`` split (``components/ingest/splits.py``), which the notebook never
trains or validates on. Each runs in a fresh process (imports count, as for a user).

Data sets: ``demo`` (the embedded shapes, generated) and ``digits`` (scikit-learn's
copy of the UCI handwritten digits, 1,797 8x8 images, upscaled to the image size:
real data this project did not generate), ``shapes:N`` (the demo's generated shapes, N per
class: ``shapes:6667`` is the 20k-image run). Or a folder path of your own.

    python benchmarks/vs_notebook.py --dataset digits [--stage1-epochs 3 --stage2-epochs 2]

Prints a table (accuracy on the held-out images, wall time, peak RSS, ratios) and
writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import _results  # benchmarks/_results.py (scripts run with benchmarks/ on sys.path)

from components.ingest import image_files, splits
from pipeline.demo import demo, demo_data

DIGITS_SCALE = 16.0  # sklearn's digits hold 0..16 gray levels


def _digits_folder(root: str, image_size: int) -> int:
    """sklearn's 1,797 8x8 digits as <root>/<digit>/<index>.png, upscaled (bilinear)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = os.path.join(root, f"digit_{target}")
        os.makedirs(folder, exist_ok=True)
        gray = (255 * (1 - pixels / DIGITS_SCALE)).astype(np.uint8)  # dark ink on white, like paper
        image = Image.fromarray(gray, "L").resize((image_size, image_size), Image.BILINEAR).convert("RGB")
        image.save(os.path.join(folder, f"{index:04d}.png"))
    return len(digits.images)


def _dataset_problem(name: str) -> str:
    """Why ``--dataset`` cannot be used (empty if it can), checked before any work."""
    if name in ("demo", "digits"):
        return ""
    if name.startswith("shapes:"):
        count = name.removeprefix("shapes:")
        return (
            "" if count.isdigit() and int(count) > 0 else f"--dataset {name!r}: shapes:N needs N > 0 images per class"
        )
    return "" if os.path.isdir(name) else f"--dataset {name!r} is not demo, digits, shapes:N or an existing folder"


def _dataset(name: str, work: str, image_size: int) -> str:
    root = os.path.join(work, "data")
    if name == "demo":
        demo_data.generate(root, demo_data.TARGET_CLASSES, demo.TARGET_PER_CLASS, image_size, seed=1)
    elif name.startswith("shapes:"):
        demo_data.generate(root, demo_data.TARGET_CLASSES, int(name.removeprefix("shapes:")), image_size, seed=1)
    elif name == "digits":
        _digits_folder(root, image_size)
    else:
        shutil.copytree(name, root, symlinks=False)
    return root


def _held_out(root: str, percents: splits.SplitPercents, work: str) -> tuple[str, str, int]:
    """Symlink trees: everything but the test split (the notebook's data), and the test split."""
    files = [found for found in image_files.list_files(root) if not image_files.precheck_reason(found)]
    assignment = splits.assign(((found.relative_path, found.label) for found in files), percents)
    trainval, test = os.path.join(work, "notebook_trainval"), os.path.join(work, "test")
    for found in files:
        target = test if assignment.split_of[found.relative_path] == splits.TEST else trainval
        os.makedirs(os.path.join(target, found.label), exist_ok=True)
        os.symlink(os.path.abspath(found.path), os.path.join(target, found.relative_path))
    return trainval, test, sum(counts[splits.TEST] for counts in assignment.counts.values())


def run_notebook(args: dict) -> dict:
    """The notebook recipe; returns its accuracy on the held-out images."""
    import keras

    from components.modules import model as model_lib
    from components.modules.settings import Phase

    keras.utils.set_random_seed(args["seed"])
    started = time.perf_counter()
    size = (args["image_size"], args["image_size"])
    train, validation = keras.utils.image_dataset_from_directory(
        args["trainval"],
        image_size=size,
        batch_size=args["batch_size"],
        validation_split=args["validation_split"],
        subset="both",
        seed=args["seed"],
    )
    test = keras.utils.image_dataset_from_directory(args["test"], image_size=size, batch_size=args["batch_size"])
    base = model_lib.build_backbone(args["backbone"], args["image_size"], args["weights"], args["alpha"])
    base.trainable = False
    inputs = keras.Input(shape=(*size, 3))
    x = inputs
    if args["notebook_augmentation"]:
        x = keras.layers.RandomFlip("horizontal")(x)
        x = keras.layers.RandomRotation(0.1)(x)
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(x)  # mobilenet_v2.preprocess_input
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(len(train.class_names), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(optimizer=keras.optimizers.Adam(args["stage1_learning_rate"]), loss=loss, metrics=metrics)
    phases = {Phase.BUILD: time.perf_counter() - started}
    started = time.perf_counter()
    model.fit(train, validation_data=validation, epochs=args["stage1_epochs"], verbose=2)
    phases[Phase.STAGE1] = time.perf_counter() - started
    started = time.perf_counter()
    if args["stage2_epochs"]:
        base.trainable = True
        for layer in base.layers[: len(base.layers) - args["fine_tune_layers"]]:
            layer.trainable = False
        model.compile(optimizer=keras.optimizers.Adam(args["stage2_learning_rate"]), loss=loss, metrics=metrics)
        total = args["stage1_epochs"] + args["stage2_epochs"]
        model.fit(train, validation_data=validation, initial_epoch=args["stage1_epochs"], epochs=total, verbose=2)
        phases[Phase.STAGE2] = time.perf_counter() - started
    accuracy = float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])
    return {"test_accuracy": accuracy, "phase_seconds": {name: round(value, 2) for name, value in phases.items()}}


def run_pipeline(args: dict) -> dict:
    """The whole local pipeline; returns the gate's test accuracy (TFMA, the test split)."""
    from pipeline.config.pipeline_config import build_config
    from pipeline.local import runner as local_runner

    report = local_runner.run(build_config(args["config"]))
    return {
        "test_accuracy": report.gate.candidate_accuracy,
        "test_images": report.gate.test_examples,
        "kept_stage": report.training.kept_stage,
        "states": report.component_states,
        "steps": [[step.name, step.state, round(step.seconds, 2)] for step in report.steps],
        "steps_total_s": round(report.total_seconds, 2),
        "phase_seconds": report.training.phase_seconds,
    }


def _child(kind: str, args: dict) -> dict:
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--child-args", json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}")
    return {"wall_s": round(wall, 1), **json.loads(lines[-1].removeprefix("RESULT "))}


def _run_child(kind: str, args: dict) -> None:
    # benchmarks/transform.py would shadow the Transform user module ("transform" in TFX's wheel).
    sys.path[:] = [
        path for path in sys.path if os.path.abspath(path or ".") != os.path.dirname(os.path.abspath(__file__))
    ]
    result = (run_notebook if kind == "notebook" else run_pipeline)(args)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print("RESULT " + json.dumps(result))


def _print_steps(pipeline: dict) -> None:
    """The pipeline's wall time by step (MLMD), and the rest: imports, preflight, compiling, registration."""
    print("\n| pipeline step | state | seconds | share of wall |")
    print("| --- | --- | ---: | ---: |")
    for name, state, seconds in pipeline["steps"]:
        print(f"| {name} | {state} | {seconds:.1f} | {seconds / pipeline['wall_s']:.0%} |")
    outside = pipeline["wall_s"] - pipeline["steps_total_s"]
    print(
        f"| outside the steps (start-up, preflight, compile) | | {outside:.1f} | {outside / pipeline['wall_s']:.0%} |"
    )


def _print_phases(results: dict) -> None:
    """The pipeline Trainer's phases next to the notebook's (its model building includes listing the files)."""
    notebook, trainer = results["notebook"]["phase_seconds"], results["pipeline"]["phase_seconds"]
    print("\n| Trainer phase | notebook s | pipeline Trainer s |")
    print("| --- | ---: | ---: |")
    for name in dict.fromkeys([*trainer, *notebook]):
        cells = [f"{table[name]:.1f}" if name in table else "-" for table in (notebook, trainer)]
        print(f"| {name} | {cells[0]} | {cells[1]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset",
        default="demo",
        help="demo, digits, shapes:N (N generated images per class), or a folder with one sub-folder per class",
    )
    parser.add_argument("--image-size", type=int, default=demo.IMAGE_SIZE)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--stage1-epochs", type=int, default=3)
    parser.add_argument("--stage2-epochs", type=int, default=2)
    parser.add_argument("--stage1-learning-rate", type=float, default=1e-3)
    parser.add_argument("--stage2-learning-rate", type=float, default=1e-4)
    parser.add_argument("--fine-tune-layers", type=int, default=40)
    parser.add_argument("--weights", default=demo.SHIPPED_WEIGHTS, help="backbone weights file (both runs)")
    parser.add_argument("--alpha", type=float, default=demo.ALPHA)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pipeline-trainer", default="{}", help="extra trainer settings for the pipeline (JSON)")
    parser.add_argument(
        "--pipeline-config", default="{}", help='extra pipeline settings (JSON), e.g. \'{"tflite": "none"}\''
    )
    parser.add_argument(
        "--no-notebook-augmentation",
        dest="notebook_augmentation",
        action="store_false",
        help="leave the guide's RandomFlip + RandomRotation out of the notebook (to see what they cost)",
    )
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", choices=["notebook", "pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("--child-args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _run_child(args.child, json.loads(args.child_args))
        return
    if problem := _dataset_problem(args.dataset):
        parser.error(problem)
    work = tempfile.mkdtemp(prefix="vs_notebook_")
    root = _dataset(args.dataset, work, args.image_size)
    percents = splits.SplitPercents()
    trainval, test, test_images = _held_out(root, percents, work)
    shared = {
        "backbone": demo.BACKBONE,
        "weights": os.path.abspath(args.weights),
        "alpha": args.alpha,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "stage1_epochs": args.stage1_epochs,
        "stage2_epochs": args.stage2_epochs,
        "stage1_learning_rate": args.stage1_learning_rate,
        "stage2_learning_rate": args.stage2_learning_rate,
        "fine_tune_layers": args.fine_tune_layers,
        "seed": args.seed,
    }
    notebook_args = {
        **shared,
        "trainval": trainval,
        "test": test,
        "notebook_augmentation": args.notebook_augmentation,
        # The notebook validates on the pipeline's share of validation images.
        "validation_split": round(percents.validation / (percents.train + percents.validation), 3),
    }
    trainer = {
        "backbone": demo.BACKBONE,
        "weights": shared["weights"],
        "backbone_alpha": args.alpha,
        **{key: shared[key] for key in shared if key not in ("backbone", "weights", "alpha")},
        **json.loads(args.pipeline_trainer),
    }
    pipeline_args = {
        "config": {
            "data_root": root,
            "pipeline_root": os.path.join(work, "tfx_root"),
            "serving_dir": os.path.join(work, "serving"),
            "min_accuracy": 0.0,
            "above_majority_class": False,  # always push: these runs measure time
            "trainer": trainer,
            **json.loads(args.pipeline_config),
        }
    }
    results = {"notebook": _child("notebook", notebook_args), "pipeline": _child("pipeline", pipeline_args)}
    ratio = results["pipeline"]["wall_s"] / results["notebook"]["wall_s"]
    rss_ratio = results["pipeline"]["peak_rss_mb"] / results["notebook"]["peak_rss_mb"]
    print(f"\nData: {args.dataset}, {test_images} held-out test images; settings {json.dumps(shared)}")
    print(f"Pipeline trainer settings: {json.dumps(trainer)}\n")
    print("| run | test accuracy | wall s | peak RSS MB |")
    print("| --- | ---: | ---: | ---: |")
    for name, result in results.items():
        print(f"| {name} | {result['test_accuracy']:.3f} | {result['wall_s']:.1f} | {result['peak_rss_mb']:,} |")
    _print_steps(results["pipeline"])
    _print_phases(results)
    print(f"\nwhole pipeline/notebook wall: {ratio:.2f}x; peak RSS: {rss_ratio:.2f}x")
    diff = results["pipeline"]["test_accuracy"] - results["notebook"]["test_accuracy"]
    print(f"pipeline - notebook test accuracy: {diff:+.3f}")
    _results.write(
        args.out or _results.default_path(f"vs_notebook_{os.path.basename(args.dataset.rstrip('/')).replace(':', '')}"),
        {
            "dataset": args.dataset,
            "test_images": test_images,
            "settings": shared,
            "pipeline_trainer": trainer,
            "results": results,
            "wall_ratio": round(ratio, 3),
            "rss_ratio": round(rss_ratio, 3),
            "notebook_augmentation": args.notebook_augmentation,
        },
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
