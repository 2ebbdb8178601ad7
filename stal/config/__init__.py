"""Configuration: one fvcore CfgNode of defaults, YAML overrides, command-line overrides."""

from stal.config.defaults import get_cfg
from stal.config.load import load_cfg, validate_cfg

__all__ = ["get_cfg", "load_cfg", "validate_cfg"]
