# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn every failure into one clear fail_json, the same way in every module."""

from __future__ import annotations

import contextlib

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError
from ansible_collections.lxcri.cloud.plugins.module_utils.wait import WaitTimeout


@contextlib.contextmanager
def failing_clearly(module, provider_name, **context):
    """Run the body; on failure, fail the task with a message that says what went wrong and where."""
    try:
        yield
    except (SpecError, ProviderError, WaitTimeout) as exc:
        module.fail_json(msg=str(exc), **context)
    except Exception as exc:  # an SDK error: name the provider and the error class, keep its message
        module.fail_json(msg=f"{provider_name} API error ({type(exc).__name__}): {exc}", **context)
