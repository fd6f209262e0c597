"""Axolotl plugins the launcher adds to every run's config (``plugins:``); each extends Axolotl, none patches it.

    plugins:
      - launch.plugins.cpu.CPUPlacementPlugin       # multi-process CPU runs keep the model on CPU
      - launch.plugins.preempt.PreemptionPlugin     # USR1/SIGTERM: save a checkpoint, exit 75 for requeue
"""

# What the preemption plugin and the launcher (launch/attempts.py) agree on, defined once here: this module
# imports nothing, so the launcher reads them without importing Axolotl.
PREEMPTED_EXIT = 75  # EX_TEMPFAIL: try again later
PREEMPTED_FILE = "preempted.json"  # in output_dir: the plugin's note that it saved a checkpoint and stopped
TRAIN_START_FILE = "train_start.json"  # in output_dir: the global step an attempt started training from

PLUGINS = ["launch.plugins.cpu.CPUPlacementPlugin", "launch.plugins.preempt.PreemptionPlugin"]
