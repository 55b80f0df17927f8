"""vifi: ViFi-CLIP video learners on open_clip.

From Python (docs/api.md): `vifi.load(checkpoint)` → a model with `encode_video`, `encode_text`, `classify`;
`vifi.read_video(path, frames=, views=)`; `vifi.errors` holds the exceptions. `load`, `read_video` and `Model`
are imported on first use (module `__getattr__`), so `import vifi` and the model-free CLI never import torch.
"""

import time as _time

from vifi import errors

__version__ = "0.1.0"
STARTED = _time.time()  # when this process imported vifi: results.json's wall time counts from here

__all__ = ["load", "read_video", "Model", "errors", "__version__"]
_FROM_API = ("load", "read_video", "Model")


def __getattr__(name: str):
    if name in _FROM_API:
        from vifi import api

        return getattr(api, name)
    raise AttributeError(f"module 'vifi' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_FROM_API))
