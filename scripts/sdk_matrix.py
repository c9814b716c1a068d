"""The tinker SDK compatibility matrix of ``kitchen serve``, generated from the installed SDK.

Lists every public method of ``ServiceClient``, ``TrainingClient``, ``SamplingClient`` and
``RestClient`` with kitchen's status and the test that proves it, and writes it into
``docs/remote.md`` between the ``sdk-matrix`` markers::

    python scripts/sdk_matrix.py          # rewrite the table
    python scripts/sdk_matrix.py --check  # exit 1 when the docs are stale or a method is new

``tests/remote/test_sdk_matrix.py`` runs the check, so an SDK upgrade that adds a method
fails until the method is classified here. ``foo_async`` shares ``foo``'s row status.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "remote.md"
START, END = "<!-- sdk-matrix:start -->", "<!-- sdk-matrix:end -->"
CLASSES = ("ServiceClient", "TrainingClient", "SamplingClient", "RestClient")

T = "tests/remote/"
SDK = T + "test_serve_sdk.py::"
COMPAT = T + "test_serve_tinker_compat.py::"
HF = T + "test_serve_hf_compat.py::"
COOK = "tests/cookbook/test_cookbook.py::"
CLIENT_SIDE = ("client-side", "runs in the SDK; no server call")

#: "Class.method" -> (status, proving test or reason). Status: yes | no | client-side.
STATUS: dict[str, tuple[str, str]] = {
    # ServiceClient
    "ServiceClient.close": ("yes", SDK + "test_sft_steps_reduce_loss_and_match_in_process"),
    "ServiceClient.copy_weights": ("no", "weight copying between runs is not implemented"),
    "ServiceClient.create_custom_loss": (
        "no",
        "server-side registered losses; use forward_backward_custom",
    ),
    "ServiceClient.create_lora_training_client": (
        "yes",
        SDK + "test_sft_steps_reduce_loss_and_match_in_process",
    ),
    "ServiceClient.create_rest_client": (
        "yes",
        COMPAT + "test_weights_info_user_checkpoints_ttl_and_sampler_info",
    ),
    "ServiceClient.create_sampling_client": ("yes", SDK + "test_sampling"),
    "ServiceClient.create_training_client_from_state": (
        "yes",
        COMPAT + "test_load_without_optimizer_starts_a_fresh_adam",
    ),
    "ServiceClient.create_training_client_from_state_with_optimizer": (
        "yes",
        SDK + "test_save_load_round_trip",
    ),
    "ServiceClient.get_console_url": ("no", "there is no Tinker console"),
    "ServiceClient.get_server_capabilities": (
        "yes",
        COMPAT + "test_capabilities_and_the_legacy_load_state_calls",
    ),
    "ServiceClient.get_telemetry": CLIENT_SIDE,
    # TrainingClient
    "TrainingClient.create_sampling_client": (
        "yes",
        COMPAT + "test_weights_info_user_checkpoints_ttl_and_sampler_info",
    ),
    "TrainingClient.forward": ("yes", SDK + "test_forward_matches_per_datum_logprobs"),
    "TrainingClient.forward_backward": (
        "yes",
        COMPAT + "test_every_policy_loss_over_the_sdk_matches_in_process",
    ),
    "TrainingClient.forward_backward_custom": ("yes", COOK + "test_train_dpo"),
    "TrainingClient.get_console_url": ("no", "there is no Tinker console"),
    "TrainingClient.get_info": ("yes", SDK + "test_sft_steps_reduce_loss_and_match_in_process"),
    "TrainingClient.get_telemetry": CLIENT_SIDE,
    "TrainingClient.get_tokenizer": (
        "yes",
        HF + "test_clients_hand_out_the_served_models_tokenizer",
    ),
    "TrainingClient.load_state": (
        "yes",
        "deprecated by the SDK; " + COMPAT + "test_capabilities_and_the_legacy_load_state_calls",
    ),
    "TrainingClient.load_state_with_optimizer": (
        "yes",
        "deprecated by the SDK; " + COMPAT + "test_capabilities_and_the_legacy_load_state_calls",
    ),
    "TrainingClient.optim_step": ("yes", COMPAT + "test_optim_step_metrics_have_no_step_counter"),
    "TrainingClient.save_state": ("yes", SDK + "test_save_load_round_trip"),
    "TrainingClient.save_weights_and_get_sampling_client": ("yes", SDK + "test_sampling"),
    "TrainingClient.save_weights_external": ("yes", COOK + "test_weights_download"),
    "TrainingClient.save_weights_for_sampler": (
        "yes",
        HF + "test_sampler_weights_load_for_sampling",
    ),
    # SamplingClient
    "SamplingClient.compute_logprobs": ("yes", SDK + "test_sampling"),
    "SamplingClient.create": (
        "yes",
        "what ServiceClient.create_sampling_client calls: " + SDK + "test_sampling",
    ),
    "SamplingClient.from_sampler_handle": CLIENT_SIDE,
    "SamplingClient.get_base_model": (
        "yes",
        COMPAT + "test_weights_info_user_checkpoints_ttl_and_sampler_info",
    ),
    "SamplingClient.get_sampler_handle": CLIENT_SIDE,
    "SamplingClient.get_telemetry": CLIENT_SIDE,
    "SamplingClient.get_tokenizer": (
        "client-side",
        "loads the base model's name like a hub id (a local directory of that name works): "
        + HF
        + "test_clients_hand_out_the_served_models_tokenizer",
    ),
    "SamplingClient.on_queue_state_change": CLIENT_SIDE,
    "SamplingClient.sample": ("yes", HF + "test_string_stop_sequences_use_the_models_tokenizer"),
    # RestClient
    "RestClient.assign_session_project": ("no", "no projects"),
    "RestClient.copy_weights": ("no", "weight copying between runs is not implemented"),
    "RestClient.delete_checkpoint": (
        "yes",
        COMPAT + "test_training_runs_checkpoints_and_user_metadata",
    ),
    "RestClient.delete_checkpoint_from_tinker_path": (
        "yes",
        COMPAT + "test_training_runs_checkpoints_and_user_metadata",
    ),
    "RestClient.export_session_trace": ("no", "no session traces"),
    "RestClient.get_audit_log": ("no", "no audit log"),
    "RestClient.get_billing_usage": ("no", "no billing"),
    "RestClient.get_current_checkpoint_storage_usage": ("no", "no storage accounting"),
    "RestClient.get_external_weights_urls": ("yes", COOK + "test_weights_download"),
    "RestClient.get_sampler": (
        "yes",
        COMPAT + "test_weights_info_user_checkpoints_ttl_and_sampler_info",
    ),
    "RestClient.get_server_capabilities": (
        "yes",
        COMPAT + "test_capabilities_and_the_legacy_load_state_calls",
    ),
    "RestClient.get_session": ("no", "sessions are not listed"),
    "RestClient.get_telemetry": CLIENT_SIDE,
    "RestClient.get_training_run": (
        "yes",
        COMPAT + "test_training_runs_checkpoints_and_user_metadata",
    ),
    "RestClient.get_training_run_by_tinker_path": (
        "yes",
        COMPAT + "test_training_runs_checkpoints_and_user_metadata",
    ),
    "RestClient.get_weights_info_by_tinker_path": (
        "yes",
        COMPAT + "test_weights_info_user_checkpoints_ttl_and_sampler_info",
    ),
    "RestClient.list_checkpoints": (
        "yes",
        COMPAT + "test_training_runs_checkpoints_and_user_metadata",
    ),
    "RestClient.list_sessions": ("no", "sessions are not listed"),
    "RestClient.list_training_runs": (
        "yes",
        COMPAT + "test_training_runs_checkpoints_and_user_metadata",
    ),
    "RestClient.list_user_checkpoints": (
        "yes",
        COMPAT + "test_weights_info_user_checkpoints_ttl_and_sampler_info",
    ),
    "RestClient.publish_checkpoint_from_tinker_path": ("no", "no publishing"),
    "RestClient.search_sessions": ("no", "sessions are not listed"),
    "RestClient.set_checkpoint_ttl_from_tinker_path": (
        "yes",
        "accepted, not enforced: "
        + COMPAT
        + "test_weights_info_user_checkpoints_ttl_and_sampler_info",
    ),
    "RestClient.unpublish_checkpoint_from_tinker_path": ("no", "no publishing"),
    "RestClient.whoami": ("no", "one token, no users"),
}


def sdk_methods() -> dict[str, list[str]]:
    """Public callables of each client class in the installed SDK, sorted."""
    import tinker

    out = {}
    for name in CLASSES:
        cls = getattr(tinker, name)
        out[name] = sorted(
            n for n, v in inspect.getmembers(cls) if not n.startswith("_") and callable(v)
        )
    return out


def status_of(cls: str, method: str) -> tuple[str, str] | None:
    key = f"{cls}.{method}"
    if key in STATUS:
        return STATUS[key]
    if method.endswith("_async"):
        base = STATUS.get(f"{cls}.{method.removesuffix('_async')}")
        if base is not None:
            return base[0], "async variant of " + method.removesuffix("_async")
    return None


def unclassified() -> list[str]:
    return [f"{c}.{m}" for c, ms in sdk_methods().items() for m in ms if status_of(c, m) is None]


def render() -> str:
    import tinker

    lines = [
        START,
        f"Generated by `python scripts/sdk_matrix.py` from tinker {tinker.__version__}.",
        "",
        "| class | method | kitchen serve | proved by / note |",
        "|---|---|---|---|",
    ]
    for cls, methods in sdk_methods().items():
        for m in methods:
            st = status_of(cls, m) or ("UNCLASSIFIED", "add it to scripts/sdk_matrix.py")
            lines.append(f"| `{cls}` | `{m}` | {st[0]} | {st[1]} |")
    lines.append(END)
    return "\n".join(lines)


def updated(doc: str) -> str:
    if START not in doc or END not in doc:
        raise SystemExit(f"{DOC} has no {START} ... {END} section")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + render() + tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if docs/remote.md is stale")
    args = ap.parse_args(argv)
    missing = unclassified()
    if missing:
        print("unclassified SDK methods: " + ", ".join(missing), file=sys.stderr)
    doc = DOC.read_text(encoding="utf-8")
    new = updated(doc)
    if args.check:
        if new != doc:
            print(f"{DOC} is stale: run python scripts/sdk_matrix.py", file=sys.stderr)
            return 1
        return 1 if missing else 0
    DOC.write_text(new, encoding="utf-8")
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
