"""The smallest two-tower model the trainer tests use, as a ``--set`` override."""

MICRO_MODEL = (
    "model.overrides={vision_width: 32, vision_layers: 1, vision_heads: 2, patch_size: 8,"
    " image_size: 16, text_width: 32, text_layers: 1, text_heads: 2, token_dim: 16,"
    " context_length: 16}"
)
