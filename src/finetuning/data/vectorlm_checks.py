"""What can be known of `data_conf.preprocess` (data/vectorlm.py) before it runs, without loading anything: the
settings it cannot honour with this max_seq_length, and which dataset entries wait for it to write their data (those
are checked once written: `finetuning validate` says so, `finetuning sft` runs the preprocessing first)."""

from __future__ import annotations

from ..paths import resolve_user_path

KEY = "data_conf.preprocess"
LENGTH_KEY = "sft_args.max_seq_length"


def chunk_size(conf, max_seq_len: int) -> int:
    """Tokens of one packing window before bos/eos wrap it."""
    return max_seq_len - 2 if conf.add_bos_eos_tokens else max_seq_len


def preprocess_problems(conf, max_seq_len: int) -> list[str]:
    """What the preprocess section cannot do with this max_seq_length (a cross-section check the schema cannot make)."""
    problems = []
    if conf.packing_type is not None:
        size = chunk_size(conf, max_seq_len)
        room = " less bos and eos" if conf.add_bos_eos_tokens else ""
        if size < 1:
            problems.append(f"{LENGTH_KEY}: {max_seq_len} leaves no room for tokens between bos and eos in a chunk")
        elif conf.overlap >= size:
            problems.append(
                f"{KEY}.overlap: {conf.overlap} must be less than the chunk size, {LENGTH_KEY} ({max_seq_len}){room} "
                f"= {size}: each chunk must move on by at least one token"
            )
    if resolve_user_path(conf.load_path) == resolve_user_path(conf.save_path):
        problems.append(f"{KEY}.save_path: is load_path: the preprocessing would replace its own input")
    return problems


def preprocess_config_problems(cfg) -> list[str]:
    """`preprocess_problems` of an SFT config's data_conf.preprocess (none without one): the pre-flight's check."""
    conf = cfg.data_conf.preprocess
    return [] if conf is None else preprocess_problems(conf, cfg.sft_args.max_seq_length)


def _written_by_preprocess(entry, target) -> bool:
    return entry.format == "tokenized" and resolve_user_path(entry.path) == target


def waiting_entries(data_conf) -> list[str]:
    """Config keys of the `format: tokenized` entries whose path is data_conf.preprocess.save_path while that does
    not exist yet: the preprocessing produces them (`finetuning sft` runs it first; `validate` says so)."""
    conf = getattr(data_conf, "preprocess", None)
    if conf is None:
        return []
    target = resolve_user_path(conf.save_path)
    if target.exists():
        return []
    inputs = [("data_conf.training_data", data_conf.training_data)]
    if data_conf.validation_data.type == "CONCATENATION":
        inputs.append(("data_conf.validation_data", data_conf.validation_data))
    return [
        f"{where}.datasets[{index}].path"
        for where, data_input in inputs
        for index, entry in enumerate(data_input.datasets)
        if _written_by_preprocess(entry, target)
    ]


def without_waiting_entries(data_conf):
    """A copy of data_conf without the entries `waiting_entries` names: what can be checked before preprocessing."""
    if not waiting_entries(data_conf):
        return data_conf
    target = resolve_user_path(data_conf.preprocess.save_path)

    def kept(data_input):
        if not hasattr(data_input, "datasets"):  # AUTO_SPLIT, NONE
            return data_input
        datasets = [entry for entry in data_input.datasets if not _written_by_preprocess(entry, target)]
        return data_input.model_copy(update={"datasets": datasets})

    return data_conf.model_copy(
        update={"training_data": kept(data_conf.training_data), "validation_data": kept(data_conf.validation_data)}
    )


def waiting_note(data_conf) -> str | None:
    """The line `finetuning validate` prints instead of checking data that the preprocessing will write."""
    keys = waiting_entries(data_conf)
    if not keys:
        return None
    return (
        f"{', '.join(keys)}: {resolve_user_path(data_conf.preprocess.save_path)} does not exist yet; "
        "data_conf.preprocess writes it (`finetuning preprocess`, or `finetuning sft`, which runs it first), "
        "and its rows are checked then"
    )
