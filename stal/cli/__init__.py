"""The command-line tools (console scripts ``stal-*``; ``tools/*.py`` and ``data_prep/*.py``
are thin wrappers that run the same ``main``)."""
