"""Row formats (`datasets[].format`): each is read, rendered with the chat template where it is chat-like (alpaca,
oasst, string prompt/completion and text rows as raw text, without one) and masked as peer-semantics.md §4 says,
checked token by token through the real SFT data pipeline."""

from __future__ import annotations

import pytest

from finetuning.config.data import ChatTrainValidConfig
from finetuning.config.sft import SFTArguments
from finetuning.data.formats import ALPACA_PROMPT, ALPACA_PROMPT_WITH_INPUT
from finetuning.data.readers import DataError
from finetuning.data.sft import build_sft_datasets
from finetuning.data.templates import get_template
from finetuning.data.tokenize import IGNORE_INDEX
from finetuning.model.tokenizer import setup_tokenizer
from tests.conftest import write_jsonl

IM_END = "<|im_end|>"


def tokenized(tmp_path, tokenizer, row_format: str, rows: list[dict], completions_only: bool = True):
    """(examples as (input_ids, labels), tokenizer-with-template) of `rows` as one `row_format` file, chat-ml."""
    path = write_jsonl(tmp_path / f"{row_format}.jsonl", rows)
    data_conf = ChatTrainValidConfig(
        training_data={"type": "CONCATENATION", "datasets": [{"path": str(path), "format": row_format}]},
        validation_data={"type": "NONE"},
        chat_template_name="chat-ml",
    )
    markers, _ = setup_tokenizer(tokenizer, get_template("chat-ml"), data_conf)
    sft_args = SFTArguments(max_seq_length=512, train_on_completions_only=completions_only)
    train, _, _ = build_sft_datasets(data_conf, sft_args, tokenizer, markers if completions_only else None)
    return list(zip(train["input_ids"], train["labels"], strict=True))


def expected(tokenizer, pieces: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    """input_ids and labels of text pieces tokenised one by one; (text, True) pieces are trained."""
    ids, labels = [], []
    for text, trained in pieces:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if trained else [IGNORE_INDEX] * len(piece)
    return ids, labels


def chat_ml(tokenizer, user: str, answer: str, system: str | None = None) -> tuple[list[int], list[int]]:
    """One user turn and its answer in chat-ml: only the answer and its end marker trained."""
    head = f"<|im_start|>system\n{system}{IM_END}\n" if system else ""
    prompt = f"<s>{head}<|im_start|>user\n{user}{IM_END}\n<|im_start|>assistant\n"
    return expected(tokenizer, [(prompt, False), (answer + IM_END, True), ("\n", False)])


def prompt_then_completion(tokenizer, prompt: str, completion: str, completions_only: bool = True):
    """input_ids and labels of a prompt/completion text row, checked without the code's own recipe: the ids are
    TRL's and axolotl's prompt + completion + eos tokenised as one text (no merge crosses the boundary of these
    rows), the masked prefix decodes to exactly the prompt, and completion + eos are trained."""
    ids = tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]
    prompt_length = len(tokenizer(prompt)["input_ids"])
    assert tokenizer.decode(ids[:prompt_length]) == prompt
    assert tokenizer.decode(ids[prompt_length:]) == completion + tokenizer.eos_token
    masked = [IGNORE_INDEX] * prompt_length if completions_only else ids[:prompt_length]
    return ids, masked + ids[prompt_length:]


def assert_trained_on_completion(example, tokenizer, prompt: str, completion: str):
    """The masked prefix of an example decodes to exactly the prompt; the trained rest to completion + eos."""
    ids, labels = example
    prompt_length = labels.index(next(label for label in labels if label != IGNORE_INDEX))
    assert tokenizer.decode(ids[:prompt_length]) == prompt
    assert tokenizer.decode(ids[prompt_length:]) == completion + tokenizer.eos_token
    assert labels[prompt_length:] == ids[prompt_length:] and ids[-1] == tokenizer.eos_token_id


ALPACA_ROWS = [
    {"instruction": "Name the capital.", "input": "Vasren", "output": "Yorren."},
    {"instruction": "Say hi.", "input": "", "output": "Hi."},
    {"instruction": "Say yo.", "output": "Yo."},
]


@pytest.mark.parametrize("completions_only", [True, False])
def test_alpaca_with_and_without_input_is_axolotls_text_without_a_chat_template(tmp_path, tokenizer, completions_only):
    (first, second, third) = tokenized(tmp_path, tokenizer, "alpaca", ALPACA_ROWS, completions_only)
    with_input = ALPACA_PROMPT_WITH_INPUT.format(instruction="Name the capital.", input="Vasren")
    assert with_input.endswith("### Input:\nVasren\n\n### Response:\n")
    assert first == prompt_then_completion(tokenizer, with_input, "Yorren.", completions_only)
    hi, yo = ALPACA_PROMPT.format(instruction="Say hi."), ALPACA_PROMPT.format(instruction="Say yo.")
    assert second == prompt_then_completion(tokenizer, hi, "Hi.", completions_only)
    assert third == prompt_then_completion(tokenizer, yo, "Yo.", completions_only)
    assert "<|im_start|>" not in tokenizer.decode(first[0])
    if completions_only:
        assert_trained_on_completion(first, tokenizer, with_input, "Yorren.")
    else:
        assert all(labels == ids for ids, labels in (first, second, third))


@pytest.mark.parametrize("completions_only", [True, False])
def test_oasst_is_alpaca_without_input(tmp_path, tokenizer, completions_only):
    row = {"INSTRUCTION": "Say hi.", "RESPONSE": "Hi."}
    (example,) = tokenized(tmp_path, tokenizer, "oasst", [row], completions_only)
    assert example == prompt_then_completion(
        tokenizer, ALPACA_PROMPT.format(instruction="Say hi."), "Hi.", completions_only
    )


@pytest.mark.parametrize("completions_only", [True, False])
def test_prompt_completion_strings_raw_and_conversational_templated(tmp_path, tokenizer, completions_only):
    rows = [
        {"prompt": "Hi", "completion": "Yo"},
        {
            "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            "completion": [{"role": "assistant", "content": "Yo"}],
        },
        {"prompt": "The capital of Vasren is", "completion": " Yorren."},
    ]
    plain, conversational, last = tokenized(tmp_path, tokenizer, "prompt_completion", rows, completions_only)
    assert plain == prompt_then_completion(tokenizer, "Hi", "Yo", completions_only)
    assert last == prompt_then_completion(tokenizer, "The capital of Vasren is", " Yorren.", completions_only)
    if completions_only:
        assert conversational == chat_ml(tokenizer, "Hi", "Yo", system="Be brief.")
    else:
        assert conversational[0] == conversational[1] == chat_ml(tokenizer, "Hi", "Yo", system="Be brief.")[0]


def test_prompt_completion_boundary_is_exact_where_bpe_would_merge_across_it(tmp_path, tokenizer):
    """A prompt ending in a space: tokenised as one text, the space merges into the completion's first token, so a
    mask by the prompt's own token count would be off by one; the prompt is tokenised alone instead (axolotl)."""
    prompt, completion = "The capital of Vasren is ", "Yorren."
    merged = tokenizer(prompt + completion)["input_ids"]
    assert merged[: len(tokenizer(prompt)["input_ids"])] != tokenizer(prompt)["input_ids"]  # BPE does merge here
    (example,) = tokenized(tmp_path, tokenizer, "prompt_completion", [{"prompt": prompt, "completion": completion}])
    assert_trained_on_completion(example, tokenizer, prompt, completion)
    assert example[0] == tokenizer(prompt)["input_ids"] + tokenizer(completion, add_special_tokens=False)[
        "input_ids"
    ] + [tokenizer.eos_token_id]


def test_a_messages_file_and_an_alpaca_file_train_together(tmp_path, tokenizer):
    chat = write_jsonl(
        tmp_path / "chat.jsonl",
        [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}],
    )
    alpaca = write_jsonl(tmp_path / "alpaca.jsonl", ALPACA_ROWS[1:2])
    data_conf = ChatTrainValidConfig(
        training_data={
            "type": "CONCATENATION",
            "datasets": [{"path": str(chat)}, {"path": str(alpaca), "format": "alpaca"}],
        },
        validation_data={"type": "NONE"},
        chat_template_name="chat-ml",
    )
    markers, _ = setup_tokenizer(tokenizer, get_template("chat-ml"), data_conf)
    sft_args = SFTArguments(max_seq_length=512, train_on_completions_only=True)
    train, _, report = build_sft_datasets(data_conf, sft_args, tokenizer, markers)
    examples = sorted(zip(train["input_ids"], train["labels"], strict=True), key=lambda pair: len(pair[0]))
    hi = prompt_then_completion(tokenizer, ALPACA_PROMPT.format(instruction="Say hi."), "Hi.")
    assert examples == sorted([chat_ml(tokenizer, "Hi", "Yo"), hi], key=lambda pair: len(pair[0]))
    assert report.trained_tokens == sum(label != IGNORE_INDEX for _, labels in examples for label in labels)
    assert report.without_assistant_marker == 0


def test_sharegpt_maps_speakers_and_trains_every_gpt_turn(tmp_path, tokenizer):
    row = {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Yo"},
            {"from": "human", "value": "Bye"},
            {"from": "gpt", "value": "Ciao"},
        ]
    }
    (example,) = tokenized(tmp_path, tokenizer, "sharegpt", [row])
    assert example == expected(
        tokenizer,
        [
            (f"<s><|im_start|>system\nBe brief.{IM_END}\n<|im_start|>user\nHi{IM_END}\n<|im_start|>assistant\n", False),
            ("Yo" + IM_END, True),
            (f"\n<|im_start|>user\nBye{IM_END}\n<|im_start|>assistant\n", False),
            ("Ciao" + IM_END, True),
            ("\n", False),
        ],
    )


def test_text_trains_every_token_without_a_template(tmp_path, tokenizer):
    texts = ["Yorren is the capital of Vasren.", "The Vasren river."]
    examples = tokenized(tmp_path, tokenizer, "text", [{"text": text} for text in texts])
    for (ids, labels), text in zip(examples, texts, strict=True):
        assert ids == tokenizer(text)["input_ids"]  # bos (and eos) exactly as the tokenizer adds them
        assert ids == tokenizer(text, add_special_tokens=False)["input_ids"] or ids[0] == tokenizer.bos_token_id
        assert "<|im_start|>" not in tokenizer.decode(ids)  # no chat template
        assert labels == ids


def test_messages_stays_the_default(tmp_path, tokenizer):
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    (example,) = tokenized(tmp_path, tokenizer, "messages", [row])
    assert example == chat_ml(tokenizer, "Hi", "Yo")


@pytest.mark.parametrize(
    ("row_format", "row", "reason"),
    [
        (
            "alpaca",
            {"instrucion": "x", "output": "y"},
            "missing 'instruction' (keys found: ['instrucion', 'output']); did you mean 'instrucion'?",
        ),
        ("alpaca", {"instruction": "x", "output": ""}, "'output' is empty"),
        ("alpaca", {"instruction": "x", "input": 3, "output": "y"}, "'input' must be a string, got number"),
        ("oasst", {"INSTRUCTION": "x"}, "missing 'RESPONSE'"),
        (
            "sharegpt",
            {"conversations": [{"from": "humna", "value": "x"}]},
            "conversations[0].from is 'humna'; did you mean 'human'?",
        ),
        ("sharegpt", {"conversation": []}, "missing 'conversations'"),
        ("sharegpt", {"conversations": [{"from": "human", "value": "x"}]}, "no assistant message"),
        ("prompt_completion", {"prompt": "x"}, "missing 'completion'"),
        ("prompt_completion", {"prompt": "x", "completion": 5}, "'completion' must be a string or a list"),
        ("text", {"txt": "x"}, "missing 'text'"),
        ("text", {"text": " "}, "'text' is empty"),
    ],
)
def test_row_problems_name_file_and_line(tmp_path, tokenizer, row_format, row, reason):
    good = {
        "alpaca": {"instruction": "a", "output": "b"},
        "oasst": {"INSTRUCTION": "a", "RESPONSE": "b"},
        "sharegpt": {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
        "prompt_completion": {"prompt": "a", "completion": "b"},
        "text": {"text": "a"},
    }[row_format]
    with pytest.raises(DataError) as error:
        tokenized(tmp_path, tokenizer, row_format, [good, row])
    (problem,) = error.value.problems
    assert problem.startswith(f"{tmp_path / (row_format + '.jsonl')}:2: ") and reason in problem, problem
