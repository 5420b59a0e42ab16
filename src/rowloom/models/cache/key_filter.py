"""`KeyFilter`: which keys a reply store may hold, so a miss is answered without reading the file.

A Bloom filter whose bit positions come from the key itself: keys are BLAKE2b digests, so their two 64-bit halves
are independent uniform hashes, and the i-th position is `h1 + i·h2` (Kirsch–Mitzenmacher double hashing). "Not
present" is certain; "present" is wrong for about 0.24% of absent keys at capacity, and those cost one read. Keys
are added in bulk (numpy, from the 16-byte keys laid end to end) by whoever owns the store's writes; a lookup is a
few integer operations.
"""

from __future__ import annotations

import struct

import numpy as np

#: Bit positions per key. With `BITS_PER_KEY` bits per key at capacity, about 0.24% of absent keys pass (four
#: positions instead of the optimal eleven: each one is a step of every lookup, memory is cheap).
HASHES = 4
BITS_PER_KEY = 16
_MIN_CAPACITY = 1 << 16
_HALVES = struct.Struct("<QQ").unpack_from  # a key's two 64-bit halves
_BULK = 4096  # keys added at once from which bits are marked in a byte array and packed


class KeyFilter:
    """Holds at least `capacity` keys at its stated error rate; `full` says when a larger one should replace it."""

    def __init__(self, capacity: int):
        capacity = max(_MIN_CAPACITY, capacity)
        bits = 1 << (capacity * BITS_PER_KEY - 1).bit_length()  # a power of two: a position is a mask away
        self.capacity = capacity
        self.added = 0  # keys added, a key added twice counted twice (a touched row comes back)
        self._mask = bits - 1
        self._bytes = bytearray(bits // 8)
        self._array = np.frombuffer(self._bytes, dtype=np.uint8)  # the same memory, for bulk adds

    @property
    def full(self) -> bool:
        return self.added > self.capacity

    def __contains__(self, key: bytes) -> bool:
        # The positions `add_packed` sets: (first + i·step) mod the size, walked by adding the step (two 64-bit
        # halves unpacked, not one 128-bit integer split: a third less time per lookup).
        position, step = _HALVES(key)
        mask, bits = self._mask, self._bytes
        step |= 1
        for _ in range(HASHES):
            position &= mask
            if not bits[position >> 3] >> (position & 7) & 1:
                return False
            position += step
        return True

    def add_packed(self, packed: bytes) -> None:
        """Add the 16-byte keys laid end to end in `packed`."""
        count = len(packed) // 16
        if not count:
            return
        halves = np.frombuffer(packed, dtype="<u8", count=2 * count).reshape(-1, 2)
        first, step = halves[:, 0:1], halves[:, 1:2] | np.uint64(1)
        with np.errstate(over="ignore"):  # positions wrap modulo 2**64, as the lookup's masked ones do
            positions = (first + np.arange(HASHES, dtype=np.uint64) * step) & np.uint64(self._mask)
        positions = positions.ravel()
        if count < _BULK:
            masks = np.left_shift(1, positions & np.uint64(7)).astype(np.uint8)
            np.bitwise_or.at(self._array, positions >> np.uint64(3), masks)
        else:  # one byte per bit, packed: a tenth of the time of or-ing millions of bits in one by one
            marks = np.zeros(len(self._array) * 8, dtype=np.bool_)
            marks[positions] = True
            self._array |= np.packbits(marks, bitorder="little")
        self.added += count
