"""vifi: ViFi-CLIP video learners on open_clip."""

import time as _time

__version__ = "0.1.0"
STARTED = _time.time()  # when this process imported vifi: results.json's wall time counts from here
