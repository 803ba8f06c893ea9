"""Test helpers of the agi_core repository, not shipped in its wheel: the multi-host rig
(`agi_testkit.rig`, its command line `rig_cli`) and a single-node Slurm (`agi_testkit.slurm`)."""
