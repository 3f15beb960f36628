"""The stems this plugin adds to stemkit's vocabulary (kept apart from the provider: light to import)."""

from stemkit.stems import StemGroup

VOCAL_PARTS = StemGroup(
    "vocals",
    ("lead_vocals", "backing_vocals"),
    aliases={"lead": "lead_vocals", "backing_vocals_only": "backing_vocals", "bgv": "backing_vocals"},
    description="the main voice, and the harmonies and doubles behind it",
)
