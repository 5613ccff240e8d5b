"""Multi-page TIFF stacks: how many pages a file has (from its headers, nothing decoded) and
the stems its pages take (``NAME_000``, ``NAME_001``, ...), shared by dataset folders and
prediction."""

import struct
from pathlib import Path

__all__ = ["count_pages", "page_stems"]


def count_pages(path: str | Path) -> int:
    """The number of pages of a TIFF file (its chain of image directories, BigTIFF too; read
    from the headers, nothing decoded); 1 for other formats and for unreadable files (reading
    them reports the problem).

    Example:
        >>> cv2.imwritemulti("/tmp/s.tif", [np.zeros((2, 2), np.uint8)] * 3)
        True
        >>> count_pages("/tmp/s.tif")
        3
    """
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            order = {b"II": "<", b"MM": ">"}.get(head[:2])
            kind = order and struct.unpack(order + "H", head[2:4])[0]
            if kind not in (42, 43):  # classic TIFF, BigTIFF
                return 1
            size, count, entry = ("I", "H", 12) if kind == 42 else ("Q", "Q", 20)
            offset = struct.unpack(order + size, head[4:8] if kind == 42 else head[8:16])[0]
            pages, seen = 0, set()
            while offset and offset not in seen:  # each directory: count, entries, next offset
                seen.add(offset)
                f.seek(offset)
                raw = f.read(struct.calcsize(count))
                if len(raw) < struct.calcsize(count):
                    break
                pages += 1
                f.seek(offset + len(raw) + entry * struct.unpack(order + count, raw)[0])
                raw = f.read(struct.calcsize(size))
                offset = (
                    struct.unpack(order + size, raw)[0] if len(raw) == struct.calcsize(size) else 0
                )
            return max(pages, 1)
    except (OSError, struct.error):  # unreadable or cut short: decoding reports it
        return 1


def page_stems(stem: str, pages: int) -> list[tuple[str, int | None]]:
    """``(stem, page)`` of each page of a file: ``[(stem, None)]`` for a single image, else
    ``NAME_000``, ``NAME_001``, ... (at least 3 digits), as datasets and predictions name them.

    Example:
        >>> page_stems("vol", 2)
        [('vol_000', 0), ('vol_001', 1)]
    """
    if pages == 1:
        return [(stem, None)]
    width = max(3, len(str(pages - 1)))
    return [(f"{stem}_{k:0{width}d}", k) for k in range(pages)]
