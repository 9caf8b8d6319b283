"""Distances and geohashes, so a store can find nearby clinics with plain range queries.

A geohash interleaves longitude and latitude bits into a base-32 string; every prefix is a
rectangular cell and strings that share a prefix sort together. `geohash_ranges` turns a circle
into a few `[start, end)` string ranges (the cell that holds the centre plus its 8 neighbours, at
the finest precision whose cell is still at least as large as the radius). Any store that can
query `geohash >= start and geohash < end` on one top-level field (SQLite, Firestore) finds every
candidate that way and then keeps those whose exact haversine distance is within the radius.
"""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"  # ascending in ASCII, so strings sort like cells
STORED_PRECISION = 9  # what stores keep on each clinic (cells of about 4.8 m x 4.8 m)
_DECODE = {char: index for index, char in enumerate(BASE32)}
# Greater than every geohash: the end of a range that runs to the end of the alphabet.
RANGE_END = "{"


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points in degrees, in kilometres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def is_coordinate(lat: float, lon: float) -> bool:
    """A point on Earth: finite, latitude within ±90 and longitude within ±180 degrees (NaN fails
    every comparison, so it is refused too)."""
    return -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0


def _check(lat: float, lon: float) -> None:
    if not is_coordinate(lat, lon):
        raise ValueError(f"not a coordinate: lat {lat}, lon {lon}")


def geohash_encode(lat: float, lon: float, precision: int = 7) -> str:
    """The geohash of a point: `precision` characters, 5 bits each."""
    _check(lat, lon)
    if precision < 1:
        raise ValueError(f"precision must be at least 1, not {precision}")
    lat_range, lon_range = [-90.0, 90.0], [-180.0, 180.0]
    chars, bits, value, even = [], 0, 0, True  # even bits are longitude
    while len(chars) < precision:
        interval, coordinate = (lon_range, lon) if even else (lat_range, lat)
        middle = (interval[0] + interval[1]) / 2
        if coordinate >= middle:
            value = (value << 1) | 1
            interval[0] = middle
        else:
            value <<= 1
            interval[1] = middle
        even = not even
        bits += 1
        if bits == 5:
            chars.append(BASE32[value])
            bits, value = 0, 0
    return "".join(chars)


def geohash_bounds(geohash: str) -> tuple[float, float, float, float]:
    """The cell of a geohash as (lat_min, lat_max, lon_min, lon_max)."""
    lat_range, lon_range = [-90.0, 90.0], [-180.0, 180.0]
    even = True
    for char in geohash:
        try:
            value = _DECODE[char]
        except KeyError:
            raise ValueError(f"{geohash!r} is not a geohash") from None
        for shift in range(4, -1, -1):
            interval = lon_range if even else lat_range
            middle = (interval[0] + interval[1]) / 2
            interval[0 if (value >> shift) & 1 else 1] = middle
            even = not even
    return lat_range[0], lat_range[1], lon_range[0], lon_range[1]


def cell_size_deg(precision: int) -> tuple[float, float]:
    """(height, width) of a geohash cell in degrees."""
    bits = 5 * precision
    return 180.0 / 2 ** (bits // 2), 360.0 / 2 ** ((bits + 1) // 2)


def _precision_for(lat: float, radius_km: float, max_precision: int) -> int:
    """The finest precision whose cells reach at least `radius_km` beyond any point in them.

    0 when no cell is large enough (a huge radius, or a circle that reaches a pole).
    """
    radius_rad = radius_km / EARTH_RADIUS_KM
    dlat = math.degrees(radius_rad)
    farthest_lat = abs(lat) + dlat
    if farthest_lat >= 90.0:
        return 0
    # Largest longitude difference of a point within the radius: from the haversine formula,
    # hav(d) >= cos(lat1) cos(lat2) hav(dlon) >= cos^2(farthest_lat) hav(dlon).
    ratio = math.sin(radius_rad / 2) / math.cos(math.radians(farthest_lat))
    if ratio >= 1.0:
        return 0
    dlon = math.degrees(2 * math.asin(ratio))
    margin = 1 + 1e-9
    best = 0
    for precision in range(1, max_precision + 1):
        height, width = cell_size_deg(precision)
        if height >= dlat * margin and width >= dlon * margin:
            best = precision
        else:
            break
    return best


def _successor(prefix: str) -> str:
    """The first geohash of the same length after every string that starts with `prefix`."""
    stripped = prefix.rstrip(BASE32[-1])
    if not stripped:
        return RANGE_END
    following = stripped[:-1] + BASE32[_DECODE[stripped[-1]] + 1]
    return following.ljust(len(prefix), BASE32[0])


def geohash_ranges(
    lat: float, lon: float, radius_km: float, max_precision: int = STORED_PRECISION
) -> list[tuple[str, str]]:
    """`[start, end)` ranges of geohash strings that hold every point within `radius_km`.

    Sorted, non-overlapping and at most 9 (adjacent cells merged). Points in the ranges may be
    farther than the radius: filter by `haversine_km` afterwards.
    """
    _check(lat, lon)
    if radius_km < 0 or math.isnan(radius_km):
        raise ValueError(f"radius must be a distance in km, not {radius_km}")
    precision = _precision_for(lat, radius_km, max_precision)
    if precision == 0:
        return [(BASE32[0], RANGE_END)]
    height, width = cell_size_deg(precision)
    lat_min, lat_max, lon_min, lon_max = geohash_bounds(geohash_encode(lat, lon, precision))
    centre_lat, centre_lon = (lat_min + lat_max) / 2, (lon_min + lon_max) / 2
    cells = set()
    for row in (-1, 0, 1):
        cell_lat = centre_lat + row * height
        if not -90.0 < cell_lat < 90.0:
            continue  # beyond a pole: the circle does not reach it (see _precision_for)
        for column in (-1, 0, 1):
            cell_lon = (centre_lon + column * width + 180.0) % 360.0 - 180.0
            cells.add(geohash_encode(cell_lat, cell_lon, precision))
    merged: list[tuple[str, str]] = []
    for cell in sorted(cells):
        start, end = cell, _successor(cell)
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def in_ranges(geohash: str, ranges: list[tuple[str, str]]) -> bool:
    return any(start <= geohash < end for start, end in ranges)
