"""The top floor: a trained run as a model people use. ``python -m release generate|chat``.

    generation_config   the ``generation_config.json`` a released model carries: every terminator, greedy
    (inference/ holds what answering shares with eval: what to load, the reply, terminators, the card's usage)
    model_card          the release's README.md: hub front matter and model-index from manifests and eval results
    build, publish      ``releases/<name>/`` (weights, card, release.json), built aside and renamed in; one hub commit
    generate, chat      the commands (``release/__main__.py``), with build and publish

May import common, data_prep, inference, eval and launch (every floor below); nothing imports release. It reads
runs through their folders (``common.rundir``), not through launch's code, and its commands are not in launch's
registry.
"""
