"""Params files: load, validate, resolve.

A params file (params/*.yaml) is a few overrides on top of the defaults below, which are the paper's settings
(PAPER.md) wherever the paper gives one. Unknown keys and bad values stop everything before any work, with one
line naming the key and what is allowed. The resolved config is saved beside every artefact (`DONE.json`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENVS = ("textcraft", "sciworld", "webshop", "toy")  # toy: a test env where a random model sometimes succeeds
PAPER_ENVS = ENVS[:3]

# The variants a study can compare (PAPER.md Tables 2, 3, 6). A variant is a data recipe (revision.py) and how it is
# trained (train.py; ETO: SFT on good paths, then DPO on good/bad pairs), with one actor for all envs (multi-task,
# the paper's default) or, named "<method>-single", one actor per env (Table 6).
METHODS = ("agent_r", "direct_revision", "optimal", "optimal_good", "eto")
SINGLE = "-single"


class ConfigError(ValueError):
    """A params problem, reported as one readable line."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelCfg(Section):
    """The actor: which weights, at which precision, where, and how it generates (actor.py, models.py)."""
    name: str = "smollm2-135m"  # "smollm2-135m" (offline GGUF) | "tiny-random" (tests) | hub id | local dir
    # QLoRA by default: bitsandbytes NF4 runs on CPU too; "auto" = NF4 on CUDA, full precision on CPUs (NF4 no faster,
    # models.pick_quantization)
    quantization: Literal["nf4", "none", "auto"] = "nf4"
    compute_dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto: bf16 where the hardware has it
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_context_tokens: int = Field(2048, ge=256)  # prompt + reply; longer conversations lose their oldest steps
    max_new_tokens: int = Field(128, ge=8)  # per agent reply (the verifier has revision.verifier_max_new_tokens)
    generate_batch_size: int = Field(16, ge=1)  # sequences (prompts x samples) decoded together; bounds memory
    prefix_cache_mb: float = Field(1024, ge=0)  # KV of recent prompts kept for reuse (0 = off); a speed knob
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    # 0: the paper fine-tunes fully, with no dropout on any adapter's input; and on CPU the dropout masks' random
    # numbers (one per input element of each LoRA module) were 15-20 % of a training step (profiled, SmolLM2-135M)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_target_modules: str | list[str] = "all-linear"  # peft's target_modules; "all-linear" = QLoRA's choice
    # Where the offline model's dequantised checkpoint (and the tokenizer) are cached; null: $AGENTR_CACHE, else
    # ~/.cache/agentr-kit. Ignored for hub ids and local directories (they are read where they are).
    cache_dir: str | None = None

    @model_validator(mode="after")
    def _reply_fits_context(self):
        if self.max_new_tokens >= self.max_context_tokens:
            raise ValueError("max_new_tokens must be smaller than max_context_tokens")
        return self


class TasksCfg(Section):
    """How many tasks of each split to use per env (null = the whole split)."""
    train: int | None = Field(None, ge=1)
    test: int | None = Field(None, ge=1)
    env_kwargs: dict = {}  # passed to the env constructor, e.g. {max_goal_depth: 2} for TextCraft
    demos: int | None = Field(None, ge=1)  # warm-start demonstrations of this env (None: warmstart.demos_per_env)


class AllTasksCfg(Section):
    textcraft: TasksCfg = TasksCfg()
    sciworld: TasksCfg = TasksCfg()
    webshop: TasksCfg = TasksCfg()
    toy: TasksCfg = TasksCfg()


@dataclass(frozen=True)
class Variant:
    """One variant of a study: its name (also its folder, results/<run>/<name>/), method, and whether it trains one
    actor per env."""
    name: str

    @property
    def method(self) -> str:
        return self.name.removesuffix(SINGLE)

    @property
    def single(self) -> bool:
        return self.name.endswith(SINGLE)


class StudyCfg(Section):
    """What a study compares: each variant runs its own iterations; all share the starting actor, its baseline
    evaluation and the iteration-1 trees (layout.plan)."""
    # each: a method (agent_r | direct_revision | optimal | optimal_good | eto), "-single" appended for one actor
    # per env (Table 6)
    variants: list[str] = ["agent_r"]

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, v):
        if not v:
            raise ValueError("at least one variant")
        for name in v:
            if Variant(name).method not in METHODS:
                raise ValueError(f"{name!r} is not a variant: a method ({', '.join(METHODS)}), optionally with "
                                 f"'{SINGLE}' (one actor per env)")
        if len(set(v)) < len(v):
            raise ValueError("each variant at most once")
        return v


class WarmstartCfg(Section):
    """Small models only: SFT on a few scripted demonstrations so the actor can act at all (README, deviations)."""
    enabled: bool = False
    demos_per_env: int = Field(40, ge=1)
    epochs: int = Field(3, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    # Many small steps teach a format faster than a few averaged ones: accumulation 1 by default here.
    grad_accum: int = Field(1, ge=1)
    max_length: int | None = Field(None, ge=128)  # None: train.max_length


class MCTSCfg(Section):
    """Collection (mcts.py). Replies are at most model.max_new_tokens long."""
    simulations: int = Field(8, ge=1)  # paper: 8 (the official code reads ITERA from the environment; its issue #3: 8)
    candidates: int = Field(4, ge=1)  # k replies sampled per expansion, before merging duplicates
    temperature: float = Field(1.0, ge=0)
    max_depth: int = Field(20, ge=1)  # at most this many actions on a path (paper: 20; mcts.is_terminal)
    c_uct: float = Field(0.25, ge=0)
    trees_in_flight: int = Field(8, ge=1)  # trees searched together (one generate call serves them); a speed knob


class RevisionCfg(Section):
    """Pairs, critique and splice (revision.py); which samples a variant keeps is its method's (study.variants)."""
    alpha: list[float] = [0.5, 0.7, 1.0]  # per iteration; the last value repeats for later iterations
    beta: float = Field(0.2, ge=0)
    include_good: bool = True  # agent_r and direct_revision: keep good paths too (optimal/optimal_good/eto: fixed)
    verifier_temperature: float = Field(1.0, ge=0)
    verifier_max_new_tokens: int = Field(500, ge=8)  # the official code's max_tokens
    max_pairs_per_tree: int | None = Field(None, ge=1)  # None: every qualifying pair (paper); a cap for CPU studies
    critiques_in_flight: int = Field(16, ge=1)
    # A small verifier often writes no verdict, which the paper's rule counts as Bad (t' lands on the first judged
    # step). true: a reply without one gets "Judgment:" appended and the most likely of Good/Bad/Uncertain is taken
    # (a deviation for small models: README); false: the paper's rule.
    force_verdict: bool = False

    @field_validator("alpha")
    @classmethod
    def _alpha_range(cls, v):
        if not v or any(not 0 <= a <= 1 for a in v):
            raise ValueError("each alpha must lie in [0, 1] and at least one is needed")
        return v


class TrainCfg(Section):
    """Masked SFT of the actor (train.py, on the HF Trainer). The paper fine-tunes fully (lr 2e-5, max length 8192);
    the kit trains LoRA adapters, for which 2e-4 is the usual rate (README, deviations)."""
    epochs: list[int] = [3, 1, 1]  # per iteration (paper: 3 in iteration 1, then 1); last repeats
    learning_rate: float = Field(2e-4, gt=0)
    # batch 1 + accumulation: on CPU, batch 4 x 1024 tokens took 16 GB and ran at 50 tok/s vs 3.3 GB and 180 tok/s
    batch_size: int = Field(1, ge=1)
    grad_accum: int = Field(4, ge=1)
    max_length: int = Field(4096, ge=128)  # longer samples are cut into trimmed windows (data.fitted)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    # a TrainingArguments optim name; auto: paged_adamw_8bit for a 4-bit model on CUDA, else adamw_torch
    optim: str = "auto"
    gradient_checkpointing: Literal["auto", True, False] = "auto"  # auto: on CUDA (memory-bound), off on CPU
    group_by_length: bool = True  # batches of similar lengths (less padding); ignored when batch_size is 1
    trained_logits_only: bool = True  # output head only where a trained token is predicted (same loss, less memory)
    # Each optimizer step's samples as a trie: what they share (the env's instruction, a tree's path) is computed
    # once, forward and backward, the rest continuing from its KV cache (shared_prefix.py; same loss and gradients).
    # auto: where gradient checkpointing is off (CPU; checkpointing recomputes layers and cannot carry a cache).
    shared_prefix: Literal["auto", True, False] = "auto"
    # with shared_prefix: steps of samples that share prefixes (token order, cut into steps at a random offset, the
    # steps shuffled per epoch) instead of a random order, so that a step shares a tree's path, not only the instruction
    group_by_prefix: bool = True

    @model_validator(mode="after")
    def _prefix_needs_no_checkpointing(self):
        if self.shared_prefix is True and self.gradient_checkpointing is True:
            raise ValueError("shared_prefix needs gradient_checkpointing off (a checkpointed layer cannot carry "
                             "the shared KV cache); set one of them to auto")
        return self
    logging_steps: int = Field(5, ge=1)
    # the loss curve also as TensorBoard events in <stage folder>/tensorboard/ (`tensorboard --logdir results/<run>`);
    # false: only train_metrics.json (which the report reads either way)
    tensorboard: bool = True
    save_steps: int = Field(50, ge=1)  # a checkpoint every this many optimizer steps: a killed training resumes there
    save_total_limit: int = Field(2, ge=1)  # checkpoints kept while training
    keep_checkpoints: bool = False  # keep checkpoints/ after the final adapter is written
    max_steps: int = -1  # > 0 stops after this many optimizer steps, whatever `epochs` says (tests, benchmarks)
    eta: float = Field(0.2, gt=0, le=1)  # share of agent data when general data is mixed in (Eq. 6)
    general_data: str | None = None  # local ShareGPT-style JSON/JSONL; none = agent data only (checked on load)
    dpo_beta: float = Field(0.1, gt=0)  # ETO only: DPO's beta (ETO's and TRL's default)


class EvaluateCfg(Section):
    max_rounds: int = Field(100, ge=1)
    temperature: float = Field(1.0, ge=0)
    episodes_in_flight: int = Field(16, ge=1)
    recovery: bool = True  # Table 3: continue vanilla failures from a random cut
    recovery_max_rounds: int = Field(50, ge=1)


class Config(Section):
    run_name: str = "run"
    results_dir: str = "results"
    seed: int = 0
    iterations: int = Field(3, ge=0)
    envs: list[Literal["textcraft", "sciworld", "webshop", "toy"]] = list(PAPER_ENVS)
    study: StudyCfg = StudyCfg()
    model: ModelCfg = ModelCfg()
    tasks: AllTasksCfg = AllTasksCfg()
    warmstart: WarmstartCfg = WarmstartCfg()
    mcts: MCTSCfg = MCTSCfg()
    revision: RevisionCfg = RevisionCfg()
    train: TrainCfg = TrainCfg()
    evaluate: EvaluateCfg = EvaluateCfg()

    @field_validator("envs")
    @classmethod
    def _some_envs(cls, v):
        if not v:
            raise ValueError(f"at least one of {', '.join(ENVS)}")
        if len(set(v)) < len(v):
            raise ValueError("each env at most once")
        return v

    # --- derived values -------------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return Path(self.results_dir) / self.run_name

    @property
    def variants(self) -> list[Variant]:
        return [Variant(v) for v in self.study.variants]

    def tasks_for(self, env: str) -> TasksCfg:
        return getattr(self.tasks, env)

    def alpha_at(self, iteration: int) -> float:
        return self.revision.alpha[min(iteration, len(self.revision.alpha)) - 1]

    def epochs_at(self, iteration: int) -> int:
        return self.train.epochs[min(iteration, len(self.train.epochs)) - 1]

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def hash(self, *sections: str) -> str:
        """A short hash of the named sections (all when none), to tell whether outputs match these params."""
        d = self.to_dict()
        part = {k: d[k] for k in sections} if sections else d
        return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:12]


def _format_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}'; allowed here: {_allowed_keys(e['loc'])}")
        elif e["type"] == "literal_error":
            lines.append(f"{source}: bad value for '{key}': {e['input']!r}; allowed: {e['ctx']['expected']}")
        elif isinstance(e["input"], dict):  # a rule across keys of a section (a model validator)
            lines.append(f"{source}: bad values in '{key}': {e['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"{source}: bad value for '{key}': {e['input']!r} ({e['msg'].removeprefix('Value error, ')})")
    return "\n".join(lines)


def _allowed_keys(loc: tuple) -> str:
    """The keys allowed in the section that holds the unknown key `loc[-1]`."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        model = model.model_fields[str(part)].annotation
    return ", ".join(model.model_fields)


def from_dict(d: dict, source: str = "params") -> Config:
    try:
        return Config.model_validate(d or {})
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


def load_config(path: str | Path, overrides: dict | None = None) -> Config:
    """Load a params YAML (plus optional overrides, e.g. from papermill parameters) and validate it.

    A relative `results_dir` is taken from the project root (the folder above params/), so a notebook run from
    notebooks/ and the CLI run from the root write to the same run folder.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"params file not found: {path}")
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(f"overrides: expected a mapping of params keys (e.g. {{mcts: {{simulations: 4}}}}), "
                          f"got {overrides!r}")
    cfg = from_dict(deep_merge(d, overrides or {}), source=str(path))
    check_inputs(cfg, source=str(path))
    if not Path(cfg.results_dir).is_absolute():
        cfg.results_dir = str(path.resolve().parent.parent / cfg.results_dir)
    return cfg


# --- inputs the schema cannot judge alone ---------------------------------------------------------------------------
def check_inputs(cfg: Config, source: str = "params") -> None:
    """Refuse what the schema alone cannot see, before any work: task counts beyond a split, env kwargs an env does
    not take, unknown SciWorld task types (envs.registry.check_tasks: only the envs in `envs`), a general-data file
    that is missing or not in the shape `data.load_general_data` reads. Cheap: no JVM, no model, no full file read."""
    from .envs.registry import check_tasks
    lines = []
    for bad in check_tasks(cfg):
        if bad.unknown:
            lines.append(f"{source}: unknown key '{bad.key}'; allowed here: {bad.allowed}")
        else:
            lines.append(f"{source}: bad value for '{bad.key}': {bad.value!r} ({bad.allowed})")
    if cfg.train.general_data is not None:
        problem = general_data_problem(cfg.train.general_data)
        if problem:
            lines.append(f"{source}: bad value for 'train.general_data': {cfg.train.general_data!r} ({problem})")
    if lines:
        raise ConfigError("\n".join(lines))


GENERAL_SHAPE = ('ShareGPT-style {"conversations": [{"from", "value"}, ...]} or messages-style '
                 '{"messages": [{"role", "content"}, ...]} records, as a JSON list or JSONL')
_PROBE_BYTES = 4 << 20  # how much of a general-data file the params check reads
_PROBE_RECORDS = 20


def general_record_problem(rec, where: str) -> str | None:
    """What is wrong with the shape of one general-data record (None: the shape `data.load_general_data` reads;
    its turns may still be skipped there, as FastChat's cleaning does)."""
    if not isinstance(rec, dict):
        return f"{where} is a {type(rec).__name__}, not a record; expected {GENERAL_SHAPE}"
    key = "conversations" if "conversations" in rec else "messages" if "messages" in rec else None
    if key is None:
        return f"{where} has neither 'conversations' nor 'messages' (keys: {', '.join(map(str, rec)) or 'none'}); " \
               f"expected {GENERAL_SHAPE}"
    if not isinstance(rec[key], list) or not all(isinstance(t, dict) for t in rec[key]):
        return f"{where}: '{key}' is not a list of turns; expected {GENERAL_SHAPE}"
    return None


def general_data_problem(path: str | Path) -> str | None:
    """Whether a general-data file looks readable, from its first records only (a ShareGPT dump is ~700 MB; the
    train stage reads it whole and names any later bad record). None: fine."""
    path = Path(path)
    if not path.is_file():
        return f"no such file (relative paths are read from {Path.cwd()})" if not path.exists() else "not a file"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(_PROBE_BYTES)
            whole = not f.read(1)
    except UnicodeDecodeError:
        return "not a UTF-8 text file; expected " + GENERAL_SHAPE
    records, problem = _first_json_records(text, whole)
    if problem:
        return problem
    if not records:
        return "holds no records" if whole else None  # a first record longer than the probe: the full read judges
    for n, rec in enumerate(records):
        if (problem := general_record_problem(rec, f"record {n}")) is not None:
            return problem
    return None


def _first_json_records(text: str, whole: bool) -> tuple[list, str | None]:
    """Up to _PROBE_RECORDS records from the start of a JSON list or JSONL text. `whole`: the text is the whole file;
    else it is a prefix, whose last record may be cut: what does not decode there is left to the full read."""
    body = text.lstrip()
    records: list = []
    if body.startswith("["):
        decoder, i = json.JSONDecoder(), 1
        while len(records) < _PROBE_RECORDS:
            while i < len(body) and body[i] in " \t\r\n,":
                i += 1
            if i >= len(body) or body[i] == "]":
                break
            try:
                rec, i = decoder.raw_decode(body, i)
            except json.JSONDecodeError as err:
                if whole:
                    return [], f"not a JSON list ({err}); expected {GENERAL_SHAPE}"
                break
            records.append(rec)
        return records, None
    lines = text.splitlines()
    if not whole:
        lines = lines[:-1]  # maybe cut
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            return [], f"neither a JSON list nor JSONL (line {number}: {err}); expected {GENERAL_SHAPE}"
        if len(records) >= _PROBE_RECORDS:
            break
    return records, None


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
