"""The model's labels (its bundle's card, the one list) and the care content agree."""

from diagnosis.bundle import BUNDLED_MODEL_DIR, read_card
from knowledge.content import CONTENT_LABELS, load_conditions
from knowledge.faq import load_faq


def test_every_label_of_the_bundled_model_has_care_content_and_nothing_else_does():
    card = read_card(BUNDLED_MODEL_DIR)
    assert sorted(card.labels) == list(CONTENT_LABELS)
    assert sorted(condition.label for condition in load_conditions()) == list(CONTENT_LABELS)
    faq_labels = {entry.label for entry in load_faq() if entry.label is not None}
    assert faq_labels <= set(card.labels)
