"""The runner: a stage's steps run here. ``stage`` runs Axolotl's train and merge in their process group, each
step's output to ``runs/<id>/logs/``, stop signals passed on; ``terminal`` turns that output into a header, a
progress line per step and a summary; ``loss_curve`` draws ``loss.png`` from the run's records; ``followup``
merges or evaluates a finished run; ``reproduce`` runs a finished run again and compares; ``out_of_memory`` tells
a CUDA out-of-memory in one line.

May import everything below it: common, data_prep (reproduce rebuilds a mixture), launch.registry,
launch.plugins, launch.lifecycle, launch.submit (the torchrun command), launch.preflight (the planner's advice).
"""
