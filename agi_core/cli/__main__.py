"""``python -m agi_core.cli`` is the ``agi`` command."""

from .main import main

main()
