"""Spectrum (config/spectrum.py): pick the decoder weight matrices with the highest signal-to-noise ratio, train
those, freeze the rest.

The SNR is the reference method's (cognitivecomputations/spectrum, arXiv 2406.06623): the singular values S of a
matrix (fp32), a noise scale σ = IQR(S)/1.349 (robust: the bulk of a random matrix's spectrum), the
Marchenko-Pastur edge τ = σ·(1+√β) with β = min(n,m)/max(n,m); singular values above τ are signal, the others
noise; SNR = Σ signal / Σ noise, divided by the largest singular value so that matrices of different scale compare.
Where every value is signal (no noise), the noise sum counts as 1 (the reference divides by zero there).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import did_you_mean
from .loading import ModelSetupError

logger = logging.getLogger(__name__)

SPECTRUM_FILE = "spectrum.yaml"


@dataclass
class SpectrumRow:
    """One parameter of the selection table; `layer` / `snr` are None for the embeddings and the head."""

    parameter: str
    module_type: str
    layer: int | None
    snr: float | None
    trained: bool


def snr_of_singular_values(singular_values, shape: tuple[int, int]) -> float:
    """The normalised SNR of a matrix of `shape` from its singular values (a torch tensor, any order)."""
    import torch

    s = singular_values.float()
    sigma = (torch.quantile(s, 0.75) - torch.quantile(s, 0.25)) / 1.349
    n, m = shape
    beta = min(n, m) / max(n, m)
    threshold = sigma * (1 + beta**0.5)
    signal = s[s > threshold].sum()
    noise = s[s <= threshold].sum() if bool((s <= threshold).any()) else torch.tensor(1.0)
    return float(signal / noise / s.max())


def matrix_snr(weight) -> float:
    """SNR of one weight (a parameter or tensor), on its dequantized values if it is a bitsandbytes 4-bit weight."""
    import torch

    if type(weight).__name__ == "Params4bit":  # packed uint8: the matrix is what dequantize_4bit gives back
        import bitsandbytes.functional as bnb_functional

        weight = bnb_functional.dequantize_4bit(weight.data, weight.quant_state)
    elif type(weight).__name__ == "Int8Params":
        raise ModelSetupError("spectrum: 8-bit quantized weights are not supported; load the model unquantized")
    matrix = weight.detach().float()
    return snr_of_singular_values(torch.linalg.svdvals(matrix), tuple(matrix.shape))


def decoder_matrices(model) -> list[tuple[str, str, int, object]]:
    """(parameter name, module type, layer index, parameter) of every 2-D weight inside the decoder layers: names with
    a layer index (model.layers.3.self_attn.q_proj.weight → type self_attn.q_proj, layer 3). Of several numbered
    stacks (a vision tower beside the language model) the largest is taken: the decoder."""
    stacks: dict[str, list] = {}
    for name, parameter in model.named_parameters():
        parts = name.split(".")
        index = next((i for i, part in enumerate(parts) if part.isdigit()), None)
        if index is None or parts[-1] != "weight" or parameter.dim() != 2 or index == len(parts) - 2:
            continue
        prefix = ".".join(parts[:index])
        stacks.setdefault(prefix, []).append((name, ".".join(parts[index + 1 : -1]), int(parts[index]), parameter))
    return max(stacks.values(), key=len) if stacks else []


def _extra_parameters(model, spectrum) -> dict[str, str]:
    """The embedding / head parameters asked for: name → module type (embed_tokens, lm_head). Tied weights share one
    parameter, which named_parameters lists once, under the embedding's name."""
    wanted = {}
    if spectrum.train_embeddings:
        wanted[id(model.get_input_embeddings().weight)] = "embed_tokens"
    if spectrum.train_lm_head and model.get_output_embeddings() is not None:
        wanted.setdefault(id(model.get_output_embeddings().weight), "lm_head")
    return {name: wanted[id(p)] for name, p in model.named_parameters() if id(p) in wanted}


def select_parameters(model, spectrum) -> list[SpectrumRow]:
    """The selection table per `spectrum` (a SpectrumConfig): the decoder matrices of its module types, each trained
    or not, then the embeddings / head it asks for. `layers: auto` ranks each type's matrices by SNR and keeps the top
    int(count x top_percent / 100), at least one; a list of layers keeps those layers and computes no SNR."""
    matrices = decoder_matrices(model)
    if not matrices:
        raise ModelSetupError("spectrum: this model has no numbered decoder layers with 2-D weights to choose from")
    types = list(dict.fromkeys(module_type for _, module_type, _, _ in matrices))
    chosen_types = spectrum.module_types if spectrum.module_types is not None else types
    problems = [
        f"spectrum.module_types: {name!r} is not a weight type of this model's decoder layers"
        + (did_you_mean(name, types) or f"; its types: {', '.join(types)}")
        for name in chosen_types
        if name not in types
    ]
    layer_count = max(layer for _, _, layer, _ in matrices) + 1
    if spectrum.layers != "auto":
        problems += [
            f"spectrum.layers: layer {layer} does not exist; this model has layers 0 to {layer_count - 1}"
            for layer in spectrum.layers
            if layer >= layer_count
        ]
    if problems:
        raise ModelSetupError(problems)
    rows = []
    for module_type in chosen_types:
        of_type = [(name, layer, p) for name, kind, layer, p in matrices if kind == module_type]
        if spectrum.layers != "auto":
            rows += [
                SpectrumRow(name, module_type, layer, None, layer in spectrum.layers) for name, layer, _ in of_type
            ]
            continue
        scored = [(name, layer, matrix_snr(p)) for name, layer, p in of_type]
        keep = max(1, int(len(scored) * spectrum.top_percent / 100))
        best = {name for name, _, _ in sorted(scored, key=lambda row: row[2], reverse=True)[:keep]}
        rows += [SpectrumRow(name, module_type, layer, snr, name in best) for name, layer, snr in scored]
    rows += [SpectrumRow(name, kind, None, None, True) for name, kind in _extra_parameters(model, spectrum).items()]
    return rows


def freeze_unselected(model, rows: list[SpectrumRow]) -> None:
    """Every parameter not selected stops requiring gradients (the trainer's optimizer skips those). Frozen
    embeddings do not cut gradient checkpointing off: transformers makes the embedding outputs require gradients
    when it turns checkpointing on (the test trains with reentrant checkpointing)."""
    trained = {row.parameter for row in rows if row.trained}
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in trained)
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info(
        "spectrum: training %d of %d parameter tensors (%d of %d parameters, %.1f%%)",
        len(trained),
        len(list(model.parameters())),
        count,
        total,
        100 * count / total,
    )


def unfrozen_patterns(rows: list[SpectrumRow]) -> list[str]:
    """The trained parameters as anchored regexes, the form of Spectrum's own yaml (and axolotl's
    `unfrozen_parameters`)."""
    return [f"^{row.parameter}$" for row in rows if row.trained]


def selection_document(rows: list[SpectrumRow], spectrum) -> dict:
    """What spectrum.yaml holds: the unfrozen_parameters list, the settings that chose it, and the whole table."""
    return {
        "unfrozen_parameters": unfrozen_patterns(rows),
        "settings": spectrum.model_dump(mode="json"),
        "selection": [
            {
                "parameter": row.parameter,
                "module_type": row.module_type,
                "layer": row.layer,
                "snr": None if row.snr is None else round(row.snr, 6),
                "trained": row.trained,
            }
            for row in rows
        ],
    }


def write_selection(rows: list[SpectrumRow], spectrum, path: Path) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(selection_document(rows, spectrum), sort_keys=False), encoding="utf-8")
    return path


def selection_table(rows: list[SpectrumRow], width: int = 100) -> str:
    """The selection as a rich table in plain text (for the log, or the terminal)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Spectrum selection")
    for column in ("parameter", "module type", "layer", "SNR", "trained"):
        table.add_column(column, justify="right" if column in ("layer", "SNR") else "left")
    for row in rows:
        snr = "-" if row.snr is None else f"{row.snr:.4f}"
        layer = "-" if row.layer is None else str(row.layer)
        table.add_row(row.parameter, row.module_type, layer, snr, "yes" if row.trained else "no")
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(table)
    return buffer.getvalue()


def apply_spectrum(
    model, spectrum, output_dir: Path | None, write: bool = True, vocab_expanded: bool = False
) -> list[SpectrumRow]:
    """Select (select_parameters), freeze the rest, log the table and write output_dir/spectrum.yaml (`write`: the
    main process of a run; every process selects the same, from the same weights)."""
    if vocab_expanded and not spectrum.train_embeddings:
        logger.warning(
            "spectrum: the vocabulary grew (the chat template or run_conf added tokens) and the embeddings stay "
            "frozen: the new tokens keep their mean-initialised embeddings; set spectrum.train_embeddings: true "
            "(and train_lm_head) to learn them"
        )
    rows = select_parameters(model, spectrum)
    freeze_unselected(model, rows)
    logger.info("spectrum selection:\n%s", selection_table(rows))
    if write and output_dir is not None:
        logger.info("spectrum selection written to %s", write_selection(rows, spectrum, output_dir / SPECTRUM_FILE))
    return rows


def spectrum_command(cfg) -> tuple[str, str]:
    """`finetuning spectrum CONFIG`: the selection the config's `spectrum` section (or the defaults) makes, without
    training; returns (table, spectrum.yaml's text). The model is loaded unquantized whatever quant_conf says: the
    SNR is a property of the real weights, not of their 4-bit rounding."""
    import yaml

    from ..config.quant import NoQuantizationConfig
    from ..config.spectrum import SpectrumConfig
    from .loading import load_model

    spectrum = cfg.spectrum
    if spectrum is None:
        logger.warning("spectrum: the config has no spectrum section; showing the selection of its defaults")
        spectrum = SpectrumConfig()
    model = load_model(cfg.run_conf, NoQuantizationConfig(), 1)
    rows = select_parameters(model, spectrum)
    return selection_table(rows), yaml.safe_dump(selection_document(rows, spectrum), sort_keys=False)
