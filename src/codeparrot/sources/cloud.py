"""Google Cloud failures the user fixes (credentials, names, permissions, quota), as one-line errors.

The client libraries raise tracebacks headed by `404 GET https://storage.googleapis.com/...`;
`cloud_errors` turns the common ones into a CloudError that names the resource, the config key
and what to do, and the rule scripts show it as one line (codeparrot.logs.redirect_to_log).
"""

import contextlib

from codeparrot.logs import UserError

QUOTA_REASONS = ("quotaExceeded", "rateLimitExceeded", "billingNotEnabled", "bytesBilledLimitExceeded",
                 "billingTierLimitExceeded", "accessDenied: Quota")


class CloudError(UserError):
    """A cloud request refused for a reason the user can fix; the message says how."""


def _reason(error) -> str:
    reasons = [e.get("reason", "") for e in getattr(error, "errors", None) or [] if isinstance(e, dict)]
    return ", ".join(r for r in reasons if r) or type(error).__name__


def _first_line(error) -> str:
    return str(getattr(error, "message", error)).strip().splitlines()[0][:200]


@contextlib.contextmanager
def cloud_errors(resource: str, keys: str):
    """Translate the client errors raised in the block for `resource` (e.g. gs://bucket/prefix);
    `keys`: the config keys that name it."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    try:
        yield
    except (auth.DefaultCredentialsError, auth.RefreshError) as error:
        raise CloudError(
            f"{resource}: no usable Google Cloud credentials ({_first_line(error)}); run "
            "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS to a service account "
            "key file."
        ) from None
    except (api.TooManyRequests, api.ResourceExhausted) as error:
        raise CloudError(f"{resource}: quota or rate limit exceeded ({_reason(error)}: {_first_line(error)}); "
                         "wait and rerun, or raise the project's quota.") from None
    except (api.Forbidden, api.BadRequest) as error:
        text = f"{_reason(error)} {_first_line(error)}"
        if any(r.lower() in text.lower() for r in QUOTA_REASONS) or "quota" in text.lower():
            raise CloudError(f"{resource}: refused by quota or budget ({_reason(error)}: {_first_line(error)}); "
                             "raise the quota/billing limit of the project (or source.bigquery.maximum_bytes_billed), "
                             "then rerun.") from None
        if isinstance(error, api.BadRequest):
            raise
        raise CloudError(f"{resource}: permission denied ({_first_line(error)}); give the credentials' account access "
                         "(roles/storage.objectViewer to read a bucket, bigquery.jobUser to query), "
                         f"or check {keys}.") from None
    except api.NotFound as error:
        raise CloudError(f"{resource}: not found ({_first_line(error)}); check {keys}.") from None
