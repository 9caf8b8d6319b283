"""Distances and geohash ranges: known values, and that the ranges never miss a point."""

from __future__ import annotations

import math
import random

import pytest

from knowledge.geo import (
    BASE32,
    EARTH_RADIUS_KM,
    RANGE_END,
    cell_size_deg,
    geohash_bounds,
    geohash_encode,
    geohash_ranges,
    haversine_km,
    in_ranges,
)

SEOUL = (37.5665, 126.9780)
BUSAN = (35.1796, 129.0756)


def test_geohash_known_values():
    assert geohash_encode(57.64911, 10.40744, 11) == "u4pruydqqvj"
    assert geohash_encode(57.64911, 10.40744) == "u4pruyd"
    assert geohash_encode(42.6, -5.6, 5) == "ezs42"
    assert geohash_encode(-25.382708, -49.265506, 8) == "6gkzwgjz"
    assert geohash_encode(*SEOUL, 5) == "wydm9"
    assert geohash_encode(0.0, 0.0, 3) == "s00"
    assert geohash_encode(90.0, 180.0, 2) == "zz"
    assert geohash_encode(-90.0, -180.0, 2) == "00"


def test_geohash_bounds_contain_the_point_and_have_the_cell_size():
    lat_min, lat_max, lon_min, lon_max = geohash_bounds("u4pruydqqvj")
    assert lat_min <= 57.64911 <= lat_max and lon_min <= 10.40744 <= lon_max
    height, width = cell_size_deg(11)
    assert lat_max - lat_min == pytest.approx(height)
    assert lon_max - lon_min == pytest.approx(width)
    with pytest.raises(ValueError):
        geohash_bounds("abc")  # "a" is not in the alphabet


def test_alphabet_sorts_like_cells():
    assert list(BASE32) == sorted(BASE32) and RANGE_END > BASE32[-1]


@pytest.mark.parametrize(("lat", "lon"), [(91, 0), (-90.5, 0), (0, 180.5), (math.nan, 0)])
def test_impossible_coordinates_are_refused(lat, lon):
    with pytest.raises(ValueError):
        geohash_encode(lat, lon)
    with pytest.raises(ValueError):
        geohash_ranges(lat, lon, 10)


def test_haversine_known_distances():
    assert haversine_km(*SEOUL, *BUSAN) == pytest.approx(325, abs=2)
    assert haversine_km(*SEOUL, *SEOUL) == 0
    # A quarter of a meridian, and half the equator.
    assert haversine_km(0, 0, 90, 0) == pytest.approx(math.pi / 2 * EARTH_RADIUS_KM)
    assert haversine_km(0, 0, 0, 180) == pytest.approx(math.pi * EARTH_RADIUS_KM)
    assert haversine_km(0, 179.5, 0, -179.5) == pytest.approx(111.2, abs=0.1)
    # London - Paris, about 344 km.
    assert haversine_km(51.5074, -0.1278, 48.8566, 2.3522) == pytest.approx(344, abs=2)


def test_ranges_are_few_sorted_and_disjoint():
    for radius in (0.05, 1, 5, 20, 50, 200, 1000):
        ranges = geohash_ranges(*SEOUL, radius)
        assert 1 <= len(ranges) <= 9
        for start, end in ranges:
            assert start < end
        for (_, end), (start, _) in zip(ranges, ranges[1:], strict=False):
            assert end < start, "adjacent cells are merged, so ranges never touch"


def test_adjacent_cells_are_merged():
    # Seoul at 50 km: precision 3 (cells about 156 x 123 km there); the 9 cells are wy3, wy6,
    # wy7, wy9, wyc, wyd, wye, wyf, wyg and consecutive ones share a range.
    assert geohash_ranges(*SEOUL, 50) == [
        ("wy3", "wy4"),
        ("wy6", "wy8"),
        ("wy9", "wyb"),
        ("wyc", "wyh"),
    ]
    # Ranges end where the next cell starts, carrying past "z": "xz" ends at "y0".
    assert geohash_ranges(0.0, 0.0, 3000) == [
        ("7", "8"),
        ("e", "f"),
        ("g", "h"),
        ("k", "n"),
        ("s", "w"),
    ]
    assert ("rzzz", "s000") in geohash_ranges(0.0, 179.99, 10)


def test_huge_radius_or_a_pole_covers_everything():
    assert geohash_ranges(*SEOUL, 5000) == [("0", RANGE_END)]
    assert geohash_ranges(89.99, 0, 10) == [("0", RANGE_END)]


def destination(lat, lon, bearing_deg, distance_km):
    """The point `distance_km` from (lat, lon) on the given bearing (great circle)."""
    phi, lam, theta = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    delta = distance_km / EARTH_RADIUS_KM
    phi2 = math.asin(
        math.sin(phi) * math.cos(delta) + math.cos(phi) * math.sin(delta) * math.cos(theta)
    )
    lam2 = lam + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi),
        math.cos(delta) - math.sin(phi) * math.sin(phi2),
    )
    lon2 = (math.degrees(lam2) + 540) % 360 - 180
    return math.degrees(phi2), lon2


@pytest.mark.parametrize(
    "centre",
    [SEOUL, BUSAN, (0.0, 0.0), (51.5, -0.0001), (-33.87, 151.21), (10.0, 179.999), (70.0, 25.0)],
)
@pytest.mark.parametrize("radius", [0.03, 0.5, 3, 25, 50, 300])
def test_every_point_within_the_radius_is_in_a_range(centre, radius):
    rng = random.Random(f"{centre}-{radius}")
    ranges = geohash_ranges(*centre, radius)
    for _ in range(300):
        # Mostly right at the edge of the circle, where a range could miss a point.
        distance = radius * (1 - rng.random() ** 4 * 0.999)
        lat, lon = destination(*centre, rng.uniform(0, 360), distance)
        assert haversine_km(*centre, lat, lon) <= radius * (1 + 1e-9)
        geohash = geohash_encode(lat, lon, 9)
        assert in_ranges(geohash, ranges), (centre, radius, lat, lon, geohash, ranges)


def test_ranges_are_tight_enough_to_be_useful():
    """The covered area is a small multiple of the circle, not half the country."""
    for radius in (1, 10, 50):
        ranges = geohash_ranges(*SEOUL, radius)
        precision = len(ranges[0][0])
        height, width = cell_size_deg(precision)
        cell_km = height * 111.2
        assert cell_km < 8 * radius
