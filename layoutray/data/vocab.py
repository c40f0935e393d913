"""The fixed vocabularies of section and element types.

They are part of a model's identity: the tokenizer, the dataset validator and the
HTTP API all read them from here, and every manifest and model artifact records the
lists it was built with so that a mismatch is caught instead of silently remapped.
"""

SECTION_TYPES: tuple[str, ...] = (
    "hero",
    "feature_grid",
    "pricing",
    "testimonials",
    "call_to_action",
    "footer",
    "gallery",
    "team",
    "faq",
    "stats",
    "logo_wall",
    "contact_form",
    "navbar",
)

ELEMENT_TYPES: tuple[str, ...] = (
    "heading",
    "subheading",
    "paragraph",
    "button",
    "link",
    "image",
    "icon",
    "logo",
    "navigation",
    "card",
    "input",
    "list",
    "avatar",
    "badge",
)

SECTION_INDEX = {name: i for i, name in enumerate(SECTION_TYPES)}
ELEMENT_INDEX = {name: i for i, name in enumerate(ELEMENT_TYPES)}
