"""Axolotl plugins the launcher adds to every run's config (``plugins:``); each extends Axolotl, none patches it.

    plugins:
      - launch.plugins.cpu.CPUPlacementPlugin       # multi-process CPU runs keep the model on CPU
      - launch.plugins.preempt.PreemptionPlugin     # USR1/SIGTERM: save a checkpoint, exit 75 for requeue
"""

PLUGINS = ["launch.plugins.cpu.CPUPlacementPlugin", "launch.plugins.preempt.PreemptionPlugin"]
