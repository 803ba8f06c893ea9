"""Heat diffusion example app for agi_core: a DAG sweep over grid sizes and diffusivities."""

from .app import HeatArgs, HeatSweep

__all__ = ["HeatArgs", "HeatSweep"]
