"""The dialogue's typed values: button actions, the remembered result, the routing tables."""

from __future__ import annotations

import pytest

from bot.conversation import BUTTONS, COMMANDS, Action, ActionKind, Awaiting, LastResult
from bot.texts import default_texts
from knowledge.models import LANGUAGES


@pytest.mark.parametrize(
    "action, data",
    [
        (Action(ActionKind.CARE, "3f2a9b10"), "care:3f2a9b10"),
        (Action(ActionKind.MORE, "3f2a9b10"), "more:3f2a9b10"),
        (Action(ActionKind.HEATMAP, "3f2a9b10"), "gradcam:3f2a9b10"),
        (Action.heatmap_of("3f2a9b10", 2), "gradcam:3f2a9b10.2"),
        (Action(ActionKind.CLINIC, "3f2a9b10"), "clinic:3f2a9b10"),
        (Action(ActionKind.CLINIC), "clinic"),
        (Action(ActionKind.FEEDBACK_RIGHT, "3f2a9b10"), "feedback:yes:3f2a9b10"),
        (Action(ActionKind.FEEDBACK_WRONG, "3f2a9b10"), "feedback:no:3f2a9b10"),
        (Action(ActionKind.LANGUAGE, "ko"), "lang:ko"),
    ],
)
def test_an_action_encodes_to_its_button_data_and_parses_back(action, data):
    assert action.encode() == data
    assert Action.parse(data) == action


@pytest.mark.parametrize(
    "data",
    [
        *("", "care", "care:", "feedback", "feedback:maybe:1", "lang:fr", "lang", "rm -rf"),
        *("gradcam", "more", "care:3f2a.1", "gradcam:3f2a.", "gradcam:3f2a.x", "gradcam:3f2a.²"),
        "gradcam:3f2a.100",
    ],
)
def test_made_up_button_data_parses_to_nothing(data):
    assert Action.parse(data) is None


def test_a_heatmap_button_of_an_album_names_its_result_and_photo():
    action = Action.parse("gradcam:3f2a9b10.1")
    assert (action.result_id, action.photo_index) == ("3f2a9b10", 1)
    plain = Action.parse("gradcam:3f2a9b10")
    assert (plain.result_id, plain.photo_index) == ("3f2a9b10", 0)


def test_button_data_over_telegrams_64_bytes_is_refused():
    with pytest.raises(ValueError, match="64 bytes"):
        Action(ActionKind.CARE, "x" * 64).encode()


def test_the_last_result_round_trips_through_the_stored_dict():
    result = LastResult(
        id="ab12cd34",
        label="acne",
        top=[{"label": "acne", "prob": 0.9}],
        abstain=False,
        urgent=True,
        level="urgent",
        model="m-1",
        photo_ref="file-9",
        at="2026-11-29T10:00:00+00:00",
    )
    assert LastResult.from_dict(result.to_dict()) == result
    assert LastResult.from_dict(None) is None
    assert LastResult.from_dict({"label": "acne"}) is None  # no id: not a result


def test_after_i_cant_tell_no_condition_scopes_the_advice():
    assert LastResult(id="1", label="acne").label_for_advice == "acne"
    assert LastResult(id="1", label="acne", abstain=True).label_for_advice is None


def test_awaiting_is_stored_as_the_plain_strings_older_states_hold():
    assert Awaiting("location") is Awaiting.LOCATION
    assert Awaiting("") is Awaiting.NOTHING


def test_every_button_kind_has_a_handler_and_every_command_a_template():
    assert set(BUTTONS) == set(ActionKind)
    texts = default_texts()
    for lang in LANGUAGES:
        names = set(texts.template_names(lang))
        for command in ("start", "help", "privacy"):
            assert command in COMMANDS and command in names


def test_button_data_of_exactly_64_bytes_is_accepted():
    data = Action(ActionKind.CARE, "x" * (64 - len("care:"))).encode()
    assert len(data.encode()) == 64 and Action.parse(data) is not None
