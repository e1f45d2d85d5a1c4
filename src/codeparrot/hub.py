"""Pushing a folder (dataset, model, checkpoint) to the Hugging Face Hub.

The token comes from HF_TOKEN (or huggingface_hub's own login) and is never printed or written:
errors name the repository, the file and the account, never the token. The endpoint is
HF_ENDPOINT (the real Hub by default). An unchanged folder makes no commit (the client compares
each file with the remote one); an interrupted push re-sends only what had not arrived (LFS and
Xet objects already on the Hub are skipped).
"""

import logging
import os
import re
import time
from pathlib import Path

from codeparrot.raw import write_json

log = logging.getLogger(__name__)

PUSH_ATTEMPTS = 3  # each HTTP request is already retried 5 times by huggingface_hub
PUSH_BACKOFF_SECONDS = 10.0


class HubPushError(RuntimeError):
    """A push that cannot succeed as configured; the message says what to change."""


def hub_api(repo_id: str):
    """An HfApi on HF_ENDPOINT with the user's token; a clear error when there is none."""
    from huggingface_hub import HfApi, get_token

    token = os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise HubPushError(f"Pushing to {repo_id} needs a Hugging Face token with write access: "
                           "set HF_TOKEN or run `hf auth login`.")
    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)


def check_write_access(api, repo_id: str) -> None:
    """Fail before any upload when the token is read-only or the namespace is not the user's."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        me = api.whoami()
    except HfHubHTTPError as error:
        raise HubPushError(f"The Hugging Face token was refused ({error.response.status_code}) by "
                           f"{api.endpoint}: set HF_TOKEN to a valid token to push to {repo_id}.") from None
    role = me.get("auth", {}).get("accessToken", {}).get("role")
    if role == "read":
        raise HubPushError(f"The Hugging Face token of {me['name']} is read-only: pushing to {repo_id} needs a "
                           "token with the write role (huggingface.co/settings/tokens).")
    namespaces = [me["name"], *(org["name"] for org in me.get("orgs", []))]
    namespace, name = repo_id.split("/", 1)
    if namespace not in namespaces:
        raise HubPushError(f"{repo_id} is in the namespace {namespace}, which the token of {me['name']} cannot write "
                           f"to (its namespaces: {', '.join(namespaces)}): use e.g. {me['name']}/{name}.")


def failed_file(error: BaseException) -> str | None:
    """The repository path an upload error is about, if the client said."""
    while error is not None:
        if match := re.search(r"uploading '([^']+)'", str(error)):
            return match.group(1)
        error = error.__cause__ or error.__context__
    return None


def root_cause(error: BaseException) -> str:
    """`Type: first line` of the innermost exception (the wrappers only say that an upload failed)."""
    while (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"


def is_transient(error: BaseException) -> bool:
    """A network failure or a server-side (5xx / 429) answer: worth another try."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    while error is not None:
        if isinstance(error, (httpx2.TransportError, ConnectionError, TimeoutError)):
            return True
        if isinstance(error, HfHubHTTPError) and error.response is not None:
            return error.response.status_code >= 500 or error.response.status_code == 429
        error = error.__cause__ or error.__context__
    return False


def permission_error(error: BaseException, repo_id: str) -> HubPushError | None:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError) and error.response is not None and error.response.status_code in (401, 403):
        message = error.response.headers.get("X-Error-Message") or str(error).splitlines()[0]
        return HubPushError(f"The Hub refused the push to {repo_id} ({error.response.status_code}): {message}")
    return None


def push_folder(folder: str, repo_id: str, repo_type: str, receipt_path: str, revision: str | None = None,
                commit_message: str | None = None, attempts: int = PUSH_ATTEMPTS,
                backoff: float = PUSH_BACKOFF_SECONDS) -> dict:
    """Create `repo_id` if needed, upload `folder` to it (on branch `revision`, created from main if
    needed) and write the receipt (where it went and the commit id, JSON) to `receipt_path`."""
    api = hub_api(repo_id)
    check_write_access(api, repo_id)
    name = os.path.basename(os.path.normpath(folder))
    message = commit_message or f"Upload {name} from the CodeParrot workflow"
    for attempt in range(1, attempts + 1):
        try:
            api.create_repo(repo_id, repo_type=repo_type, exist_ok=True)
            if revision:
                api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
            commit = api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type=repo_type, revision=revision,
                                       commit_message=message)
            break
        except Exception as error:
            if denied := permission_error(error, repo_id):
                raise denied from None
            where = failed_file(error) or f"{name}/"
            if not is_transient(error):
                raise
            first_line = root_cause(error)
            if attempt == attempts:
                raise HubPushError(f"Pushing to {repo_type} {repo_id} failed after {attempts} attempts at {where}: "
                                   f"{first_line}") from None
            wait = backoff * 2 ** (attempt - 1)
            log.warning("push to %s failed at %s (%s); retrying in %.0f s", repo_id, where, first_line, wait)
            time.sleep(wait)
    files = sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())
    receipt = {"repo_id": repo_id, "repo_type": repo_type, "revision": revision or "main", "commit": commit.oid,
               "commit_url": commit.commit_url, "files": files}
    write_json(receipt_path, receipt, sort_keys=True)
    log.info("pushed %s to %s (%s) at commit %s", folder, repo_id, revision or "main", commit.oid)
    return receipt
