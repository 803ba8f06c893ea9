"""Test helpers that ship with agi_core: the multi-host rig (`agi_core.testing.rig`, and its command line `rig_cli`)."""
