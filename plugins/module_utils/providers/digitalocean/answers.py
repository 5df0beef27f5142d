# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""DigitalOcean's answers as pydo gives them: for some declared error statuses (404 mostly, 400) pydo returns
the error's body ({"id": "not_found", "message": ...}) instead of raising. body() turns such a body into
ErrorAnswer, so that the provider's gone() decides "not there" for raised and returned errors alike."""

from __future__ import annotations

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError


class ErrorAnswer(ProviderError):
    """An error DigitalOcean answered with a body that pydo returned instead of raising; `error_id` is the
    body's id (not_found: the resource is not there)."""

    def __init__(self, message, error_id=None):
        super().__init__(message)
        self.error_id = error_id


def _is_error(answer):
    return isinstance(answer, dict) and "id" in answer and "message" in answer


def body(answer, key=None, what=""):
    """The `key` of an answer (the answer itself without a key); an error body raises ErrorAnswer."""
    if key is None:
        if _is_error(answer):
            raise ErrorAnswer(f"{what}: DigitalOcean answered {answer['id']}: {answer['message']}", answer["id"])
        return answer
    if isinstance(answer, dict) and key in answer:
        return answer[key]
    detail = answer.get("message") or answer.get("error") if isinstance(answer, dict) else answer
    error_id = answer.get("id") if isinstance(answer, dict) else None
    raise ErrorAnswer(f"{what}: DigitalOcean answered {error_id or 'without ' + key}: {detail}", error_id)
