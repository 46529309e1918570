"""The kinds of Akool video job we archive, one table row each (`KINDS`): where a kind is
submitted, the fields of its body, the name of its webhook field, the `type` its callbacks
carry and the extra result files its status answer may name.

Five kinds share lip-sync's status lookup, auth and webhook envelope field for field; only
the submit differs, and that is what a row describes. A row is data only: the code that
builds, sends or matches a request reads the table, so a sixth kind is a sixth row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from worker.names import LIPSYNC_KIND

# The lip-sync submit: the client sends it, and its row below names it.
LIPSYNC_PATH = "/api/open/v3/content/video/lipsync"

# A callback `type` longer than this is no kind's (nothing is normalised past it).
MAX_CALLBACK_TYPE_CHARS = 64


@dataclass(frozen=True)
class Asset:
    """An extra result file a kind's status answer may name, which expires with the video."""

    # Its field in the status answer's `container` (e.g. audio_splits.original_srt_url).
    field: str
    container: str
    content_type: str
    # The archived object's suffix, after the video's key stem.
    suffix: str


@dataclass(frozen=True)
class Kind:
    """One kind of Akool video job: everything that differs between kinds."""

    name: str
    submit_path: str
    # The body's fields: those Akool requires, and those it also accepts.
    required: tuple[str, ...]
    optional: tuple[str, ...]
    # The fields holding URLs; "elements[].url" is the `url` of every item of `elements`.
    url_fields: tuple[str, ...]
    # The body field that carries our webhook URL (not among `required`/`optional`).
    webhook_field: str
    # The `type` values its decrypted callbacks carry, as `callback_key` spells them.
    callback_types: tuple[str, ...]
    assets: tuple[Asset, ...] = ()

    @property
    def body_fields(self) -> tuple[str, ...]:
        """Every field its body may hold besides the webhook field."""
        return self.required + self.optional


def callback_key(callback_type: str) -> str:
    """`callback_type` as the table spells it: case folded, each run of "_", "-" and
    whitespace one space, nothing around it. So "Talking_Photo" is "talking photo"."""
    words = callback_type.casefold().replace("_", " ").replace("-", " ").split()
    return " ".join(words)


_SRT = "application/x-subrip"
_MP4 = "video/mp4"

_ROWS = (
    Kind(
        name=LIPSYNC_KIND,
        submit_path=LIPSYNC_PATH,
        required=("video_url", "audio_url"),
        optional=(),
        url_fields=("video_url", "audio_url"),
        webhook_field="webhookUrl",
        callback_types=("lipsync",),
    ),
    Kind(
        name="talking_photo",
        submit_path="/api/open/v3/content/video/createbytalkingphoto",
        required=("talking_photo_url", "audio_url"),
        optional=("prompt", "resolution"),
        url_fields=("talking_photo_url", "audio_url"),
        webhook_field="webhookUrl",
        callback_types=("talking photo",),
    ),
    Kind(
        name="video_translation",
        submit_path="/api/open/v3/content/video/createbytranslate",
        required=("url", "language"),
        optional=(
            "source_language",
            "lipsync",
            "speaker_num",
            "remove_bgm",
            "caption_type",
            "caption_url",
            "studio_voice",
            "dynamic_duration",
        ),
        url_fields=("url", "caption_url"),
        webhook_field="webhookUrl",
        callback_types=("video translate",),
        assets=(
            Asset("original_srt_url", "audio_splits", _SRT, ".original.srt"),
            Asset("translated_srt_url", "audio_splits", _SRT, ".translated.srt"),
            Asset("no_caption_video_url", "audio_splits", _MP4, ".no_caption.mp4"),
        ),
    ),
    Kind(
        name="talking_avatar",
        submit_path="/api/open/v3/talkingavatar/create",
        required=("elements", "avatar_from"),
        optional=("width", "height"),
        url_fields=("elements[].url",),
        webhook_field="webhookUrl",
        callback_types=("avatar",),
    ),
    Kind(
        name="character_swap",
        submit_path="/api/open/v4/characterSwap/create",
        required=("image", "video"),
        optional=("duration", "resolution", "mode", "prompt"),
        url_fields=("image", "video"),
        # Spelled in lower case by Akool for this kind alone.
        webhook_field="webhookurl",
        # Akool does not document this kind's callback type. We accept the spellings its
        # name and path suggest ("character swap", "characterSwap", "character_swap", which
        # `callback_key` folds to these two) and nothing else: a wrong guess leaves the
        # callback ignored and the job polled, never matched to another kind.
        callback_types=("character swap", "characterswap"),
    ),
)

KINDS: Mapping[str, Kind] = MappingProxyType({kind.name: kind for kind in _ROWS})

_BY_CALLBACK_TYPE = {spelling: kind for kind in _ROWS for spelling in kind.callback_types}


def kind_for_callback_type(callback_type: str) -> Kind | None:
    """The kind whose callbacks carry `callback_type` (compared as `callback_key` spells
    it), or None for a type no kind carries (or no string at all: it came off the network)."""
    if not isinstance(callback_type, str) or len(callback_type) > MAX_CALLBACK_TYPE_CHARS:
        return None
    return _BY_CALLBACK_TYPE.get(callback_key(callback_type))


_ASSETS = {asset.field: asset for kind in _ROWS for asset in kind.assets}


def asset_for_field(field: str) -> Asset | None:
    """The extra result file a status answer names by `field`, whatever the kind."""
    return _ASSETS.get(field)
