"""Turn a typed city or district ("Gangnam", "강남구", "부산 해운대") into a point to search from.

There is no gazetteer: the places known are the ones the clinics are in, taken from each
clinic's `city`, `district` and Korean address ("서울특별시 강남구 ..."), and a place's point is
the centroid of its clinics. That is all a "clinics near X" search needs, and it never sends a
user to a place with no clinic.

Several cities have a district of the same name (Seo-gu, Jung-gu, Nam-gu, ...): such a district
counts only with its city ("대구 중구", "Seo-gu, Daejeon"); alone it names no one place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from knowledge.models import Clinic

_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_LATIN_WORD = re.compile(r"[a-z0-9]+")
# "서울특별시" -> "서울", "부산광역시" -> "부산", "수원시" -> "수원"
_KO_CITY_SUFFIXES = ("특별자치시", "특별시", "광역시", "시")


@dataclass(frozen=True)
class Place:
    name: str  # in the language of the text it was found in: "Gangnam-gu, Seoul" / "서울 강남구"
    lat: float
    lon: float


@dataclass
class _Area:
    name_en: str
    name_ko: str
    clinics: list[Clinic]

    def place(self, korean: bool) -> Place:
        lat = sum(clinic.lat for clinic in self.clinics) / len(self.clinics)
        lon = sum(clinic.lon for clinic in self.clinics) / len(self.clinics)
        return Place(self.name_ko if korean else self.name_en, lat, lon)


def _korean_city_and_district(address: str) -> tuple[str, str]:
    """("서울", "강남구") from "서울특별시 강남구 은행나무로 118"; "" for what is not there."""
    words = address.split()
    for position, word in enumerate(words):
        if word.endswith("구") and position > 0:
            return _short_city(words[position - 1]), word
    city = next((word for word in words if word.endswith("시")), "")
    return _short_city(city), ""


def _short_city(word: str) -> str:
    for suffix in _KO_CITY_SUFFIXES:
        if word.endswith(suffix) and len(word) > len(suffix):
            return word[: -len(suffix)]
    return word


def _english_forms(name: str) -> set[tuple[str, ...]]:
    """ "Gangnam-gu" -> {("gangnam", "gu"), ("gangnamgu",)}; "Suwon" -> {("suwon",)}."""
    words = tuple(_LATIN_WORD.findall(name.lower()))
    return {words, ("".join(words),)} if words else set()


def _without_suffix(name: str, suffixes: Iterable[str]) -> str:
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


class _Gazetteer:
    """Every city and district the clinics are in, with the ways a user may type them."""

    def __init__(self, clinics: Sequence[Clinic]):
        self.cities: dict[str, _Area] = {}
        self.districts: dict[tuple[str, str], _Area] = {}
        district_ko: dict[tuple[str, str], str] = {}  # ("Seoul", "Gangnam-gu") -> "강남구"
        for clinic in clinics:
            ko_city, ko_district = _korean_city_and_district(clinic.address.get("ko", ""))
            city = self.cities.setdefault(clinic.city, _Area(clinic.city, ko_city, []))
            city.clinics.append(clinic)
            if clinic.district:
                key = (clinic.city, clinic.district)
                if ko_district:
                    district_ko.setdefault(key, ko_district)
                name_en = f"{clinic.district}, {clinic.city}"
                name_ko = f"{ko_city} {ko_district}".strip()
                self.districts.setdefault(key, _Area(name_en, name_ko, [])).clinics.append(clinic)

        # English and Korean forms -> the keys they name. Short forms ("gangnam", "강남") only
        # where a single district has them: a bare "nam" or "서" is a word, not a place.
        self.en_forms: dict[tuple[str, ...], set] = {}
        self.ko_forms: dict[str, set] = {}
        short_en: dict[tuple[str, ...], set] = {}
        short_ko: dict[str, set] = {}
        for key in self.districts:
            district_en = key[1]
            for form in _english_forms(district_en):
                self.en_forms.setdefault(form, set()).add(key)
            short = _without_suffix(district_en.lower(), ("-gu", " gu", "gu"))
            short_en.setdefault(tuple(_LATIN_WORD.findall(short)), set()).add(key)
            if key in district_ko:
                self.ko_forms.setdefault(district_ko[key], set()).add(key)
                short_ko.setdefault(district_ko[key].removesuffix("구"), set()).add(key)
        for form, keys in short_en.items():
            if len(keys) == 1 and form and len("".join(form)) >= 3:
                self.en_forms.setdefault(form, set()).update(keys)
        for form, keys in short_ko.items():
            if len(keys) == 1 and len(form) >= 2:
                self.ko_forms.setdefault(form, set()).update(keys)
        for name, area in self.cities.items():
            for form in _english_forms(name) | _english_forms(f"{name}-si"):
                self.en_forms.setdefault(form, set()).add(name)
            if area.name_ko:
                for form in (area.name_ko, f"{area.name_ko}시"):
                    self.ko_forms.setdefault(form, set()).add(name)
        self.longest_en = max((len(form) for form in self.en_forms), default=0)
        # Longest first, so "부산진구" is the district before "부산" is the city.
        self.ko_sorted = sorted(self.ko_forms, key=len, reverse=True)

    def names_in(self, text: str) -> list[set]:
        """For each place named in `text`, the keys it may be (city names or district keys)."""
        found: list[set] = []
        words = _LATIN_WORD.findall(text.lower())
        start = 0
        while start < len(words):
            for size in range(min(self.longest_en, len(words) - start), 0, -1):
                keys = self.en_forms.get(tuple(words[start : start + size]))
                if keys:
                    found.append(keys)
                    start += size
                    break
            else:
                start += 1
        for word in re.findall(r"[\uac00-\ud7a3]+", text):
            # A word may hold a city and a district with no space ("부산해운대구에서"); what
            # follows a name is a particle or another name.
            while word:
                form = next((f for f in self.ko_sorted if word.startswith(f)), None)
                if form is None:
                    break
                found.append(self.ko_forms[form])
                word = word[len(form) :]
        return found


def find_place(text: str, clinics: list[Clinic]) -> Place | None:
    """The district or city `text` names, at the centroid of its clinics; None if none is named
    (or a district is named that several cities have, without its city)."""
    gazetteer = _Gazetteer(clinics)
    names = gazetteer.names_in(text)
    cities = {key for keys in names for key in keys if isinstance(key, str)}
    districts = [{key for key in keys if isinstance(key, tuple)} for keys in names]
    districts = [keys for keys in districts if keys]
    korean = bool(_HANGUL.search(text))

    candidates = {key for keys in districts for key in keys}
    if cities:
        candidates = {key for key in candidates if key[0] in cities}
    elif any(len(keys) > 1 for keys in districts):
        candidates = set()  # "남구" alone: Busan's or Gwangju's?
    if len(candidates) == 1:
        return gazetteer.districts[candidates.pop()].place(korean)
    # Two districts of one city, or a district we have no clinic in ("서울 중구"): the city.
    cities |= {key[0] for key in candidates}
    if len(cities) == 1:
        return gazetteer.cities[cities.pop()].place(korean)
    return None
