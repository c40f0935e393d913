"""Layout <-> tokens.

One shared vocabulary (ids):

    0 PAD | 1 BOS | 2 EOS | 3 NULL | element types | section types | coordinate bins

A layout is `BOS (type x y w h)* EOS`, elements in reading order (top to bottom, then
left to right, by quantised y then x). Coordinates are normalised to [0, 1] and
quantised to `bins` levels with `round(v * (bins - 1))`, so 0 and 1 are exact and the
round-trip error is at most 0.5 / (bins - 1).

A spec (what the structure encoder reads) is `section_type element_type*`, element
types sorted by vocabulary order: a spec is a multiset, and sorting keeps the order of
the ground-truth layout from leaking into it.
"""

from __future__ import annotations

from dataclasses import dataclass

from layoutray.data.vocab import ELEMENT_TYPES, SECTION_TYPES

PAD, BOS, EOS, NULL = 0, 1, 2, 3
N_SPECIAL = 4
TOKENS_PER_ELEMENT = 5


@dataclass(frozen=True)
class Box:
    type: str
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class LayoutTokenizer:
    bins: int = 128
    element_types: tuple[str, ...] = ELEMENT_TYPES
    section_types: tuple[str, ...] = SECTION_TYPES

    # --- id ranges -------------------------------------------------------
    @property
    def type_offset(self) -> int:
        return N_SPECIAL

    @property
    def section_offset(self) -> int:
        return N_SPECIAL + len(self.element_types)

    @property
    def coord_offset(self) -> int:
        return self.section_offset + len(self.section_types)

    @property
    def vocab_size(self) -> int:
        return self.coord_offset + self.bins

    def type_id(self, name: str) -> int:
        return self.type_offset + self.element_types.index(name)

    def section_id(self, name: str) -> int:
        return self.section_offset + self.section_types.index(name)

    def is_type(self, tok: int) -> bool:
        return self.type_offset <= tok < self.section_offset

    def is_coord(self, tok: int) -> bool:
        return self.coord_offset <= tok < self.vocab_size

    # --- coordinates -------------------------------------------------------
    def quantize(self, v: float) -> int:
        return int(round(min(max(float(v), 0.0), 1.0) * (self.bins - 1)))

    def dequantize(self, b: int) -> float:
        return b / (self.bins - 1)

    # --- layouts -------------------------------------------------------
    def reading_order(self, boxes: list[Box]) -> list[Box]:
        return sorted(boxes, key=lambda b: (self.quantize(b.y), self.quantize(b.x),
                                            self.element_types.index(b.type)))

    def encode_layout(self, boxes: list[Box]) -> list[int]:
        ids = [BOS]
        for b in self.reading_order(boxes):
            ids.append(self.type_id(b.type))
            ids.extend(self.coord_offset + self.quantize(v) for v in (b.x, b.y, b.w, b.h))
        ids.append(EOS)
        return ids

    def decode_layout(self, ids: list[int]) -> list[Box]:
        """Parse a token sequence. Stops at EOS; raises ValueError on a malformed sequence."""
        seq = list(ids)
        if seq and seq[0] == BOS:
            seq = seq[1:]
        boxes: list[Box] = []
        i = 0
        while i < len(seq) and seq[i] not in (EOS, PAD):
            chunk = seq[i:i + TOKENS_PER_ELEMENT]
            if len(chunk) < TOKENS_PER_ELEMENT or not self.is_type(chunk[0]) \
                    or not all(self.is_coord(t) for t in chunk[1:]):
                raise ValueError(f"malformed layout tokens at position {i}: {chunk}")
            x, y, w, h = (self.dequantize(t - self.coord_offset) for t in chunk[1:])
            boxes.append(Box(self.element_types[chunk[0] - self.type_offset], x, y, w, h))
            i += TOKENS_PER_ELEMENT
        return boxes

    # --- specs -------------------------------------------------------
    def encode_spec(self, section_type: str | None, element_types: list[str] | None) -> list[int]:
        """Spec tokens; an empty spec (image-only use) is the single NULL token."""
        ids = []
        if section_type is not None:
            ids.append(self.section_id(section_type))
        if element_types:
            ids.extend(sorted(self.type_id(t) for t in element_types))
        return ids or [NULL]

    def spec_types(self, spec_ids: list[int]) -> list[str]:
        return [self.element_types[t - self.type_offset] for t in spec_ids if self.is_type(t)]
