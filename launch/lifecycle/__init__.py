"""A run folder's life, owned by one type, ``run.Run``: create or reopen, lock, attempts (preempted, lost,
resumed), half-written checkpoints set aside, the manifest from start to finish, losses by global step.

``run`` is the owner; the others hold what it records: ``config`` (recipe + overrides + the folder's paths,
and the environment a stage runs in), ``topology`` (nodes x processes), ``attempts``, ``manifest`` (code, data,
model, packages, hardware), ``train_record`` (losses, tokenized-data hash). Stages, follow-ups, submissions and
reproduce change a run folder only through ``Run``.

May import: common, launch.registry, launch.plugins (the file names the plugins and ``Run`` agree on).
Never preflight, submit or runner.
"""
