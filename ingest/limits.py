"""Checks made on an input *before* it is read: a regular file, and a decoded size limit.

A device (``/dev/zero``), a pipe or a socket named as an image would make a reader
wait or read forever; an image whose header announces billions of pixels (a
"decompression bomb": a 519 KB PNG can hold 13,000 x 13,000 RGB pixels) would take
gigabytes. Both are refused with one line before any pixel is decoded.

The size limit counts the decoded image as ``rows x columns x channels x 4 bytes``:
every image is normalised in a float32 working copy before it is resized into the
cache, so that is what it costs in memory (per frame for multi-frame DICOM, which is
decoded one frame at a time).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["DEFAULT_MAX_IMAGE_MIB", "MSG_TOO_LARGE", "WORKING_BYTES", "decoded_size_problem", "regular_file_problem"]

#: Bytes per decoded sample: the float32 working copy.
WORKING_BYTES = 4

#: Default limit on one decoded image (frame), in MiB. A 4096 x 4096 mammogram needs
#: 64 MiB, a 3000 x 3000 RGB photograph 103 MiB, a 13,000 x 13,000 RGB PNG 1,934 MiB.
DEFAULT_MAX_IMAGE_MIB = 1024

MSG_TOO_LARGE = (
    "the image decodes to {mib:,.0f} MiB ({rows} x {columns} pixels x {channels} channel(s) x "
    "4 bytes of float32), above the limit of {limit:,} MiB per image; raise max_image_mib if "
    "the image is genuine"
)


def regular_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as an input file, or ``None`` when it is a regular file.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    str or None
        ``"no such file"``, ``"is a directory"`` or ``"is not a regular file (a character
        device)"`` ...; ``None`` for a regular file (symbolic links are followed).
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file" if not Path(path).is_symlink() else "is a broken symbolic link"
    except NotADirectoryError:
        return "no such file (a parent of the path is a file)"
    except PermissionError:
        return "cannot be read (permission denied)"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory"
    kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket"
            if stat.S_ISSOCK(mode) else "not a regular file")
    return f"is not a regular file ({kind})"


def decoded_size_problem(rows: int, columns: int, channels: int, *,
                         limit_mib: float) -> str | None:
    """:data:`MSG_TOO_LARGE` when the decoded image would exceed ``limit_mib``, else ``None``.

    Parameters
    ----------
    rows, columns, channels : int
        Decoded shape of one image (frame).
    limit_mib : float
        The limit in MiB.
    """
    size = float(rows) * float(columns) * max(int(channels), 1) * WORKING_BYTES
    if size <= limit_mib * 2**20:
        return None
    return MSG_TOO_LARGE.format(mib=size / 2**20, rows=rows, columns=columns, channels=channels,
                                limit=int(limit_mib))
