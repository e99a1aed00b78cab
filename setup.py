"""tfx-image-transfer: transfer-learning image classification on TFX 1.21.

The whole stack is pinned here (TFX 1.21 on Python 3.12 or 3.13; its ml-metadata and
tensorflow-data-validation wheels are manylinux_2_39, so glibc >= 2.39: Debian 13,
Ubuntu 24.04, or the Debian 13 userland that tools/userland.sh builds; see README);
the exact versions of every transitive dependency are in constraints.txt.
"""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    # tfx 1.21 has no kfp extra: kfp is pinned on its own.
    "tfx==1.21.0",
    "tensorflow==2.21.0",
    "keras==3.15.1",
    "tf-keras==2.21.0",
    "apache-beam==2.77.0",
    "tensorflow-transform==1.21.0",
    "tensorflow-model-analysis==0.52.0",
    "tensorflow-data-validation==1.21.0",
    "tfx-bsl==1.21.0",
    "ml-metadata==1.21.0",
    "kfp==2.17.3",
    "kfp-pipeline-spec==2.17.3",
    "numpy==2.4.6",
    "protobuf==6.33.6",
    "pyarrow==18.1.0",
    # The Trainer's TensorBoard logs (keras.callbacks.TensorBoard): tensorflow 2.21 no longer
    # requires tensorboard, and without it tf.summary raises TBNotInstalledError.
    "tensorboard==2.21.0",
    "pillow==12.3.0",
    "click==8.5.1",
    "PyYAML==6.0.4",
    # Config and component-parameter models (pipeline/config/pipeline_config.py, components/): tfx does not
    # require pydantic itself (only google-cloud-aiplatform pulls it in), so name it.
    "pydantic==2.14.4",
    # The pipeline root run lock (pipeline/local/run_lock.py).
    "portalocker==4.4.2",
    # Learning-curve and confusion-matrix PNGs.
    "matplotlib==3.11.2",
    # The HTML model card of each run (pipeline/report/html_report.py).
    "Jinja2==3.1.6",
    # The Tuner's trials (components/modules/tuner.py); its bayesian search needs scikit-learn and scipy.
    "keras-tuner==1.4.8",
    "scikit-learn==1.5.2",
    "scipy==1.18.1",
]

setup(
    name="tfx-image-transfer",
    version="0.1.0",
    description="Transfer-learning image classification pipeline on TFX: ingest, transform, train, gate, push.",
    python_requires=">=3.12,<3.14",
    packages=find_packages(
        include=["pipeline", "pipeline.*", "components", "components.*", "schemas", "kubeflow", "kubeflow.*"]
    ),
    package_data={
        "schemas": ["*.pbtxt"],
        "pipeline.demo": ["assets/*.weights.h5"],
        "pipeline.report": ["templates/*.html.j2"],
    },
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # import-linter: the import contracts in .importlinter (make lint, tests/test_layers.py).
        "dev": ["pytest==9.2.0", "ruff==0.17.6", "kubernetes-validate==1.37.0", "import-linter==2.16"]
    },
    entry_points={"console_scripts": ["image-pipeline=pipeline.cli.main:main"]},
)
