"""vifi: ViFi-CLIP video learners on open_clip."""

__version__ = "0.1.0"
