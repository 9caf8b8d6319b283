"""Finding a clinic: asking where the user is, and listing the nearest clinics."""

from __future__ import annotations

import time

from bot.conversation.replies import Reply, Venue
from bot.conversation.state import Awaiting, LastResult
from bot.conversation.views import Speaker, condition_name, map_url
from knowledge.models import Clinic, UserState
from knowledge.places import Gazetteer, PlaceRequest, load_regions
from knowledge.resilient import FRESH_S, ClinicSearchUnavailable, ResilientKnowledge
from knowledge.store import KnowledgeStore, StoreError

CLINICS_LISTED = 5
VENUES_SENT = 3
CLINIC_RADIUS_KM = 50.0


class Clinics:
    def __init__(self, store: KnowledgeStore, knowledge: ResilientKnowledge, speaker: Speaker):
        self.store = store
        self.knowledge = knowledge
        self.say = speaker
        # Every typed message is checked for a place: the clinics' places are read at most once
        # per FRESH_S (as care content is), not once per message.
        self._gazetteer = Gazetteer([], load_regions())
        self._gazetteer_read_at: float | None = None

    def ask_location(self, state: UserState) -> Reply:
        state.awaiting = Awaiting.LOCATION
        reply = self.say.reply("ask_location", state)
        reply.ask_location = True
        reply.location_button = self.say.word("button_send_location", state)
        return reply

    async def place_request(self, text: str, asked: bool) -> PlaceRequest | None:
        """The clinic search `text` asks for ("Busan", "find a dermatologist in Gangnam",
        "제주"), or None; `asked`: the user was just asked where they are."""
        now = time.monotonic()
        if self._gazetteer_read_at is None or now - self._gazetteer_read_at >= FRESH_S:
            try:
                clinics: list[Clinic] = await self.store.list_clinics()
                self._gazetteer = Gazetteer(clinics, load_regions())
            except StoreError:
                pass  # the places read last time still stand
            self._gazetteer_read_at = now
        return self._gazetteer.request(text, asked)

    async def search(self, state: UserState, request: PlaceRequest) -> list[Reply]:
        """The clinics near the place asked for, or where to look when none is known there."""
        if request.place is not None:
            place = request.place
            return await self.near(state, place.lat, place.lon, place.name)
        reply = self.ask_location(state)
        reply.text = self.say.texts.render(
            "no_clinics_near_place",
            state.language,
            place=request.unknown,
            nearest=request.nearest.name if request.nearest else None,
            nearest_km=round(request.nearest_km),
        )
        return [reply]

    async def near(
        self, state: UserState, lat: float, lon: float, place: str | None = None
    ) -> list[Reply]:
        """The clinics nearest to a place: for the last result's condition when there is one
        (and it was not "I can't tell"), else any dermatologist."""
        state.awaiting = Awaiting.NOTHING
        result = LastResult.from_dict(state.last_result)
        label = result.label_for_clinics if result else None
        lang = state.language
        try:
            found = await self.knowledge.nearest_clinics(
                lat, lon, CLINICS_LISTED, condition=label, max_km=CLINIC_RADIUS_KM
            )
            if not found and label is not None:  # nobody lists it: any dermatologist will do
                found = await self.knowledge.nearest_clinics(
                    lat, lon, CLINICS_LISTED, max_km=CLINIC_RADIUS_KM
                )
        except ClinicSearchUnavailable:
            return [Reply(text=self.say.texts.render("store_down", lang), close_keyboard=True)]
        if not found:
            text = self.say.texts.render("no_clinics", lang, radius_km=int(CLINIC_RADIUS_KM))
            return [Reply(text=text, close_keyboard=True)]
        clinics = [
            {
                "name": clinic.name.get(lang) or clinic.name.get("en", ""),
                "address": clinic.address.get(lang) or clinic.address.get("en", ""),
                "phone": clinic.phone,
                "hours": clinic.hours.get(lang) or clinic.hours.get("en", ""),
                "distance_km": round(distance, 1),
                "map_url": map_url(clinic.lat, clinic.lon, clinic.name.get(lang, "")),
                "sample": clinic.sample,
                # Its address and map come as a venue card (a map pin) after the list: the
                # list does not repeat them.
                "card": number < VENUES_SENT,
            }
            for number, (clinic, distance) in enumerate(found)
        ]
        condition = await self.knowledge.condition(label) if label else None
        listing = Reply(
            text=self.say.texts.render(
                "clinics",
                lang,
                clinics=clinics,
                place=place,
                condition_name=condition_name(label, condition, lang) if label else None,
                any_sample=any(clinic["sample"] for clinic in clinics),
            ),
            close_keyboard=True,
        )
        venues = [
            Reply(venue=Venue(c["name"], c["address"], clinic.lat, clinic.lon, c["map_url"]))
            for c, (clinic, _) in zip(clinics[:VENUES_SENT], found, strict=False)
        ]
        return [listing, *venues]
