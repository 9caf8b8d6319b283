"""Turn a typed city or district ("Gangnam", "강남구", "부산 해운대") into a point to search from.

There is no gazetteer: the places known are the ones the clinics are in, taken from each
clinic's `city`, `district` and Korean address ("서울특별시 강남구 ..."), and a place's point is
the centroid of its clinics. That is all a "clinics near X" search needs, and it never sends a
user to a place with no clinic.

Several cities have a district of the same name (Seo-gu, Jung-gu, Nam-gu, ...): such a district
counts only with its city ("대구 중구", "Seo-gu, Daejeon"); alone it names no one place.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from knowledge.geo import haversine_km
from knowledge.models import Clinic

# Cities and provinces people type that have no clinic in the list (yet): known so that "Jeju"
# gets "no clinics known near Jeju, the nearest are in Gwangju" instead of a FAQ no-answer.
REGIONS_CSV = Path(__file__).resolve().parent / "content" / "regions.csv"

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

    cities: dict[str, _Area]
    districts: dict[tuple[str, str], _Area]
    en_forms: dict[tuple[str, ...], set]
    ko_forms: dict[str, set]

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
    return _place_in(_Gazetteer(clinics), text)


def _place_in(gazetteer: _Gazetteer, text: str) -> Place | None:
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


# ---- places typed anywhere in the conversation ----------------------------------------------


@dataclass(frozen=True)
class Region:
    """A city or province with no clinic in the list; its first names are the display names."""

    names_en: tuple[str, ...]
    names_ko: tuple[str, ...]
    lat: float
    lon: float


@cache
def load_regions(path: Path = REGIONS_CSV) -> tuple[Region, ...]:
    with open(path, encoding="utf-8", newline="") as file:
        return tuple(
            Region(
                tuple(row["name_en"].split("|")),
                tuple(row["name_ko"].split("|")),
                float(row["lat"]),
                float(row["lon"]),
            )
            for row in csv.DictReader(file)
        )


@dataclass(frozen=True)
class PlaceRequest:
    """A message that asks for clinics somewhere: either `place` (clinics are known there), or
    `unknown`, the place as typed, with the nearest place that has clinics when we know where
    `unknown` is."""

    place: Place | None = None
    unknown: str = ""
    nearest: Place | None = None
    nearest_km: float = 0.0


# Words that ask for a clinic, and words that make "in X" a place to search ("find a clinic in
# Busan") rather than where something happened ("I got it in Busan, do I need a doctor?").
_EN_CLINIC = frozenset(
    "dermatologist dermatologists derm derms dermatology clinic clinics doctor doctors "
    "hospital hospitals".split()
)
_EN_NEAR = frozenset("near nearby around close".split())
_EN_IN = frozenset("in at".split())
_EN_SEARCH = frozenset("find where recommend any list show search nearest good best know".split())
# What may stand beside a place in a message that is only a place ("in Busan please").
_EN_FILLER = (
    _EN_CLINIC
    | _EN_NEAR
    | _EN_IN
    | _EN_SEARCH
    | frozenset(
        "the a an to by me i m im am live living from city area please skin one some what about "
        "how there is are and ok okay".split()
    )
)
# "in my area", "near me": not a place name.
_EN_NOT_PLACES = _EN_FILLER | frozenset("my here this that your our town korea general".split())

_KO_CLINIC = ("피부과", "병원", "의원", "클리닉")
# Endings a place word may have: "부산에서", "강남역 근처", "해운대요".
_KO_LOCATIVE = ("", "역", "에", "에서", "쪽", "근처", "주변", "인근", "역 근처", "역에서")
_KO_ALONE = ("", "이요", "요", "에요", "이에요", "입니다", "은요", "는요", "시", "도", "에서요")
# A word right after a place that makes it where to search: "강남 피부과", "부산 근처".
_KO_NEXT = (*_KO_CLINIC, "근처", "주변", "인근", "쪽", "사는", "살아", "살고")
# With a place that has a locative ending, the message must also ask where ("부산에 있는 피부과
# 알려줘"); "제주도에 여행 갔다가 생겼는데 병원 가야 하나요?" is a question, not a search.
_KO_SEARCH = ("어디", "근처", "주변", "찾", "알려", "추천", "있는", "있나요", "있어요", "가까운")
_KO_UNKNOWN = re.compile(
    r"([가-힣]{2,})(?:에 있는|에서|\s*근처|\s*주변|\s*쪽)\s*(?:의\s*)?(?:피부과|병원|의원|클리닉)"
)
_KO_NOT_PLACES = frozenset("우리 우리집 집 여기 거기 저기 동네 회사 학교 근처 가까운 좋은".split())
_EN_UNKNOWN = re.compile(
    r"\b(?:dermatologists?|derms?|clinics?|doctors?|hospitals?)\s+(in|near|around)\s+"
    r"([a-z][a-z'-]+(?:\s+[a-z][a-z'-]+)?)",
    re.I,
)


class Gazetteer:
    """The places of the clinics and the regions without one, built once per clinic list."""

    def __init__(self, clinics: Sequence[Clinic], regions: Sequence[Region] = ()):
        self._places = _Gazetteer(clinics)
        self._regions = list(regions)
        self._region_en = {
            tuple(_LATIN_WORD.findall(name.lower())): region
            for region in self._regions
            for name in region.names_en
        }
        self._region_ko = {name: region for region in self._regions for name in region.names_ko}
        self._ko_forms = sorted({*self._places.ko_forms, *self._region_ko}, key=len, reverse=True)
        self._longest_en = max(
            (len(form) for form in [*self._places.en_forms, *self._region_en]), default=0
        )

    def find(self, text: str) -> Place | None:
        """The known city or district `text` names (see `find_place`)."""
        return _place_in(self._places, text)

    def request(self, text: str, asked: bool = False) -> PlaceRequest | None:
        """The clinic search `text` asks for, or None when it asks for none.

        `asked`: the user was just asked where they are, so any place named is the answer.
        Otherwise a message counts when it is only a place ("Busan", "부산이요") or asks for a
        clinic there ("find a dermatologist in Busan", "강남 피부과"): a place name inside a
        question ("수성 연고 써도 돼요?", water-based ointment) is not a search.
        """
        if not (asked or self._is_search(text)):
            return self._unknown(text)
        place = self.find(text)
        if place is not None:
            return PlaceRequest(place=place)
        region = self._region_in(text)
        if region is not None:
            return self._no_clinics(region, korean=bool(_HANGUL.search(text)))
        return self._unknown(text)

    # -- which messages ask for clinics

    def _is_search(self, text: str) -> bool:
        return self._is_english_search(text.lower()) or self._is_korean_search(text)

    def _english_spans(self, words: list[str]) -> list[tuple[int, int]]:
        spans, start = [], 0
        while start < len(words):
            for size in range(min(self._longest_en, len(words) - start), 0, -1):
                form = tuple(words[start : start + size])
                if form in self._places.en_forms or form in self._region_en:
                    spans.append((start, start + size))
                    start += size
                    break
            else:
                start += 1
        return spans

    def _is_english_search(self, text: str) -> bool:
        words = _LATIN_WORD.findall(text)
        spans = self._english_spans(words)
        if not spans:
            return False
        in_place = {i for start, end in spans for i in range(start, end)}
        if all(i in in_place or word in _EN_FILLER for i, word in enumerate(words)):
            return True  # "Busan", "in gangnam please", "dermatologist near Haeundae?"
        if not _EN_CLINIC & set(words):
            return False
        for start, end in spans:
            before = words[start - 1] if start else ""
            after = words[end] if end < len(words) else ""
            if before in _EN_NEAR or after in _EN_CLINIC:
                return True
            if before in _EN_IN and _EN_SEARCH & set(words):
                return True
        return False

    def _korean_place_word(self, word: str, endings: tuple[str, ...]) -> bool:
        """Whether `word` is places and then one of `endings` ("부산해운대구에서")."""
        rest, named = word, False
        while rest:
            form = next((f for f in self._ko_forms if rest.startswith(f)), None)
            if form is None:
                break
            rest, named = rest[len(form) :], True
        return named and rest in endings

    def _is_korean_search(self, text: str) -> bool:
        words = re.findall(r"[\uac00-\ud7a3]+", text)
        if not words:
            return False
        if all(self._korean_place_word(word, _KO_ALONE) for word in words):
            return True  # "부산", "제주도요", "부산 해운대"
        asks_where = any(word.startswith(_KO_SEARCH) for word in words)
        for position, word in enumerate(words):
            after = words[position + 1] if position + 1 < len(words) else ""
            if self._korean_place_word(word, ("", "역")) and after.startswith(_KO_NEXT):
                return True
            if asks_where and self._korean_place_word(word, _KO_LOCATIVE):
                return True
        return False

    # -- places with no clinic

    def _region_in(self, text: str) -> Region | None:
        words = _LATIN_WORD.findall(text.lower())
        for start, end in self._english_spans(words):
            region = self._region_en.get(tuple(words[start:end]))
            if region is not None:
                return region
        for word in re.findall(r"[\uac00-\ud7a3]+", text):
            form = next((f for f in self._ko_forms if word.startswith(f)), None)
            if form in self._region_ko:
                return self._region_ko[form]
        return None

    def _no_clinics(self, region: Region, korean: bool) -> PlaceRequest:
        name = region.names_ko[0] if korean else region.names_en[0]
        nearest = min(
            self._places.cities.values(),
            key=lambda area: haversine_km(region.lat, region.lon, *_centre(area)),
            default=None,
        )
        if nearest is None:
            return PlaceRequest(unknown=name)
        place = nearest.place(korean)
        km = haversine_km(region.lat, region.lon, place.lat, place.lon)
        return PlaceRequest(unknown=name, nearest=place, nearest_km=km)

    def _unknown(self, text: str) -> PlaceRequest | None:
        """ "find a dermatologist in Xyz", "울릉도 근처 피부과": a place we know nothing of."""
        match = _EN_UNKNOWN.search(text)
        words = match.group(2).split() if match else []
        # "a doctor in person" is no place: "in" counts only in a search ("find ... in Xyz").
        searching = match and (
            match.group(1).lower() in _EN_NEAR or _EN_SEARCH & set(text.lower().split())
        )
        if searching and words[0].lower() not in _EN_NOT_PLACES:
            # "in Xyz please": only the words that are not filler are the place.
            name = " ".join(w for w in words if w.lower() not in _EN_NOT_PLACES)
            return PlaceRequest(unknown=name[:40])
        match = _KO_UNKNOWN.search(text)
        if match and match.group(1) not in _KO_NOT_PLACES:
            return PlaceRequest(unknown=match.group(1)[:40])
        return None


def _centre(area: _Area) -> tuple[float, float]:
    place = area.place(False)
    return place.lat, place.lon
