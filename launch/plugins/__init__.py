"""Axolotl plugins the launcher adds to every run's config (``plugins:``); each extends Axolotl, none patches it.

    plugins:
      - launch.plugins.cpu.CPUPlacementPlugin       # multi-process CPU runs keep the model on CPU
      - launch.plugins.preempt.PreemptionPlugin     # USR1/SIGTERM: save a checkpoint, exit 75 for requeue
      - launch.plugins.oom.OutOfMemoryPlugin        # a CUDA out-of-memory: note the step for the launcher

They run inside Axolotl's processes. May import: common, and this package; nothing else of launch.
"""

# What our plugins and the launcher (launch/lifecycle/attempts.py and train_record.py, launch/runner/out_of_memory.py
# and loss_curve.py) agree on, defined once here: this module imports nothing, so the launcher reads them without
# importing Axolotl.
PREEMPTED_EXIT = 75  # EX_TEMPFAIL: try again later
PREEMPTED_FILE = "preempted.json"  # in output_dir: the plugin's note that it saved a checkpoint and stopped
TRAIN_START_FILE = "train_start.json"  # in output_dir: the global step an attempt started training from
LOSSES_FILE = "train_losses.jsonl"  # in output_dir: a row per logged training step (step, loss, epoch, attempt)
EVAL_LOSSES_FILE = "eval_losses.jsonl"  # in output_dir: a row per evaluation (step, eval_loss, epoch, attempt)
MARGINS = "rewards/margins"  # TRL's DPO reward margin: in a loss row when logged (eval rows: "eval_" + it)
OOM_FILE = "out_of_memory.json"  # in output_dir: the out-of-memory plugin's note (step, torch's message, GPU)
OOM_MARK = "launch: CUDA out of memory; the traceback below is for the log"  # the launcher shows nothing after it

PLUGINS = ["launch.plugins.cpu.CPUPlacementPlugin", "launch.plugins.preempt.PreemptionPlugin",
           "launch.plugins.oom.OutOfMemoryPlugin"]
