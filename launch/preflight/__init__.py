"""Pre-flight: what can be known about a recipe before a run, without a GPU or a download.

Owns recipe validation (``check``: Axolotl's schema, our plugins' keys, the card's rules, the LOCK), memory and
time plans (``plan``, ``estimates``, ``batches``, ``utilisation`` with ``measured_points.yaml``, ``packed_batch``),
the resolved config (``resolve``, ``plugin_schema``), and base models (``base_models``, ``pinning``,
``embedded_model``: the default model from its wheel).

May import: common, data_prep, launch.registry, launch.plugins. Never lifecycle, submit or runner: a check
or a plan starts nothing and writes no run folder.
"""
