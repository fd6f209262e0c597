"""The top floor: a trained run as a model people use. ``python -m release generate|chat``.

    card                the model card's system prompt and decoding defaults (greedy: "temperature 0")
    generation_config   the terminators (eos and every end-of-turn token the chat template writes), and the
                        ``generation_config.json`` a released model carries
    source              RUN_OR_MODEL -> the folders to load: a run's merged/, its adapter/ on its base, a model
    reply               one answer to a conversation: chat template, stop on any terminator, which one stopped it
    generate, chat      the commands (``release/__main__.py``)

May import common, data_prep, eval and launch (every floor below); nothing imports release. It reads runs through
their folders (``common.rundir``), not through launch's code, and its commands are not in launch's registry.
"""
