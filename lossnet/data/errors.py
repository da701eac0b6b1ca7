"""Errors raised by :mod:`lossnet.data`. Every message names the file or folder and the fix."""
from __future__ import annotations

from lossnet.errors import LossnetError


class DataError(LossnetError):
    """A dataset is missing, incomplete or malformed (a ``ValueError`` via ``LossnetError``).

    Example:
        >>> from lossnet.data import load_2afc, DataError
        >>> try:
        ...     load_2afc("/nonexistent")
        ... except DataError as e:
        ...     print("lossnet download bapps" in str(e))
        True
    """


class DownloadError(DataError):
    """A download or an archive extraction failed; the message says how to place the file by hand."""
