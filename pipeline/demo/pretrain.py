"""Pretrains a backbone from scratch on a source image folder and saves its weights.

This is how the offline demo gets "pretrained" weights without ImageNet: a
backbone learns the source domain (other shapes), and the pipeline transfers it
to the target task with ``--weights <file>``. The same command works for any
labelled folder, e.g. to pretrain on a large in-house data set.
"""

from __future__ import annotations

import logging

import keras

from components.modules import model as model_lib


def pretrain_backbone(
    data_root: str,
    weights_path: str,
    backbone_name: str,
    image_size: int,
    alpha: float,
    epochs: int,
    batch_size: int = 32,
    learning_rate: float = 3e-3,
    seed: int = 0,
) -> dict[str, float]:
    """Trains backbone + head on ``data_root`` and saves the backbone's weights.

    Args:
      data_root: Folder with one sub-folder per source class.
      weights_path: Output file; must end in ``.weights.h5``.
      backbone_name: Registry name, e.g. ``MobileNetV2``.
      image_size: Input side.
      alpha: Width multiplier (MobileNet backbones).
      epochs: Training epochs.
      batch_size: Batch size.
      learning_rate: Adam learning rate.
      seed: Seed of the split, shuffling and initialisation.

    Returns:
      Final training and validation accuracy on the source task.
    """
    if not weights_path.endswith(".weights.h5"):
        raise ValueError(f"weights_path must end in .weights.h5. Received: {weights_path!r}")
    keras.utils.set_random_seed(seed)
    splits = keras.utils.image_dataset_from_directory(
        data_root,
        image_size=(image_size, image_size),
        batch_size=batch_size,
        validation_split=0.1,
        subset="both",
        seed=seed,
    )
    train, validation = splits
    num_classes = len(train.class_names)
    logging.info("Pretraining %s on %d source classes: %s", backbone_name, num_classes, train.class_names)
    backbone = model_lib.build_backbone(backbone_name, image_size, "none", alpha)
    classifier = model_lib.build_classifier(
        backbone, backbone_name, num_classes, dropout=0.2, backbone_inference_mode=False
    )
    model_lib.compile_model(classifier, learning_rate)
    # image_dataset_from_directory shuffles; Keras 3.15 warns when shuffle is left at True for a Dataset.
    history = classifier.fit(train, validation_data=validation, epochs=epochs, shuffle=False, verbose=2)
    backbone.save_weights(weights_path)
    logging.info("Saved %s source weights to %s", backbone_name, weights_path)
    return {
        "source_train_accuracy": float(history.history["accuracy"][-1]),
        "source_val_accuracy": float(history.history["val_accuracy"][-1]),
    }
