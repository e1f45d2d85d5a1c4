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
import shutil
import threading
import time
from pathlib import Path

from codeparrot.atomic import commit
from codeparrot.logs import UserError
from codeparrot.raw import write_json

log = logging.getLogger(__name__)

PUSH_ATTEMPTS = 3  # each HTTP request is already retried 5 times by huggingface_hub
PUSH_BACKOFF_SECONDS = 10.0


class HubPushError(UserError):
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


def push_folder(folder: str, repo_id: str, repo_type: str, receipt_path: str | None, revision: str | None = None,
                commit_message: str | None = None, path_in_repo: str | None = None, api=None,
                attempts: int = PUSH_ATTEMPTS, backoff: float = PUSH_BACKOFF_SECONDS) -> dict:
    """Create `repo_id` if needed, upload `folder` to it (into `path_in_repo`, replacing what was
    there, on branch `revision`, created from main if needed) and write the receipt (where it went
    and the commit id, JSON) to `receipt_path` if given."""
    if api is None:
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
                                       commit_message=message, path_in_repo=path_in_repo,
                                       delete_patterns="*" if path_in_repo else None)
            break
        except Exception as error:
            if denied := permission_error(error, repo_id):
                raise denied from None
            where = failed_file(error) or f"{name}/"
            if re.search(r"\(4\d\d [^)]*\).*/xet-write-token/", root_cause(error)):
                raise HubPushError(f"{api.endpoint} refuses Xet uploads to {repo_id} (not Xet-enabled): set "
                                   "HF_HUB_DISABLE_XET=1 to upload with basic LFS.") from None
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
    if receipt_path:
        write_json(receipt_path, receipt, sort_keys=True)
    log.info("pushed %s to %s (%s) at commit %s", folder, repo_id, revision or "main", commit.oid)
    return receipt


CHECKPOINT_FOLDER = "last-checkpoint"  # where transformers' Trainer keeps the checkpoint it pushes


class CheckpointPusher:
    """Commits each checkpoint to `last-checkpoint/` on the run's branch, in a background thread
    (the training loop does not wait for the upload); a push first waits for the previous one.

    Disabled (every call a no-op) when `repo_id` is None, e.g. on the processes other than the
    main one. Token and access are checked at once, so a bad token stops the run before it
    trains; a push that fails during training is logged and the run goes on (its checkpoints
    are on disk and the trained model is pushed by the rule push_train_model).
    """

    def __init__(self, repo_id: str | None, branch: str, staging_dir: str | Path):
        self.repo_id, self.branch, self.staging = repo_id, branch, Path(staging_dir)
        self.thread: threading.Thread | None = None
        self.commits: list[str] = []
        if repo_id:
            self.api = hub_api(repo_id)
            check_write_access(self.api, repo_id)

    def push(self, checkpoint: Path, step: int) -> None:
        if not self.repo_id:
            return
        self.wait()
        # Hard links: the checkpoint may be pruned (train.keep_last) while its upload runs.
        shutil.rmtree(self.staging, ignore_errors=True)
        shutil.copytree(checkpoint, self.staging, copy_function=os.link)
        self.thread = threading.Thread(target=self._push, args=(step,), name="checkpoint-push", daemon=True)
        self.thread.start()

    def _push(self, step: int) -> None:
        try:
            receipt = push_folder(str(self.staging), self.repo_id, "model", None, revision=self.branch, api=self.api,
                                  commit_message=f"Checkpoint at step {step}", path_in_repo=CHECKPOINT_FOLDER)
            self.commits.append(receipt["commit"])
        except Exception as error:  # the run goes on: see the class docstring
            log.warning("checkpoint of step %d was not pushed to %s: %s", step, self.repo_id, root_cause(error))

    def wait(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None

    def close(self) -> None:
        self.wait()
        shutil.rmtree(self.staging, ignore_errors=True)


def pull_checkpoint(repo_id: str, branch: str, checkpoint_dir: str | Path, revision: str | None = None) -> Path:
    """Download the checkpoint pushed to `branch` (or to commit `revision` of it) into
    `checkpoint_dir`, under the name a rerun of the training resumes from; return its path."""
    import json

    from huggingface_hub import snapshot_download

    from codeparrot.train.checkpoints import STATE_FILE, checkpoint_name

    token = os.environ.get("HF_TOKEN") or None
    local = Path(checkpoint_dir) / ".pulled"
    shutil.rmtree(local, ignore_errors=True)
    snapshot_download(repo_id, revision=revision or branch, allow_patterns=f"{CHECKPOINT_FOLDER}/*",
                      local_dir=local, token=token, endpoint=os.environ.get("HF_ENDPOINT") or None)
    pulled = local / CHECKPOINT_FOLDER
    if not (pulled / STATE_FILE).is_file():
        raise HubPushError(f"{repo_id}@{revision or branch} has no complete checkpoint in {CHECKPOINT_FOLDER}/")
    target = Path(checkpoint_dir) / checkpoint_name(json.loads((pulled / STATE_FILE).read_text())["step"])
    commit(pulled, target)
    shutil.rmtree(local)
    return target
