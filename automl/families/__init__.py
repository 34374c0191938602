"""Model families the search space chooses between: ``pretrained`` and ``scratch``.

Each family builds a :class:`ModelParts` from a trial's configuration, only from built-in
Keras layers, so every model loads with ``keras.models.load_model(..., safe_mode=True)``
and exports to every format. The family's shape hyperparameters are listed in
:data:`automl.space.FAMILY_KEYS`.
"""

from __future__ import annotations

from automl.families.base import ModelParts, global_pool

FAMILIES = ("pretrained", "scratch")


def build(cfg, num_classes: int) -> ModelParts:
    """Build the model of ``cfg`` (a :class:`automl.trial.TrialConfig`) for ``num_classes``."""
    family = getattr(cfg, "family", "pretrained")
    if family == "scratch":
        from automl.families.scratch import build_scratch

        return build_scratch(cfg, num_classes)
    from automl.families.pretrained import build_model

    return build_model(
        cfg.backbone,
        num_classes=num_classes,
        image_size=cfg.image_size,
        dropout=cfg.dropout,
        weights=cfg.weights,
        pooling=cfg.pooling,
        head_layers=cfg.head_layers,
        head_units=cfg.head_units,
        head_batchnorm=cfg.head_batchnorm,
    )


__all__ = ["FAMILIES", "ModelParts", "build", "global_pool"]
