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
real data this project did not generate), ``fashion[:N]`` (Zalando's Fashion-MNIST product
photos, 28x28 gray, the first N per class of its training file, default 200 = 2,000 images;
from Debian's ``dataset-fashion-mnist`` package, ``/usr/share/datasets/fashion-mnist``),
``shapes:N`` (the demo's generated shapes, N per class: ``shapes:6667`` is the 20k-image
run). Or a folder path of your own.

By default the pipeline runs with its own defaults (``--pipeline-recipe defaults``: only
the image size, batch size, epochs, weights and seed are the notebook's); ``notebook``
gives it the notebook's stage 2 too (layers and learning rates). ``--variant NAME=JSON``
(repeatable) adds pipeline runs with more settings (``{"trainer": {...}, "tuning": {...}}``),
and ``--seeds 1,2,3`` repeats everything per seed and reports mean and spread.

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
from components.ingest import plan as ingest_plan
from pipeline.demo import demo, demo_data

DIGITS_SCALE = 16.0  # sklearn's digits hold 0..16 gray levels
FASHION_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
FASHION_CLASSES = (
    "t-shirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)
FASHION_PER_CLASS = 200


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


def _fashion_folder(root: str, image_size: int, per_class: int) -> int:
    """The first ``per_class`` Fashion-MNIST training images of each class as PNGs, upscaled (bilinear)."""
    import gzip

    import numpy as np
    from PIL import Image

    with gzip.open(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz")) as handle:
        images = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(FASHION_DIR, "train-labels-idx1-ubyte.gz")) as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8)
    written = 0
    for label, name in enumerate(FASHION_CLASSES):
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        for index in np.flatnonzero(labels == label)[:per_class]:
            image = Image.fromarray(images[index], "L").resize((image_size, image_size), Image.BILINEAR)
            image.convert("RGB").save(os.path.join(folder, f"{index:05d}.png"))
            written += 1
    return written


def _count_suffix(name: str, prefix: str) -> str:
    count = name.removeprefix(prefix)
    return "" if count.isdigit() and int(count) > 0 else f"--dataset {name!r}: {prefix}N needs N > 0 images per class"


def _dataset_problem(name: str) -> str:
    """Why ``--dataset`` cannot be used (empty if it can), checked before any work."""
    if name in ("demo", "digits"):
        return ""
    if name == "fashion" or name.startswith("fashion:"):
        if not os.path.isdir(FASHION_DIR):
            return f"--dataset fashion needs {FASHION_DIR}: apt-get install dataset-fashion-mnist"
        return "" if name == "fashion" else _count_suffix(name, "fashion:")
    if name.startswith("shapes:"):
        return _count_suffix(name, "shapes:")
    return "" if os.path.isdir(name) else f"--dataset {name!r} is not demo, digits, fashion[:N], shapes:N or a folder"


def _dataset(name: str, work: str, image_size: int) -> str:
    root = os.path.join(work, "data")
    if name == "demo":
        demo_data.generate(root, demo_data.TARGET_CLASSES, demo.TARGET_PER_CLASS, image_size, seed=1)
    elif name.startswith("shapes:"):
        demo_data.generate(root, demo_data.TARGET_CLASSES, int(name.removeprefix("shapes:")), image_size, seed=1)
    elif name == "digits":
        _digits_folder(root, image_size)
    elif name.startswith("fashion"):
        _fashion_folder(root, image_size, int(name.partition(":")[2] or FASHION_PER_CLASS))
    else:
        shutil.copytree(name, root, symlinks=False)
    return root


def _held_out(root: str, percents: splits.SplitPercents, work: str) -> tuple[str, str, int]:
    """Symlink trees by the ingest's own plan: its ingested non-test files (the notebook's data), and its test split.

    The plan (``components/ingest/plan.py``) is what the pipeline's ExampleGen writes: copies
    of one image stay in one split, and files the ingest rejects (broken, or the same image
    under two classes) are in neither tree, so both are judged on the very same images.
    """
    plan = ingest_plan.plan_ingest(image_files.list_files(root), percents, image_files.IngestLimits())
    trainval, test = os.path.join(work, "notebook_trainval"), os.path.join(work, "test")
    for item in plan.files:
        if item.reason:
            continue
        target = test if item.split == splits.TEST else trainval
        os.makedirs(os.path.join(target, item.found.label), exist_ok=True)
        os.symlink(os.path.abspath(item.found.path), os.path.join(target, item.found.relative_path))
    return trainval, test, plan.split_totals()[splits.TEST]


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
        "stage2_choice": report.training.stage2_auto.reason() if report.training.stage2_auto else None,
        "tuned_settings": report.tuned.settings if report.tuned else None,
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset",
        default="demo",
        help="demo, digits, fashion[:N], shapes:N (N generated images per class), or a folder with one "
        "sub-folder per class",
    )
    parser.add_argument("--image-size", type=int, default=demo.IMAGE_SIZE)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--stage1-epochs", type=int, default=3)
    parser.add_argument("--stage2-epochs", type=int, default=2)
    parser.add_argument("--stage1-learning-rate", type=float, default=1e-3)
    parser.add_argument("--stage2-learning-rate", type=float, default=1e-4, help="the notebook's stage 2")
    parser.add_argument("--fine-tune-layers", type=int, default=40, help="the notebook's stage 2")
    parser.add_argument("--weights", default=demo.SHIPPED_WEIGHTS, help="backbone weights file (both runs)")
    parser.add_argument("--alpha", type=float, default=demo.ALPHA)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--seeds", default=None, help="comma-separated seeds: every run once per seed")
    parser.add_argument(
        "--pipeline-recipe",
        choices=["defaults", "notebook"],
        default="defaults",
        help="defaults: the pipeline's own stage 2 (schedule, learning rate); notebook: the notebook's layers "
        "and learning rates",
    )
    parser.add_argument("--pipeline-trainer", default="{}", help="extra trainer settings for the pipeline (JSON)")
    parser.add_argument(
        "--pipeline-config", default="{}", help='extra pipeline settings (JSON), e.g. \'{"tflite": "none"}\''
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help='another pipeline run with these config settings merged in (trainer keys under "trainer")',
    )
    parser.add_argument("--no-pipeline", action="store_true", help="only the --variant runs, not the plain one")
    parser.add_argument(
        "--no-notebook-augmentation",
        dest="notebook_augmentation",
        action="store_false",
        help="leave the guide's RandomFlip + RandomRotation out of the notebook (to see what they cost)",
    )
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", choices=["notebook", "pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("--child-args", help=argparse.SUPPRESS)
    return parser


def _variants(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, dict]:
    """The pipeline runs by name: config overrides, checked before any work."""
    variants = {} if args.no_pipeline else {"pipeline": {}}
    for text in args.variant:
        name, _, settings = text.partition("=")
        try:
            variants[name.strip()] = json.loads(settings)
        except json.JSONDecodeError as error:
            parser.error(f"--variant {text!r}: not NAME=JSON ({error})")
    return variants


def _pipeline_args(args: argparse.Namespace, shared: dict, root: str, work: str, overrides: dict) -> dict:
    """One pipeline run's config: the shared settings, the recipe, then the variant's overrides."""
    common = ("image_size", "batch_size", "stage1_epochs", "stage2_epochs", "stage1_learning_rate", "seed")
    recipe = common if args.pipeline_recipe == "defaults" else (*common, "stage2_learning_rate", "fine_tune_layers")
    trainer = {
        "backbone": demo.BACKBONE,
        "weights": shared["weights"],
        "backbone_alpha": args.alpha,
        **({"fine_tune_schedule": "top_n"} if args.pipeline_recipe == "notebook" else {}),
        **{key: shared[key] for key in recipe},
        **json.loads(args.pipeline_trainer),
        **overrides.get("trainer", {}),
    }
    name = overrides.get("_name", "pipeline")
    return {
        "config": {
            "data_root": root,
            "pipeline_root": os.path.join(work, f"tfx_root_{name}"),
            "serving_dir": os.path.join(work, f"serving_{name}"),
            "min_accuracy": 0.0,
            "above_majority_class": False,  # always push: these runs measure time and accuracy
            **json.loads(args.pipeline_config),
            **{key: value for key, value in overrides.items() if key not in ("trainer", "_name")},
            "trainer": trainer,
        }
    }


def _one_seed(args: argparse.Namespace, seed: int, variants: dict[str, dict], data: tuple) -> dict:
    """The notebook and every pipeline variant once, with this seed."""
    root, work, trainval, test, percents = data
    shared = {
        "backbone": demo.BACKBONE,
        "weights": args.weights if args.weights in ("none", "imagenet") else os.path.abspath(args.weights),
        "alpha": args.alpha,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "stage1_epochs": args.stage1_epochs,
        "stage2_epochs": args.stage2_epochs,
        "stage1_learning_rate": args.stage1_learning_rate,
        "stage2_learning_rate": args.stage2_learning_rate,
        "fine_tune_layers": args.fine_tune_layers,
        "seed": seed,
    }
    notebook_args = {
        **shared,
        "trainval": trainval,
        "test": test,
        "notebook_augmentation": args.notebook_augmentation,
        # The notebook validates on the pipeline's share of validation images.
        "validation_split": round(percents.validation / (percents.train + percents.validation), 3),
    }
    results = {"notebook": _child("notebook", notebook_args)}
    configs = {}
    for name, overrides in variants.items():
        configs[name] = _pipeline_args(args, shared, root, work, {**overrides, "_name": f"{name}_{seed}"})
        results[name] = _child("pipeline", configs[name])
        results[name]["trainer_settings"] = configs[name]["config"]["trainer"]
    return {"seed": seed, "settings": shared, "results": results}


def _spread(values: list[float]) -> str:
    import statistics

    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def _print_summary(runs: list[dict], test_images: int) -> None:
    """Mean and spread over seeds of each run's held-out accuracy, wall time and its ratio to the notebook."""
    import statistics

    names = list(runs[0]["results"])
    print(f"\nOver {len(runs)} seed(s) {[run['seed'] for run in runs]}, {test_images} held-out test images:\n")
    print("| run | test accuracy, mean ± sd (min-max) | minus notebook (mean) | wall s (mean) | wall / notebook |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in names:
        accuracies = [run["results"][name]["test_accuracy"] for run in runs]
        walls = [run["results"][name]["wall_s"] for run in runs]
        gaps = [run["results"][name]["test_accuracy"] - run["results"]["notebook"]["test_accuracy"] for run in runs]
        ratios = [run["results"][name]["wall_s"] / run["results"]["notebook"]["wall_s"] for run in runs]
        print(
            f"| {name} | {_spread(accuracies)} | {statistics.mean(gaps):+.3f} | {statistics.mean(walls):.1f} | "
            f"{statistics.mean(ratios):.2f}x |"
        )


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    if args.child:
        _run_child(args.child, json.loads(args.child_args))
        return
    if problem := _dataset_problem(args.dataset):
        parser.error(problem)
    variants = _variants(args, parser)
    seeds = [int(seed) for seed in args.seeds.split(",")] if args.seeds else [args.seed]
    work = tempfile.mkdtemp(prefix="vs_notebook_")
    root = _dataset(args.dataset, work, args.image_size)
    percents = splits.SplitPercents()
    trainval, test, test_images = _held_out(root, percents, work)
    runs = []
    for seed in seeds:
        run = _one_seed(args, seed, variants, (root, work, trainval, test, percents))
        runs.append(run)
        _print_run(args, run, test_images)
    _print_summary(runs, test_images)
    _results.write(
        args.out or _results.default_path(f"vs_notebook_{os.path.basename(args.dataset.rstrip('/')).replace(':', '')}"),
        {
            "dataset": args.dataset,
            "test_images": test_images,
            "pipeline_recipe": args.pipeline_recipe,
            "variants": variants,
            "runs": runs,
            "notebook_augmentation": args.notebook_augmentation,
        },
    )
    shutil.rmtree(work, ignore_errors=True)


def _print_run(args: argparse.Namespace, run: dict, test_images: int) -> None:
    """One seed's table, per-step times and Trainer phases."""
    results = run["results"]
    print(f"\nData: {args.dataset}, {test_images} held-out test images, seed {run['seed']}")
    print(f"Notebook settings: {json.dumps(run['settings'])}\n")
    print("| run | test accuracy | wall s | wall / notebook | peak RSS MB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, result in results.items():
        ratio = result["wall_s"] / results["notebook"]["wall_s"]
        print(
            f"| {name} | {result['test_accuracy']:.3f} | {result['wall_s']:.1f} | {ratio:.2f}x | "
            f"{result['peak_rss_mb']:,} |"
        )
    for name, result in results.items():
        if name == "notebook":
            continue
        print(f"\n{name}: trainer settings {json.dumps(result['trainer_settings'])}")
        if result.get("stage2_choice"):
            print(f"{name}: stage 2 chose {result['stage2_choice']}")
        if result.get("tuned_settings"):
            print(f"{name}: the Trainer took from the Tuner {json.dumps(result['tuned_settings'])}")
        _print_steps(result)
        _print_phases({"notebook": results["notebook"], "pipeline": result})


if __name__ == "__main__":
    main()
