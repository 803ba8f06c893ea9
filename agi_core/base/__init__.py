"""The bottom layer: errors, events, modes, host strings, paths and file helpers that every other
layer uses. Nothing here imports agi_core outside ``base``.
"""
