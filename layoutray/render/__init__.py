"""Pictures: greyscale wireframes, the model's image input for synthetic sections (wireframe), and
pictures of layouts for people: contact sheets, truth | generated pairs, samples side by side
(sheets)."""
