"""Row formats (`datasets[].format`): each is read, rendered with the chat template (raw text without one) and masked
as peer-semantics.md §4 says, checked token by token through the real SFT data pipeline."""

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


def test_alpaca_with_and_without_input(tmp_path, tokenizer):
    rows = [
        {"instruction": "Name the capital.", "input": "Vasren", "output": "Yorren."},
        {"instruction": "Say hi.", "input": "", "output": "Hi."},
        {"instruction": "Say yo.", "output": "Yo."},
    ]
    (first, second, third) = tokenized(tmp_path, tokenizer, "alpaca", rows)
    with_input = ALPACA_PROMPT_WITH_INPUT.format(instruction="Name the capital.", input="Vasren")
    assert with_input.endswith("### Input:\nVasren\n\n### Response:\n")
    assert first == chat_ml(tokenizer, with_input, "Yorren.")
    assert second == chat_ml(tokenizer, ALPACA_PROMPT.format(instruction="Say hi."), "Hi.")
    assert third == chat_ml(tokenizer, ALPACA_PROMPT.format(instruction="Say yo."), "Yo.")


def test_oasst_is_alpaca_without_input(tmp_path, tokenizer):
    (example,) = tokenized(tmp_path, tokenizer, "oasst", [{"INSTRUCTION": "Say hi.", "RESPONSE": "Hi."}])
    assert example == chat_ml(tokenizer, ALPACA_PROMPT.format(instruction="Say hi."), "Hi.")


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


def test_prompt_completion_strings_and_conversational(tmp_path, tokenizer):
    rows = [
        {"prompt": "Hi", "completion": "Yo"},
        {
            "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            "completion": [{"role": "assistant", "content": "Yo"}],
        },
    ]
    plain, conversational = tokenized(tmp_path, tokenizer, "prompt_completion", rows)
    assert plain == chat_ml(tokenizer, "Hi", "Yo")
    assert conversational == chat_ml(tokenizer, "Hi", "Yo", system="Be brief.")


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
