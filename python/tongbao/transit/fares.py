"""The fare engine: a metro network and its fare rules, from a TOML file.

A network is lines of stations with the distance in metres between neighbours; a station
named on several lines is a transfer station. The fare of a journey depends on the shortest
distance between its entry and exit stations over the whole network (Dijkstra from every
station, once, at load time), through distance bands; beyond the last band the fare grows by a
step every so many km; no fare exceeds the maximum fare, which is also what is held at tap-in
and charged for an incomplete journey. An optional daily cap bounds what one rider pays in a
day (Asia/Shanghai calendar days, like the wallet rules). ``docs/transit.md`` describes the
file field by field; the sample network ships as ``chongqing-metro``.

>>> net = load_network("chongqing-metro")
>>> net.fare("Chaotianmen", "Xiaoshizi")           # 0.9 km
300
>>> net.distance_m("Chaotianmen", "Shapingba")     # Line 1 all the way
13300
>>> net.fare("Chaotianmen", "Shapingba")           # 12-22 km band
500
>>> net.distance_m("Bishan", "Jiangbei Airport T2"), net.fare("Bishan", "Jiangbei Airport T2")
(55400, 800)
>>> net.max_fare_fen, net.daily_cap_fen, net.time_limit_ms
(1000, 2000, 14400000)
>>> parse_network({"network": {"name": "x"}, "fares": {}, "line": []}, "x.toml")
Traceback (most recent call last):
...
tongbao.errors.InvalidFareConfig: fare config x.toml: fares.bands: missing
"""

from __future__ import annotations

import heapq
import itertools
import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tongbao.errors import InvalidFareConfig

#: Limits on a fare config (so a typo cannot ask for a million stations).
STATIONS_MAX = 4_096
LINES_MAX = 256
BANDS_MAX = 64
GAP_M_MAX = 100_000
FARE_FEN_MAX = 1_000_000
TIME_LIMIT_MIN_MAX = 24 * 60
NAME_LEN_MAX = 80

#: Shipped networks, in ``tongbao/data/transit/``.
SHIPPED = ("chongqing-metro",)


@dataclass(frozen=True)
class Band:
    """A distance band: journeys of at most ``up_to_m`` metres (and more than the previous
    band's) cost ``fare_fen``."""

    up_to_m: int
    fare_fen: int


@dataclass(frozen=True)
class Line:
    """One line: its stations in order and the metres between neighbours (a loop has one more
    gap, from the last station back to the first)."""

    name: str
    stations: tuple[str, ...]
    gaps_m: tuple[int, ...]
    loop: bool


class Network:
    """A loaded, checked network with its fare rules; the distance and fare between every pair
    of stations are computed once here. Stations are referred to by name or by index
    (:attr:`stations` order: first appearance in the file)."""

    def __init__(
        self,
        name: str,
        title: str,
        lines: tuple[Line, ...],
        bands: tuple[Band, ...],
        beyond_every_m: int,
        beyond_step_fen: int,
        max_fare_fen: int,
        daily_cap_fen: int | None,
        time_limit_ms: int,
    ) -> None:
        self.name = name
        self.title = title
        self.lines = lines
        self.bands = bands
        self.beyond_every_m = beyond_every_m
        self.beyond_step_fen = beyond_step_fen
        self.max_fare_fen = max_fare_fen
        self.daily_cap_fen = daily_cap_fen
        self.time_limit_ms = time_limit_ms
        index: dict[str, int] = {}
        for line in lines:
            for station in line.stations:
                index.setdefault(station, len(index))
        self.stations: tuple[str, ...] = tuple(index)
        self._index = index
        self._lines_at: list[list[str]] = [[] for _ in index]
        for line in lines:
            for station in line.stations:
                self._lines_at[index[station]].append(line.name)
        self.distances_m: npt.NDArray[np.int64] = self._all_pairs_shortest()
        self.fares_fen: npt.NDArray[np.int64] = np.vectorize(
            self.fare_for_distance, otypes=[np.int64]
        )(self.distances_m)

    def _all_pairs_shortest(self) -> npt.NDArray[np.int64]:
        n = len(self.stations)
        adjacent: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        for line in self.lines:
            ids = [self._index[s] for s in line.stations]
            pairs = list(itertools.pairwise(ids))
            if line.loop:
                pairs.append((ids[-1], ids[0]))
            for (a, b), gap in zip(pairs, line.gaps_m, strict=True):
                adjacent[a].append((b, gap))
                adjacent[b].append((a, gap))
        unreachable = -1
        result = np.full((n, n), unreachable, dtype=np.int64)
        for source in range(n):
            dist = [unreachable] * n
            dist[source] = 0
            heap = [(0, source)]
            while heap:
                d, u = heapq.heappop(heap)
                if d > dist[u]:
                    continue
                for v, gap in adjacent[u]:
                    if dist[v] == unreachable or d + gap < dist[v]:
                        dist[v] = d + gap
                        heapq.heappush(heap, (d + gap, v))
            result[source] = dist
        return result

    def station_index(self, station: str | int) -> int:
        """The index of a station given by name or index; ``KeyError`` naming the station when
        it is not on the network."""
        if isinstance(station, int):
            if not 0 <= station < len(self.stations):
                raise KeyError(f"no station number {station} (0-{len(self.stations) - 1})")
            return station
        try:
            return self._index[station]
        except KeyError:
            raise KeyError(f"no station {station!r} on network {self.name}") from None

    def lines_at(self, station: str | int) -> list[str]:
        """The lines serving a station (several: a transfer station).

        >>> load_network("chongqing-metro").lines_at("Daping")
        ['Line 1', 'Line 2']
        """
        return list(self._lines_at[self.station_index(station)])

    def distance_m(self, entry: str | int, exit: str | int) -> int:
        """Shortest distance in metres between two stations over the network."""
        return int(self.distances_m[self.station_index(entry), self.station_index(exit)])

    def fare(self, entry: str | int, exit: str | int) -> int:
        """The fare in fen of a journey from ``entry`` to ``exit`` (before any daily cap)."""
        return int(self.fares_fen[self.station_index(entry), self.station_index(exit)])

    def fare_for_distance(self, distance_m: int) -> int:
        """The fare in fen for a journey of ``distance_m`` metres: its band's fare, beyond the
        last band one step per started ``beyond_every_m``, never above the maximum fare.

        >>> net = load_network("chongqing-metro")
        >>> [net.fare_for_distance(km * 1000) for km in (0, 6, 7, 12, 22, 32, 33, 52, 53)]
        [300, 300, 400, 400, 500, 600, 700, 700, 800]
        """
        for band in self.bands:
            if distance_m <= band.up_to_m:
                return min(band.fare_fen, self.max_fare_fen)
        last = self.bands[-1]
        steps = -(-(distance_m - last.up_to_m) // self.beyond_every_m)
        return min(last.fare_fen + steps * self.beyond_step_fen, self.max_fare_fen)


def _fail(source: str, field: str, reason: str) -> InvalidFareConfig:
    return InvalidFareConfig(f"fare config {source}: {field}: {reason}")


def _get(table: dict[str, Any], key: str, source: str, where: str) -> Any:
    if key not in table:
        raise _fail(source, f"{where}{key}", "missing")
    return table[key]


def _int(value: Any, source: str, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(source, field, f"expected an integer, got {value!r}")
    if not low <= value <= high:
        raise _fail(source, field, f"must be between {low} and {high}, got {value}")
    return value


def _name(value: Any, source: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > NAME_LEN_MAX:
        raise _fail(source, field, f"expected a name of 1-{NAME_LEN_MAX} characters")
    return value


def parse_network(doc: dict[str, Any], source: str = "<config>") -> Network:
    """Check a parsed fare config and build its :class:`Network`. Raises
    :class:`tongbao.errors.InvalidFareConfig` naming the source, the field (``line[2].gaps_m``,
    ``line "Line 3".stations[4]``) and what is wrong."""
    for section in ("network", "fares", "line"):
        if section not in doc:
            raise _fail(source, section, "missing")
    network = doc["network"]
    if not isinstance(network, dict):
        raise _fail(source, "network", "expected a table")
    name = _name(_get(network, "name", source, "network."), source, "network.name")
    title = str(network.get("title", name))
    fares = doc["fares"]
    if not isinstance(fares, dict):
        raise _fail(source, "fares", "expected a table")
    raw_bands = _get(fares, "bands", source, "fares.")
    if not isinstance(raw_bands, list) or not 1 <= len(raw_bands) <= BANDS_MAX:
        raise _fail(source, "fares.bands", f"expected a list of 1-{BANDS_MAX} bands")
    bands: list[Band] = []
    for i, raw in enumerate(raw_bands):
        where = f"fares.bands[{i}]"
        if not isinstance(raw, dict):
            raise _fail(source, where, "expected a table { up_to_km = N, fare_fen = N }")
        up_to_km = _int(
            _get(raw, "up_to_km", source, where + "."), source, where + ".up_to_km", 1, 10_000
        )
        fare = _int(
            _get(raw, "fare_fen", source, where + "."), source, where + ".fare_fen", 1, FARE_FEN_MAX
        )
        if bands and (up_to_km * 1000 <= bands[-1].up_to_m or fare < bands[-1].fare_fen):
            raise _fail(source, where, "bands must go up in distance and not down in fare")
        bands.append(Band(up_to_km * 1000, fare))
    beyond_km = _int(fares.get("beyond_every_km", 20), source, "fares.beyond_every_km", 1, 10_000)
    beyond_fen = _int(
        fares.get("beyond_step_fen", 0), source, "fares.beyond_step_fen", 0, FARE_FEN_MAX
    )
    max_fare = _int(
        _get(fares, "max_fare_fen", source, "fares."), source, "fares.max_fare_fen", 1, FARE_FEN_MAX
    )
    if max_fare < bands[0].fare_fen:
        raise _fail(source, "fares.max_fare_fen", "below the first band's fare")
    daily_cap = None
    if "daily_cap_fen" in fares:
        daily_cap = _int(
            fares["daily_cap_fen"], source, "fares.daily_cap_fen", 1, 100 * FARE_FEN_MAX
        )
        if daily_cap < max_fare:
            raise _fail(source, "fares.daily_cap_fen", "below the maximum fare")
    time_limit_min = _int(
        _get(fares, "time_limit_min", source, "fares."),
        source,
        "fares.time_limit_min",
        1,
        TIME_LIMIT_MIN_MAX,
    )
    known = {
        "bands",
        "beyond_every_km",
        "beyond_step_fen",
        "max_fare_fen",
        "daily_cap_fen",
        "time_limit_min",
    }
    for key in fares:
        if key not in known:
            raise _fail(source, f"fares.{key}", f"unknown key (known: {', '.join(sorted(known))})")

    raw_lines = doc["line"]
    if not isinstance(raw_lines, list) or not 1 <= len(raw_lines) <= LINES_MAX:
        raise _fail(source, "line", f"expected 1-{LINES_MAX} [[line]] tables")
    lines: list[Line] = []
    seen_lines: set[str] = set()
    for i, raw in enumerate(raw_lines):
        where = f"line[{i}]"
        if not isinstance(raw, dict):
            raise _fail(source, where, "expected a table")
        line_name = _name(_get(raw, "name", source, where + "."), source, where + ".name")
        where = f'line "{line_name}"'
        if line_name in seen_lines:
            raise _fail(source, where, "a second line with this name")
        seen_lines.add(line_name)
        loop = raw.get("loop", False)
        if not isinstance(loop, bool):
            raise _fail(source, where + ".loop", "expected true or false")
        stations = _get(raw, "stations", source, where + ".")
        if not isinstance(stations, list) or len(stations) < 2:
            raise _fail(source, where + ".stations", "expected a list of at least 2 stations")
        for j, station in enumerate(stations):
            _name(station, source, f"{where}.stations[{j}]")
        if len(set(stations)) != len(stations):
            raise _fail(source, where + ".stations", "a station is listed twice")
        gaps = _get(raw, "gaps_m", source, where + ".")
        expected = len(stations) if loop else len(stations) - 1
        if not isinstance(gaps, list) or len(gaps) != expected:
            how = "one per station for a loop" if loop else "one between neighbours"
            got = len(gaps) if isinstance(gaps, list) else repr(gaps)
            raise _fail(
                source,
                where + ".gaps_m",
                f"expected {expected} distances in metres ({how}), got {got}",
            )
        checked = tuple(
            _int(g, source, f"{where}.gaps_m[{j}]", 1, GAP_M_MAX) for j, g in enumerate(gaps)
        )
        unknown = set(raw) - {"name", "stations", "gaps_m", "loop"}
        if unknown:
            raise _fail(source, f"{where}.{sorted(unknown)[0]}", "unknown key")
        lines.append(Line(line_name, tuple(stations), checked, loop))
    net = Network(
        name=name,
        title=title,
        lines=tuple(lines),
        bands=tuple(bands),
        beyond_every_m=beyond_km * 1000,
        beyond_step_fen=beyond_fen,
        max_fare_fen=max_fare,
        daily_cap_fen=daily_cap,
        time_limit_ms=time_limit_min * 60_000,
    )
    if len(net.stations) > STATIONS_MAX:
        raise _fail(source, "line", f"more than {STATIONS_MAX} stations")
    if (net.distances_m < 0).any():
        a, b = np.argwhere(net.distances_m < 0)[0]
        raise _fail(
            source,
            "line",
            f"the network is not connected: no path from "
            f"{net.stations[a]!r} to {net.stations[b]!r}",
        )
    return net


def load_network(name_or_path: str | os.PathLike[str]) -> Network:
    """Load a shipped network by name (:data:`SHIPPED`) or a fare config TOML file by path.
    Raises ``InvalidFareConfig`` (naming file and field) or ``OSError``."""
    text = os.fspath(name_or_path)
    if text in SHIPPED:
        resource = resources.files("tongbao").joinpath("data", "transit", f"{text}.toml")
        raw, source = resource.read_text(encoding="utf-8"), f"{text}.toml"
    else:
        raw, source = Path(text).read_text(encoding="utf-8"), text
    try:
        doc = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidFareConfig(f"fare config {source}: not valid TOML: {exc}") from None
    return parse_network(doc, source)
