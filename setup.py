"""tfx-image-transfer: transfer-learning image classification on TFX 1.16.

The whole stack is pinned here (TFX 1.16 needs Python 3.10; see README); the
exact versions of every transitive dependency are in constraints.txt.
"""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "tfx[kfp]==1.16.0",
    "tensorflow==2.16.2",
    "keras==3.12.4",
    "tf-keras==2.16.0",
    "apache-beam==2.74.0",
    "tensorflow-transform==1.16.0",
    "tensorflow-model-analysis==0.47.1",
    "tensorflow-data-validation==1.16.1",
    "tfx-bsl==1.16.1",
    "ml-metadata==1.16.0",
    "kfp==2.5.0",
    "kfp-pipeline-spec==0.2.2",
    "numpy==1.26.4",
    "protobuf==3.20.3",
    "pyarrow==10.0.1",
    # Beam 2.74 made dill optional, but tensorflow_transform imports it.
    "dill==0.3.1.1",
    "pillow==12.3.0",
    "click==8.5.1",
    "PyYAML==6.0.3",
    # The pipeline root run lock (pipeline/run_lock.py).
    "portalocker==4.4.2",
    # Learning-curve and confusion-matrix PNGs.
    "matplotlib==3.9.2",
    # The HTML model card of each run (pipeline/html_report.py).
    "Jinja2==3.1.6",
]

setup(
    name="tfx-image-transfer",
    version="0.1.0",
    description="Transfer-learning image classification pipeline on TFX: ingest, transform, train, gate, push.",
    python_requires="==3.10.*",
    packages=find_packages(include=["pipeline", "components", "components.*", "schemas", "kubeflow"]),
    package_data={"schemas": ["*.pbtxt"], "pipeline": ["demo_assets/*.weights.h5", "templates/*.html.j2"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"dev": ["pytest==9.2.0", "ruff==0.17.6", "kubernetes-validate==1.37.0"]},
    entry_points={"console_scripts": ["image-pipeline=pipeline.cli:main"]},
)
