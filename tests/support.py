"""Small helpers for tests that read what the real stack produced."""

from __future__ import annotations

import random
import re
from pathlib import Path

from stdnum.tr import tckimlik


def valid_tckn(rng: random.Random) -> str:
    """A TC Kimlik No that passes the checksum (never a real person's: generated at random)."""
    first9 = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(8))
    return first9 + tckimlik.calc_check_digits(first9)


def fakesmsc_messages(data_dir: Path, to_digits: str) -> list[str]:
    """Texts fakesmsc printed for one recipient, decoded (UCS-2 arrives as hex)."""
    path = data_dir / "fakesmsc.out"
    if not path.exists():
        return []
    texts = []
    for line in path.read_text(errors="replace").splitlines():
        if to_digits not in line:
            continue
        texts.append(decode_fakesmsc_line(line))
    return texts


def decode_fakesmsc_line(line: str) -> str:
    # Placeholder decoder, refined once the fakesmsc output format is pinned down.
    match = re.search(r"ucs-2\s+(\S+)", line)
    if match:
        try:
            return bytes.fromhex(match.group(1)).decode("utf-16-be")
        except ValueError:
            pass
    return line
