"""The launcher: a recipe -> a run folder, locally or on SLURM; ``python -m launch --help`` lists its commands.

Its top holds only the commands: ``__main__.py`` (the entry), ``registry.py`` (the one table of commands) and
``cli.py`` (a stage's command line). The rest stands in rooms, each a folder whose ``__init__`` says what it owns
and what it may import (tests/test_architecture.py holds them to it):

    preflight/   before a run: recipe checks, memory and time plans, base models and their pins
    lifecycle/   a run folder's life, owned by ``lifecycle.run.Run``: config, attempts, manifest, losses
    submit/      where training processes start: torchrun here, one SLURM job, a chain of jobs
    runner/      running a stage's steps: Axolotl processes, their logs, the terminal, follow-ups, reproduce
    plugins/     Axolotl plugins named in recipes by dotted path (launch.plugins.cpu.CPUPlacementPlugin)

plus data folders: ``engines/`` (DeepSpeed/FSDP configs recipes name) and ``clusters/`` (SLURM profiles).
"""
