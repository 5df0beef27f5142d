# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GCP labels, for every file of the package: Compute Engine instances, Cloud Run services and alert policies
carry the same kind of labels, and user tags become labels as they are.

Labels starting with `lxcri-` are the collection's, those starting with `goog-` Google's: both are kept when
the user tags change and neither is ever shown as a tag. A tag a label cannot hold is refused by
GcpProvider.validate_spec rather than mangled.
"""

from __future__ import annotations

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import retagged
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import TAG_PREFIX, SpecError

GOOGLE_LABEL_PREFIX = "goog-"
MAX_LABELS = 64


def label_ok(text, key=False):
    """GCE's label rule: lower-case letters (international ones too), digits, '_' and '-', at most 63.

    A key must also start with a lower-case letter; a value may be empty.
    """
    if not isinstance(text, str) or len(text) > 63 or (key and not text):
        return False
    if key and not (text[0].isalpha() and not text[0].isupper()):
        return False
    return all((ch.isalpha() and not ch.isupper()) or ch.isdigit() or ch in "_-" for ch in text)


def labelable(tags):
    """True when every tag can be a label: a tag that cannot is on no resource, so a listing by it is empty."""
    return all(label_ok(key, key=True) and label_ok(value) for key, value in (tags or {}).items())


def system_label(key):
    return key.startswith(TAG_PREFIX) or key.startswith(GOOGLE_LABEL_PREFIX)


def user_tags(labels):
    """The user's tags among a resource's labels: everything but lxcri-* and goog-*."""
    return {key: value for key, value in labels.items() if not system_label(key)}


def relabelled(labels, tags, purge):
    """The labels a resource should end with: its lxcri-* and goog-* ones, and the user tags made `tags`."""
    return {**{k: v for k, v in labels.items() if system_label(k)}, **retagged(user_tags(labels), tags, purge)}


def check_tags(tags, identity):
    """The user tags of a deployment as labels next to `identity` labels of the collection's (SpecError)."""
    for key, value in tags.items():
        if not label_ok(key, key=True):
            raise SpecError(
                f"tags: key '{key}' cannot be a GCP label key: use 1 to 63 lower-case letters, digits, '_' and "
                "'-', starting with a lower-case letter"
            )
        if key.startswith(GOOGLE_LABEL_PREFIX):
            raise SpecError(f"tags: key '{key}' is reserved: GCP label keys starting with '{GOOGLE_LABEL_PREFIX}' belong to Google")
        if not label_ok(value):
            hint = " (write booleans as lower-case strings, e.g. 'true')" if value in ("True", "False") else ""
            raise SpecError(
                f"tags: value '{value}' of '{key}' cannot be a GCP label value: use at most 63 lower-case letters, "
                f"digits, '_' and '-'{hint}"
            )
    if len(tags) + identity > MAX_LABELS:
        raise SpecError(
            f"tags: at most {MAX_LABELS - identity} tags on gcp (a GCE instance holds {MAX_LABELS} labels, "
            f"{identity} are the collection's)"
        )
