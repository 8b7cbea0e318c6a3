"""The progress bar of the API's long calls (``compare``, ``correlate(bootstrap=...)``), on stderr.

``progress``: ``True`` shows it, ``False`` hides it, ``None`` shows it when stderr is a terminal (the CLI's
choice: piped or captured output stays clean). tqdm is imported here, on first use, so importing ``api``
stays numpy and h5py only.
"""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(total: int, desc: str, unit: str, progress: bool | None) -> Any:
    """A tqdm bar of ``total`` steps (disabled, a no-op, unless shown; see the module)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=not (sys.stderr.isatty() if progress is None else progress))
