"""The ``image-pipeline`` command: the click group and where each command lives.

Configuration is parsed once, into a typed ``PipelineConfig``; every config
field is also a flag (``--image-size 96``), and flags override the file
(``pipeline/cli/options.py``). Each command family has its own module:

- ``run.py``: ``run`` (the whole pipeline locally);
- ``demo.py``: ``demo``, ``generate-data``, ``pretrain``;
- ``predict.py``: ``predict``;
- ``score.py``: ``score`` (a folder into CSV/JSONL rows);
- ``hub.py``: ``hub-download``;
- ``config.py``: ``config show``;
- ``kubeflow_commands.py``: ``compile``, ``kubeflow-dry-run``, ``submit``, ``schedule``;
- ``report.py``: ``report``;
- ``serving.py``: ``serving list|canary|promote|rollback``.

Heavy imports (TensorFlow, TFX, KFP) happen inside the commands, so ``--help``
stays fast.
"""

from __future__ import annotations

import warnings

import click

from pipeline.cli import config, demo, hub, kubeflow_commands, predict, report, run, score, serving
from pipeline.local import console


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Show every library message on the console too.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Transfer-learning image classification on TFX."""
    if not verbose:
        # Libraries' FutureWarnings are notices to their users (us), not to this CLI's users; -v shows them.
        warnings.filterwarnings("ignore", category=FutureWarning)
    console.setup(verbose)
    ctx.obj = {"verbose": verbose}


for _command in (
    run.run,
    demo.demo,
    demo.generate_data,
    demo.pretrain,
    predict.predict,
    score.score,
    hub.hub_download,
    config.config_group,
    kubeflow_commands.compile_command,
    kubeflow_commands.kubeflow_dry_run,
    kubeflow_commands.submit,
    kubeflow_commands.schedule,
    report.report,
    serving.serving,
):
    main.add_command(_command)


if __name__ == "__main__":
    main()
