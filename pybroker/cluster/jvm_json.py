"""JSON as Kafka's brokers write it into ZooKeeper, byte for byte.

Kafka builds each znode's JSON as a Scala or Java map and hands it to
Jackson, which writes the map's entries in the map's own iteration order,
compactly (no spaces). That order is not the order the code lists the
fields in: it is whatever the map's hashing makes it. Three kinds of map
occur in ``kafka.zk.ZkData`` (Kafka 3.8, Scala 2.13, Java 11+):

- an immutable Scala ``Map`` of at most four entries (``Map1`` ... ``Map4``)
  keeps insertion order;
- an immutable Scala ``Map`` of five or more is a CHAMP trie
  (``immutable.HashMap``), iterated node by node, each node's own entries
  in the order of their 5-bit hash slice, then its sub-nodes;
- a ``collection.mutable.Map`` is a ``mutable.HashMap``: buckets in index
  order, entries within a bucket by hash; the table doubles as it fills;
- a ``java.util.Properties`` (topic configs) iterates its inner
  ``ConcurrentHashMap``: bins in index order, chained in insertion order,
  each resize splitting a bin as ``ConcurrentHashMap.transfer`` does.

The functions here reproduce those orders from Java's ``String.hashCode``
so that pybroker's znodes read exactly as a Kafka broker's would.
"""

from __future__ import annotations

from typing import Any

_MASK = 0xFFFFFFFF


def _signed(h: int) -> int:
    h &= _MASK
    return h - (1 << 32) if h & 0x80000000 else h


def string_hash(s: str) -> int:
    """Java's ``String.hashCode`` (over UTF-16 code units), unsigned."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & _MASK
    return h


# -- Scala 2.13 immutable.HashMap (CHAMP) -------------------------------------


def _champ_improve(h: int) -> int:
    # scala.collection.Hashing.improve
    h = (h + (~(h << 9) & _MASK)) & _MASK
    h ^= h >> 14
    h = (h + (h << 4)) & _MASK
    return h ^ (h >> 10)


def _champ_order(entries: list[tuple[str, int]], shift: int) -> list[str]:
    if shift >= 32:  # a full hash collision node keeps insertion order
        return [k for k, _ in entries]
    slots: dict[int, list[tuple[str, int]]] = {}
    for key, h in entries:
        slots.setdefault((h >> shift) & 31, []).append((key, h))
    payload = [group[0][0] for _, group in sorted(slots.items()) if len(group) == 1]
    for _, group in sorted(slots.items()):
        if len(group) > 1:
            payload += _champ_order(group, shift + 5)
    return payload


def immutable_map_order(keys: list[str]) -> list[str]:
    """Iteration order of ``Map(k1 -> v1, ...)`` built from ``keys``."""
    if len(keys) <= 4:
        return list(keys)
    return _champ_order([(k, _champ_improve(string_hash(k))) for k in keys], 0)


# -- Scala 2.13 mutable.HashMap -----------------------------------------------


def _table_size_for(capacity: int) -> int:
    c = max(capacity - 1, 4)
    return min((1 << (c.bit_length() - 1)) * 2, 1 << 30)


def mutable_map_order(keys: list[str], initial: int | None = None) -> list[str]:
    """Iteration order of a ``mutable.HashMap`` into which ``keys`` were put
    in turn. ``initial`` is the number of entries given to
    ``mutable.Map(...)`` (which sizes the table from it); ``None`` for
    ``mutable.Map()`` (the default table)."""
    table = 16 if not initial else _table_size_for(int((initial + 1) / 0.75))
    for size in range(len(keys)):  # each put grows a table about to fill
        if size + 1 >= int(table * 0.75):
            table *= 2
    hashed = []
    for k in keys:
        h = string_hash(k)
        h ^= h >> 16
        hashed.append((h & (table - 1), _signed(h), k))
    return [k for _, _, k in sorted(hashed)]


# -- java.util.Properties (a ConcurrentHashMap inside, Java 9+) ---------------


def properties_order(keys: list[str]) -> list[str]:
    """Iteration order of a ``Properties`` set key by key in this order."""
    n = 16  # Properties() -> ConcurrentHashMap(8) -> a table of 16
    bins: list[list[tuple[int, str]]] = [[] for _ in range(n)]
    count = 0
    for key in keys:
        h = string_hash(key)
        h = (h ^ (h >> 16)) & 0x7FFFFFFF
        chain = bins[h & (n - 1)]
        if any(k == key for _, k in chain):
            continue
        chain.append((h, key))
        count += 1
        if count >= n - (n >> 2):
            bins = _transfer(bins, n)
            n *= 2
    return [k for chain in bins for _, k in chain]


def _transfer(bins: list[list[tuple[int, str]]], n: int) -> list[list[tuple[int, str]]]:
    # ConcurrentHashMap.transfer: the longest tail whose nodes all go the
    # same way is moved as it is; the nodes before it are pushed in front
    # one by one (so they come out reversed).
    new: list[list[tuple[int, str]]] = [[] for _ in range(2 * n)]
    for i, chain in enumerate(bins):
        if not chain:
            continue
        run = len(chain) - 1
        while run > 0 and (chain[run - 1][0] & n) == (chain[-1][0] & n):
            run -= 1
        low = list(chain[run:]) if not chain[-1][0] & n else []
        high = list(chain[run:]) if chain[-1][0] & n else []
        for node in chain[:run]:
            (high if node[0] & n else low).insert(0, node)
        new[i], new[i + n] = low, high
    return new


# -- Jackson's compact writer -------------------------------------------------

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def write(value: Any) -> str:
    """``value`` as Jackson writes it: dicts in their (already JVM) order,
    no spaces, non-ASCII as is, control characters escaped as Jackson does."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dict):
        return "{" + ",".join(_string(k) + ":" + write(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(write(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as znode JSON")


def ordered(fields: dict[str, Any], order: list[str]) -> dict[str, Any]:
    return {k: fields[k] for k in order}
