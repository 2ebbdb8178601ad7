"""Exception types for bad user input.

Every error a user can cause (a broken config, a malformed annotation file, a missing
dataset) is raised as a subclass of :class:`StalError`, whose message is one line that
names the file, the line or key, and what was expected. Command-line tools catch
``StalError`` and print ``error: <message>`` without a traceback; anything else is a bug
and keeps its traceback.
"""


class StalError(Exception):
    """Base class of errors caused by user input (config, data, paths)."""


class ConfigError(StalError, ValueError):
    """A config file, override or value is invalid."""


class DataError(StalError, ValueError):
    """A dataset file is missing or malformed."""
