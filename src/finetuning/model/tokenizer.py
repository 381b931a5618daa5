"""Tokenizer set-up: load, install the named chat template (adding its special tokens), pad token, inference save.

The training tokenizer and the saved one differ on purpose: what is saved is set up for inference (no eos appended,
eos = the template's assistant end marker), so a served model stops where it was taught to. The saved tokenizer adds
bos only when the chat template does not write it: `tok(tok.apply_chat_template(msgs, tokenize=False))` and
`tok.apply_chat_template(msgs)` then give the same ids, with one bos (a tokenizer that adds bos to text that already
starts with it gives two, and the model never saw two in training).
"""

from __future__ import annotations

import functools
import logging

from ..data.templates import ChatTemplate, Markers, TemplateError, render, resolve_markers

logger = logging.getLogger(__name__)

PAD_SOURCES = {"eos-repurpose": "eos_token", "bos-repurpose": "bos_token", "unk-repurpose": "unk_token"}


def load_tokenizer_from(source: str, key: str, use_fast: bool = True, trust_remote_code: bool = False):
    """AutoTokenizer.from_pretrained; a path or id that holds no tokenizer is a user error naming config key `key`
    (and a local path resolved against the working directory). Remote code runs only when trust_remote_code is set."""
    from transformers import AutoTokenizer

    from .loading import shown_source

    try:
        return AutoTokenizer.from_pretrained(source, use_fast=use_fast, trust_remote_code=bool(trust_remote_code))
    except (OSError, ValueError) as error:
        raise TemplateError(f"{key}: could not load a tokenizer from {shown_source(source)}: {error}") from None


def load_tokenizer(run_conf):
    key = "run_conf.tokenizer" if run_conf.tokenizer else "run_conf.model"
    return load_tokenizer_from(
        run_conf.tokenizer or run_conf.model,
        key,
        use_fast=run_conf.use_fast_tokenizer,
        trust_remote_code=run_conf.model_args.trust_remote_code,
    )


def add_template_tokens(tokenizer, template: ChatTemplate) -> list[str]:
    """Add the template's special tokens the tokenizer lacks, keeping existing extra special tokens; return the new ones."""
    vocab = tokenizer.get_vocab()
    missing = [token for token in template.added_special_tokens if token not in vocab]
    present_but_not_special = [
        token for token in template.added_special_tokens if token in vocab and token not in tokenizer.all_special_tokens
    ]
    to_register = missing + present_but_not_special
    if to_register:
        tokenizer.add_special_tokens({"additional_special_tokens": to_register}, replace_extra_special_tokens=False)
    return missing


def apply_pad_strategy(tokenizer, strategy: str) -> None:
    """Set a pad token only when the tokenizer has none (see MissingPadTokenStrategy in the config reference)."""
    if strategy == "unk-convert-to-eos":
        if tokenizer.pad_token is not None:
            raise TemplateError(
                "data_conf.missing_pad_token_strategy: 'unk-convert-to-eos' needs a tokenizer without a pad token, "
                f"but this one has pad_token={tokenizer.pad_token!r}; use another strategy"
            )
        source = "unk_token"
    elif tokenizer.pad_token is not None:
        return
    else:
        source = PAD_SOURCES[strategy]
    token = getattr(tokenizer, source)
    if token is None:
        raise TemplateError(
            f"data_conf.missing_pad_token_strategy: {strategy!r} uses the tokenizer's {source}, which it does not have"
        )
    tokenizer.pad_token = token


def template_writes_bos(tokenizer) -> bool:
    """Whether the installed chat template starts a conversation with the bos token (all named templates do)."""
    bos = tokenizer.bos_token
    if not bos or not getattr(tokenizer, "chat_template", None):
        return False
    try:
        return render([{"role": "user", "content": "x"}], tokenizer).startswith(bos)
    except TemplateError:  # a template that refuses a lone user turn: judge by its text instead
        return "bos_token" in tokenizer.chat_template


def install_inference_save(tokenizer, end_marker: str, add_bos: bool = True) -> None:
    """Every save (checkpoints included) writes the inference set-up, then the in-memory training set-up is restored."""
    original_save = tokenizer.save_pretrained

    @functools.wraps(original_save)
    def save_pretrained(*args, **kwargs):
        saved = (tokenizer.add_bos_token, tokenizer.add_eos_token, tokenizer.eos_token)
        tokenizer.add_bos_token, tokenizer.add_eos_token, tokenizer.eos_token = add_bos, False, end_marker
        try:
            return original_save(*args, **kwargs)
        finally:
            tokenizer.add_bos_token, tokenizer.add_eos_token, tokenizer.eos_token = saved

    tokenizer.save_pretrained = save_pretrained


def add_run_tokens(tokenizer, run_conf) -> list[str]:
    """Set run_conf.special_tokens on the tokenizer and add run_conf.added_tokens (regular tokens), each kept whole in
    text as axolotl adds them (not normalized, no stripping); returns the tokens new to the vocabulary, for which the
    model's embeddings grow (model/loading.expand_vocabulary). Called before the chat template is installed: a
    template that ends turns with eos ends them with this eos, and a pad token set here leaves
    data_conf.missing_pad_token_strategy nothing to do (it only sets a pad token when there is none)."""
    special, added = run_conf.special_tokens.as_dict(), run_conf.added_tokens
    if not (special or added):
        return []
    from tokenizers import AddedToken

    def whole(text: str):
        return AddedToken(text, rstrip=False, lstrip=False, normalized=False)

    vocab = tokenizer.get_vocab()
    new = list(dict.fromkeys(text for text in [*special.values(), *added] if text not in vocab))
    if special:
        tokenizer.add_special_tokens({name: whole(text) for name, text in special.items()})
    if added:
        tokenizer.add_tokens([whole(text) for text in added])
    if new:
        logger.info("run_conf.special_tokens / added_tokens added %s to the vocabulary", new)
    return new


def setup_tokenizer(tokenizer, template: ChatTemplate, data_conf) -> tuple[Markers, list[str]]:
    """Install template, tokens, padding; return the template's markers and the tokens added to the vocabulary.
    A custom template (data_conf.chat_template_jinja) replaces the tokenizer's own, whose markers are then derived
    as for keep-original."""
    if template.jinja is not None:
        tokenizer.chat_template = template.jinja
    elif (custom := getattr(data_conf, "chat_template_jinja", None)) is not None:
        tokenizer.chat_template = custom
    added = add_template_tokens(tokenizer, template)
    tokenizer.padding_side = data_conf.padding_side
    if data_conf.padding_side == "left":
        logger.info(
            "data_conf.padding_side: left applies to the saved tokenizer (batched generation); training batches are "
            "right-padded, which the attention mask makes equivalent and keeps position ids aligned"
        )
    apply_pad_strategy(tokenizer, data_conf.missing_pad_token_strategy)
    markers = resolve_markers(template, tokenizer)
    install_inference_save(tokenizer, markers.assistant_end, add_bos=not template_writes_bos(tokenizer))
    if added:
        logger.info("chat template %r added special tokens %s to the vocabulary", template.name, added)
    return markers, added
