"""Submission: where a stage's processes start. ``distributed`` builds torchrun/srun commands for a
topology, ``slurm`` renders and submits one batch job (``templates/sbatch.sh.j2``, profiles in launch/clusters/),
``submission`` makes the queued run and submits a stage, ``chain`` submits data, sft, merge, dpo, merge and eval
as dependent jobs.

May import: common, launch.registry, launch.plugins, launch.lifecycle, and of preflight only ``pinning`` (a
submission pins its base model to a commit). Never the planner's estimates, and never runner: a job runs the
launcher again, it does not import it.
"""
