"""Bottom layer: decoding video and images, and writing files atomically.

Nothing here knows about datasets, synthesis or models; every other ``stal`` package may
import it (see docs/architecture.md).
"""
