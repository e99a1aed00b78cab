"""``fine_tune_schedule: auto``: stage 2's depth and learning rate chosen on validation.

How deep to unfreeze and how fast to move depends on how far the new images are from
the backbone's pretraining: a close domain wants a little fine-tuning, a distant one
the whole backbone at a higher rate (Ferlitsch, *Deep Learning Patterns and
Practices*, ch. 11). ``auto`` measures it instead of guessing, within the stage 2
epoch budget, by successive halving (Jamieson and Talwalkar, 2016):

1. Candidates: ``auto_candidates``, each a depth (a share of the backbone's blocks
   from the top; 1.0 is all of it) and a learning rate, each starting from stage 1's
   weights. The default is a ladder from a little, slowly, to all of it, fast.
2. Half of the stage 2 budget (in batches) is spent on rungs: in each rung every
   surviving candidate trains the same number of batches, is scored on the
   ``validation`` split, and the better half goes on to the next rung with its weights.
3. The last one trains for the other half of the budget, as ordinary epochs (early
   stopping and the per-epoch log as in any stage).

It never reads ``test``. The rungs are recorded in :class:`~settings.AutoChoice`, which
the training summary and the model card show as numbers per candidate.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from components.modules import model as model_lib
from components.modules.settings import AutoCandidate, AutoChoice, TrainerSettings


@dataclasses.dataclass(frozen=True)
class Budget:
    """Stage 2's batches, split between the rungs and the winner's epochs.

    Attributes:
      candidates: How many candidates start.
      rung_batches: Batches each surviving candidate trains in each rung.
      final_epochs: Epochs the winner trains after the rungs.
      final_steps: Batches in each of those epochs.
    """

    candidates: int
    rung_batches: tuple[int, ...]
    final_epochs: int
    final_steps: int

    def survivors(self) -> list[int]:
        """How many candidates train in each rung (halved, rounded up, after each)."""
        counts, alive = [], self.candidates
        for _ in self.rung_batches:
            counts.append(alive)
            alive = math.ceil(alive / 2)
        return counts

    @property
    def rungs_total(self) -> int:
        """Batches spent in the rungs, all candidates together."""
        return sum(batches * alive for batches, alive in zip(self.rung_batches, self.survivors(), strict=True))

    @property
    def total(self) -> int:
        """Batches the whole of stage 2 trains, all candidates together."""
        return self.rungs_total + self.final_epochs * self.final_steps


def budget(candidates: int, epochs: int, steps_per_epoch: int) -> Budget:
    """Half of ``epochs * steps_per_epoch`` batches for the rungs, the other half for the winner.

    The candidates halve after each rung until one is left; each rung gets the same
    share of the rung half, split among the candidates in it (at least one batch
    each). The winner then trains ``ceil(epochs / 2)`` epochs that share what is left.
    """
    total = epochs * steps_per_epoch
    rungs = math.ceil(math.log2(candidates)) if candidates > 1 else 0
    batches, alive = [], candidates
    for _ in range(rungs):
        batches.append(max(1, total // 2 // rungs // alive))
        alive = math.ceil(alive / 2)
    plan = Budget(candidates, tuple(batches), 1, 1)
    final_epochs = max(1, math.ceil(epochs / 2)) if rungs else epochs
    return dataclasses.replace(
        plan, final_epochs=final_epochs, final_steps=max(1, (total - plan.rungs_total) // final_epochs)
    )


def candidates(backbone: keras.Model, settings: TrainerSettings) -> list[AutoCandidate]:
    """``auto_candidates`` as first layers, shallow and slow first; two that unfreeze the same blocks at the same
    rate are one."""
    blocks = model_lib.layer_blocks(backbone)
    found: dict[tuple[int, float], AutoCandidate] = {}
    for spec in sorted(settings.auto_candidates, key=lambda spec: (spec.depth, spec.learning_rate)):
        count = max(1, round(spec.depth * len(blocks)))
        first = blocks[-count][0]
        named = next(index for index in blocks[-count] if backbone.layers[index].weights)  # not an input layer
        found.setdefault(
            (first, spec.learning_rate),
            AutoCandidate(
                depth=spec.depth,
                blocks=count,
                first_layer=model_lib.layer_name(backbone, named),
                first_index=first,
                learning_rate=spec.learning_rate,
            ),
        )
    return list(found.values())


Validate = Callable[[], float]


class _Masks:
    """One 0/1 multiplier per trainable variable: which layers a candidate trains, without a new trace.

    Changing which layers are trainable makes Keras trace the training step again
    (3-6 s on 2 CPU cores for a MobileNetV2, several times what a rung trains). So
    every layer any candidate trains stays trainable, and the optimizer multiplies
    each gradient by its variable's mask: 0 leaves the variable exactly as it is (Adam
    starts each candidate from zero moments, so no momentum moves it either).
    """

    def __init__(self, backbone: keras.Model, variables: list[keras.Variable]) -> None:
        owner = {id(weight): index for index, layer in enumerate(backbone.layers) for weight in layer.weights}
        self._layer = {id(variable): owner.get(id(variable)) for variable in variables}
        self._mask = {id(variable): tf.Variable(1.0, trainable=False) for variable in variables}

    def train_from(self, first_index: int) -> None:
        """Backbone layers from ``first_index`` up (and the head) train; the rest keep their weights."""
        for key, mask in self._mask.items():
            layer = self._layer[key]
            mask.assign(1.0 if layer is None or layer >= first_index else 0.0)

    def apply(self, grads: list[tf.Tensor | None], variables: list[keras.Variable]) -> list[tf.Tensor | None]:
        """The gradients, masked."""
        return [
            grad if grad is None or id(var) not in self._mask else grad * tf.cast(self._mask[id(var)], grad.dtype)
            for grad, var in zip(grads, variables, strict=True)
        ]


class _MaskedAdam(keras.optimizers.Adam):
    """Adam whose gradients go through :class:`_Masks` first."""

    def __init__(self, masks: _Masks, learning_rate: float) -> None:
        super().__init__(learning_rate=learning_rate, name="masked_adam")
        self._masks = [masks]  # a list: not tracked as part of the optimizer's state

    def apply(self, grads: list, trainable_variables: list | None = None) -> object:  # noqa: D102
        return super().apply(self._masks[0].apply(list(grads), list(trainable_variables)), trainable_variables)


@dataclasses.dataclass
class _Trial:
    """What each candidate leaves behind between rungs: its weights and optimizer state."""

    weights: list[np.ndarray]
    optimizer: list[np.ndarray]


class _Rungs:
    """The compiled model and the switch between candidates (weights, optimizer state, masks, rate)."""

    def __init__(self, classifier: keras.Model, fitted: keras.Model, pool: list[AutoCandidate], jit: bool) -> None:
        self._classifier, self._fitted, self._pool = classifier, fitted, pool
        backbone = classifier.get_layer(model_lib.BACKBONE_LAYER_NAME)
        model_lib.unfreeze_from(classifier, min(candidate.first_index for candidate in pool))
        self._masks = _Masks(backbone, fitted.trainable_variables)
        # The accuracy metric keeps each validation pass's matrix: the winner's epochs need no pass of their own.
        model_lib.compile_model(
            fitted,
            pool[0].learning_rate,
            jit_compile=jit,
            optimizer=_MaskedAdam(self._masks, pool[0].learning_rate),
        )
        fitted.optimizer.build(fitted.trainable_variables)
        self._start = _Trial(classifier.get_weights(), [v.numpy() for v in fitted.optimizer.variables])
        self._trials: dict[int, _Trial] = {}
        self.current: int | None = None

    def switch_to(self, index: int) -> None:
        """Loads candidate ``index``'s weights and optimizer state (stage 1's and a fresh Adam the first time)."""
        if index == self.current:
            return
        if self.current is not None:
            self._trials[self.current] = _Trial(
                self._classifier.get_weights(), [v.numpy() for v in self._fitted.optimizer.variables]
            )
        trial = self._trials.get(index, self._start)
        self._classifier.set_weights(trial.weights)
        for variable, value in zip(self._fitted.optimizer.variables, trial.optimizer, strict=True):
            variable.assign(value)
        self._fitted.optimizer.learning_rate = self._pool[index].learning_rate
        self._masks.train_from(self._pool[index].first_index)
        self.current = index

    def train(self, index: int, batches: int, train: tf.data.Dataset) -> None:
        """Candidate ``index`` trains ``batches`` more batches."""
        started = time.monotonic()
        self.switch_to(index)
        self._fitted.fit(train, epochs=1, steps_per_epoch=batches, shuffle=False, verbose=0)
        candidate = self._pool[index]
        candidate.batches_trained += batches
        candidate.seconds = round(candidate.seconds + time.monotonic() - started, 2)


def select(
    classifier: keras.Model,
    fitted: keras.Model,
    train: tf.data.Dataset,
    settings: TrainerSettings,
    validate: Validate,
) -> AutoChoice:
    """Runs the rungs; leaves ``classifier`` with the winner's weights and ``fitted`` compiled to train it on.

    Args:
      classifier: The classifier, holding stage 1's weights.
      fitted: The model that trains (``classifier``, or it behind augmentation layers).
      train: Training batches (of known length).
      settings: The trainer settings (``auto_candidates``, ``stage2_epochs``, ``xla``).
      validate: The classifier's current validation accuracy.

    Returns:
      Every candidate's rung scores, the winner and the budget.
    """
    backbone = classifier.get_layer(model_lib.BACKBONE_LAYER_NAME)
    pool = candidates(backbone, settings)
    plan = budget(len(pool), settings.stage2_epochs, len(train))
    rungs = _Rungs(classifier, fitted, pool, settings.xla)
    alive = list(range(len(pool)))
    for rung, batches in enumerate(plan.rung_batches, start=1):
        for index in alive:
            rungs.train(index, batches, train)
            pool[index].rung_accuracies.append(validate())
            _log_rung(rung, pool[index])
        alive = _better_half(pool, alive)
        # The leader goes last in the next rung: it is then the loaded one, with nothing to swap.
        alive.sort(key=lambda index: pool[index].rung_accuracies[-1])
    winner = alive[-1]
    rungs.switch_to(winner)  # also when there was one candidate and no rung
    pool[winner].chosen = True
    choice = AutoChoice(
        candidates=pool,
        rung_batches=list(plan.rung_batches),
        final_epochs=plan.final_epochs,
        final_steps=plan.final_steps,
    )
    logging.info("Stage 2 (auto): %s", choice.reason())
    return choice


# The winner's own epochs train only its layers when it is shallower than the deepest candidate and has at
# least this many batches left: the rungs' step computes every candidate's gradients (the masks zero the
# unused ones), and a new trace costs about what 60 batches save. Measured at 96 px on 2 CPU cores,
# MobileNetV2 1.0: a step 0.15-0.27 s with all 18 blocks trainable, 0.10-0.12 s with 9 or 4; tracing the
# narrower step 3.7 s (benchmarks/README.md, "Fixed cost").
NARROW_MIN_BATCHES = 100


def train_only_the_winner(classifier: keras.Model, fitted: keras.Model, choice: AutoChoice, jit: bool) -> bool:
    """Recompiles ``fitted`` so that only the winner's layers are trainable, keeping its optimizer state.

    In float32 its numbers do not change (tested): Adam updates each variable from its
    own gradient and moments, the gradients of the layers the winner trains do not
    depend on whether the layers below them are trainable, and the masked ones it drops
    had zero gradients and zero moments. Under mixed precision one difference remains:
    the loss scale no longer sees the dropped layers' gradients, so a float16 overflow
    there no longer skips a step. Only the step gets cheaper, so it is done only when
    enough batches are left to pay for the new trace (:data:`NARROW_MIN_BATCHES`).

    Returns:
      Whether it recompiled.
    """
    chosen = choice.chosen
    deepest = min(candidate.first_index for candidate in choice.candidates)
    if chosen.first_index == deepest or choice.final_epochs * choice.final_steps < NARROW_MIN_BATCHES:
        return False
    model_lib.unfreeze_from(classifier, chosen.first_index)
    model_lib.compile_model(fitted, chosen.learning_rate, jit_compile=jit, optimizer=fitted.optimizer)
    logging.info(
        "Stage 2 (auto): its %d batches train only the winner's %d blocks (a cheaper step than the rungs').",
        choice.final_epochs * choice.final_steps,
        chosen.blocks,
    )
    return True


def _better_half(pool: list[AutoCandidate], alive: list[int]) -> list[int]:
    """The better half (rounded up) by the last rung's validation accuracy; ties keep the shallower, slower one."""
    ranked = sorted(alive, key=lambda index: (-pool[index].rung_accuracies[-1], index))
    keep = ranked[: math.ceil(len(alive) / 2)] if len(alive) > 1 else ranked
    for index in alive:
        if index not in keep:
            pool[index].dropped_at_rung = len(pool[index].rung_accuracies)
    return keep


def _log_rung(rung: int, candidate: AutoCandidate) -> None:
    logging.info(
        "Stage 2 (auto) rung %d: %s: validation accuracy %.3f after %d batches",
        rung,
        candidate.label(),
        candidate.rung_accuracies[-1],
        candidate.batches_trained,
    )
