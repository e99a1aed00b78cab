"""fine_tune_schedule=auto: the budget, the candidates, and the choice made on validation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from components.modules import auto_schedule, train_loop, training_setup
from components.modules import model as model_lib
from components.modules.settings import TrainerSettings

SIZE = 32


def _grid(depths: tuple[float, ...], rates: tuple[float, ...]) -> list[dict[str, float]]:
    return [{"depth": depth, "learning_rate": rate} for depth in depths for rate in rates]


def _settings(**overrides: object) -> TrainerSettings:
    values = {
        "image_size": SIZE,
        "weights": "/pretrained/backbone.weights.h5",
        "stage1_epochs": 1,
        "stage2_epochs": 2,
        "augmentation": "none",
        "seed": 0,
    }
    values.update(overrides)
    return TrainerSettings.model_validate(values)


def _data(count: int = 24, batch: int = 4) -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (count, SIZE, SIZE, 3)).astype("float32")
    labels = np.arange(count) % 3
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch).repeat(1)


def _classifier() -> keras.Model:
    backbone = model_lib.build_backbone("MobileNetV2", SIZE, "none", alpha=0.35)
    return model_lib.build_classifier(backbone, "MobileNetV2", 3, dropout=0.1)


@pytest.mark.parametrize(
    ("candidates", "epochs", "steps", "rungs", "final"),
    [
        (4, 2, 40, (5, 10), (1, 40)),  # half the batches in two rungs, the other half one epoch
        (9, 2, 40, (1, 2, 3, 5), (1, 42)),  # 9 -> 5 -> 3 -> 2 -> 1
        (6, 5, 10, (1, 2, 4), (3, 10)),
        (1, 3, 10, (), (3, 10)),  # one candidate: no rung, the whole budget
    ],
)
def test_budget_splits_the_stage2_batches_and_never_exceeds_them(
    candidates: int, epochs: int, steps: int, rungs: tuple[int, ...], final: tuple[int, int]
) -> None:
    plan = auto_schedule.budget(candidates, epochs, steps)
    assert plan.rung_batches == rungs
    assert (plan.final_epochs, plan.final_steps) == final
    assert epochs * steps - plan.final_epochs <= plan.total <= epochs * steps
    assert plan.survivors()[-1:] in ([], [2], [1]) and plan.survivors()[:1] in ([], [candidates])


def test_candidates_are_depth_times_rate_shallow_first_without_repeats() -> None:
    backbone = _classifier().get_layer(model_lib.BACKBONE_LAYER_NAME)
    blocks = model_lib.layer_blocks(backbone)
    same_block = (round(0.25 * len(blocks)) + 0.2) / len(blocks)  # rounds to as many blocks as 0.25
    pool = auto_schedule.candidates(backbone, _settings(auto_candidates=_grid((1.0, 0.25, same_block), (1e-3, 1e-4))))
    low = min(0.25, same_block)  # of two depths that unfreeze the same blocks, the first in order stays
    assert [(c.depth, c.learning_rate) for c in pool] == [(low, 1e-4), (low, 1e-3), (1.0, 1e-4), (1.0, 1e-3)]
    assert pool[0].blocks == round(0.25 * len(blocks)) and pool[0].first_index == blocks[-pool[0].blocks][0]
    assert pool[-1].first_index == blocks[0][0] and pool[-1].first_layer == "Conv1"  # the first layer with weights


def _scripted(classifier: keras.Model, fitted: keras.Model, scores: dict[float, list[float]]):
    """Validation accuracy by the candidate's learning rate (the tests give each its own); records the weights
    each candidate left behind."""
    seen: list[float] = []
    weights: dict[float, list[np.ndarray]] = {}

    def validate() -> float:
        rate = round(float(fitted.optimizer.learning_rate.numpy()), 8)
        seen.append(rate)
        weights[rate] = [np.array(w) for w in classifier.get_weights()]
        return scores[rate].pop(0)

    return validate, seen, weights


def _compiled_classifier() -> tuple[keras.Model, keras.Model]:
    classifier = _classifier()
    model_lib.freeze_backbone(classifier)
    model_lib.compile_model(classifier, 1e-3)
    return classifier, classifier.get_layer(model_lib.BACKBONE_LAYER_NAME)


LADDER = [
    {"depth": 0.25, "learning_rate": 1e-4},
    {"depth": 0.25, "learning_rate": 2e-4},
    {"depth": 1.0, "learning_rate": 3e-4},
    {"depth": 1.0, "learning_rate": 1e-3},
]


def test_select_keeps_the_best_on_validation_and_the_leader_runs_last() -> None:
    classifier, backbone = _compiled_classifier()
    settings = _settings(auto_candidates=LADDER)
    # Rung 1: 1e-3 (deep) and 1e-4 (shallow) go on; rung 2: 1e-3 wins.
    scores = {1e-4: [0.60, 0.62], 2e-4: [0.40], 3e-4: [0.50], 1e-3: [0.70, 0.80]}
    validate, seen, _ = _scripted(classifier, classifier, scores)
    choice = auto_schedule.select(classifier, classifier, _data(), settings, validate)
    assert seen == [1e-4, 2e-4, 3e-4, 1e-3, 1e-4, 1e-3]  # in rung 2 the leader runs last
    chosen = choice.chosen
    assert (chosen.depth, chosen.learning_rate) == (1.0, 1e-3)
    assert chosen.rung_accuracies == [0.70, 0.80] and chosen.dropped_at_rung is None
    assert [c.dropped_at_rung for c in choice.candidates] == [2, 1, 1, None]
    assert choice.rung_batches == [1, 1] and [c.batches_trained for c in choice.candidates] == [2, 1, 1, 2]
    assert "validation accuracy 0.800" in choice.reason() and "next best" in choice.reason()
    assert float(classifier.optimizer.learning_rate.numpy()) == pytest.approx(1e-3)  # ready to go on


def test_the_winner_goes_on_from_its_own_weights_and_trains_only_its_layers() -> None:
    classifier, backbone = _compiled_classifier()
    stage1 = [np.array(w) for w in classifier.get_weights()]
    settings = _settings(auto_candidates=[LADDER[0], LADDER[3]])
    validate, _, after = _scripted(classifier, classifier, {1e-4: [0.9], 1e-3: [0.3]})
    choice = auto_schedule.select(classifier, classifier, _data(), settings, validate)
    assert choice.chosen.learning_rate == 1e-4  # the shallow one won although the deep one ran last
    assert all(np.array_equal(a, b) for a, b in zip(after[1e-4], classifier.get_weights(), strict=True))
    classifier.fit(_data(), epochs=1, steps_per_epoch=3, verbose=0)  # the winner's epochs
    first = choice.chosen.first_index
    below = [w for layer in backbone.layers[:first] for w in layer.weights]
    above = [w for layer in backbone.layers[first:] for w in layer.trainable_weights]
    by_path = dict(zip([w.path for w in classifier.weights], stage1, strict=True))
    assert below and all(np.array_equal(np.array(w), by_path[w.path]) for w in below)  # never trained
    assert any(not np.array_equal(np.array(w), by_path[w.path]) for w in above)


def test_auto_is_the_default_and_stage2_spends_its_epoch_budget(tmp_path: object) -> None:
    assert TrainerSettings().fine_tune_schedule == "auto"
    classifier = _classifier()
    settings = _settings(stage2_epochs=2, auto_candidates=LADDER)
    batches: list[int] = []

    class Count(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            batches.append(batch)

    original_fit = keras.Model.fit

    def counted_fit(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), Count()]
        return original_fit(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras.Model, "fit", counted_fit)
        result = train_loop.train_two_stages(classifier, _data(), _data(), settings, str(tmp_path))
    steps = len(_data())
    choice = result.stage2_auto
    assert choice is not None and len(choice.candidates) == 4
    assert len(batches) == steps * settings.stage1_epochs + (
        sum(c.batches_trained for c in choice.candidates) + choice.final_epochs * choice.final_steps
    )
    assert len(batches) - steps * settings.stage1_epochs <= steps * settings.stage2_epochs
    assert len(result.stage2.loss) == choice.final_epochs
    assert result.stage2_plan[0].first_layer == choice.chosen.first_layer
    assert result.fine_tuned_validation_accuracy is not None


def test_auto_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="depth"):
        _settings(auto_candidates=[{"depth": 0.0, "learning_rate": 1e-4}])
    with pytest.raises(ValueError, match="learning_rate"):
        _settings(auto_candidates=[{"depth": 1.0, "learning_rate": 2.0}])
    with pytest.raises(ValueError, match="auto_candidates"):
        _settings(auto_candidates=[])
    assert [(c.depth, c.learning_rate) for c in TrainerSettings().auto_candidates] == [
        (0.25, 1e-4),
        (0.5, 3e-4),
        (1.0, 3e-4),
        (1.0, 1e-3),
    ]


def test_auto_runs_with_mixed_precision_xla_and_mirrored_strategy_on_cpu(tmp_path: object) -> None:
    settings = _settings(stage2_epochs=2, xla=True, auto_candidates=LADDER[:2], augmentation={"zoom": 0.1})
    with training_setup.precision(True), training_setup.strategy("mirrored").scope():
        classifier = _classifier()
        result = train_loop.train_two_stages(classifier, _data(), _data(), settings, str(tmp_path))
    choice = result.stage2_auto
    assert choice is not None and len(choice.candidates) == 2 and choice.chosen.rung_accuracies
    assert len(result.stage2.loss) == choice.final_epochs and result.xla is True
    assert all(np.isfinite(value) for value in result.stage2.loss)


def test_auto_candidates_parse_from_the_flag_form() -> None:
    settings = _settings(auto_candidates=["0.5@3e-4", {"depth": 1.0, "learning_rate": 1e-3}])
    assert [(c.depth, c.learning_rate) for c in settings.auto_candidates] == [(0.5, 3e-4), (1.0, 1e-3)]
    with pytest.raises(ValueError, match="DEPTH@LEARNING_RATE"):
        _settings(auto_candidates=["0.5"])


def _auto_run(tmp_path: object, narrow_from: int) -> tuple[list, object, list]:
    """Stage 1 and auto with the shallow candidate made the winner: the weights, the result, and the trainable
    variables at each fit."""
    scores = iter([0.9, 0.1])  # rung 1: the shallow candidate, then the deep one
    real_check = train_loop.validation_check
    trainable: list[int] = []
    original_fit = keras.Model.fit

    def check(model: keras.Model, data: tf.data.Dataset) -> train_loop.ValidationCheck:
        found = real_check(model, data)
        return train_loop.ValidationCheck(next(scores, found.accuracy), found.confusion_matrix)

    def recorded_fit(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        trainable.append(len(self.trainable_variables))
        return original_fit(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(auto_schedule, "NARROW_MIN_BATCHES", narrow_from)
        patch.setattr(train_loop, "validation_check", check)
        patch.setattr(keras.Model, "fit", recorded_fit)
        keras.utils.set_random_seed(0)
        classifier = _classifier()
        settings = _settings(stage2_epochs=2, auto_candidates=["0.25@1e-3", "1.0@1e-3"])
        result = train_loop.train_two_stages(classifier, _data(), _data(), settings, str(tmp_path))
    return [np.array(weight) for weight in classifier.weights], result, trainable


def test_the_winner_trained_alone_ends_with_the_same_weights(tmp_path: object) -> None:
    """Recompiled to train only the shallow winner's layers, its epochs give what the masked step gives."""
    masked, masked_result, masked_trainable = _auto_run(tmp_path, 10**9)
    narrowed, narrowed_result, narrowed_trainable = _auto_run(tmp_path, 0)
    assert masked_result.stage2_auto.chosen.depth == narrowed_result.stage2_auto.chosen.depth == 0.25
    assert narrowed_trainable[:-1] == masked_trainable[:-1]  # stage 1 and the rungs
    assert narrowed_trainable[-1] < masked_trainable[-1]  # the winner's epochs: a narrower step
    assert narrowed_result.stage2.loss == pytest.approx(masked_result.stage2.loss, rel=1e-4)
    for before, after in zip(masked, narrowed, strict=True):
        np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)
