"""Mandelbrot example app for agi_core."""

from .app import Mandelbrot, MandelbrotArgs

__all__ = ["Mandelbrot", "MandelbrotArgs"]
