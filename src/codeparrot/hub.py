"""Pushing a folder (dataset, model, checkpoint) to the Hugging Face Hub."""

import os

from codeparrot.raw import write_json


def push_folder(folder: str, repo_id: str, repo_type: str, receipt_path: str, revision: str | None = None) -> dict:
    """Create `repo_id` if needed, upload `folder` to it (on branch `revision` if given) and write
    the receipt (where it went, JSON) to `receipt_path`, the push rule's output.

    The token comes from HF_TOKEN (or huggingface_hub's own login) and is never printed.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=os.environ.get("HF_TOKEN"))
    if api.token is None and not os.environ.get("HF_TOKEN"):
        from huggingface_hub import get_token

        if get_token() is None:
            raise RuntimeError(
                f"Pushing to {repo_id} needs a Hugging Face token: set HF_TOKEN or run `hf auth login`."
            )
    api.create_repo(repo_id, repo_type=repo_type, exist_ok=True)
    if revision:
        api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
    commit = api.upload_folder(
        folder_path=folder, repo_id=repo_id, repo_type=repo_type, revision=revision,
        commit_message=f"Upload {os.path.basename(os.path.normpath(folder))} from the CodeParrot workflow",
    )
    receipt = {"repo_id": repo_id, "repo_type": repo_type, "revision": revision, "commit_url": str(commit)}
    write_json(receipt_path, receipt, sort_keys=True)
    return receipt
