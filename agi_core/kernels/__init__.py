"""Kernel kinds: the table of kinds (`kinds`), the execution shape derived from a mode (`shape`),
and the choice of an app's kernel module for a run (`selection`).
"""
