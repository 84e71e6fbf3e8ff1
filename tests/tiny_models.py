"""Models for the training tests: a byte-level BPE tokenizer trained in memory on the test's own texts (milliseconds,
offline; a small vocabulary keeps the output head cheap), with the ChatML template, and a 2-layer random Llama with
LoRA on every linear layer."""
import warnings

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def chatml_tokenizer(corpus: list[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size,
                                                        special_tokens=["<|im_start|>", "<|im_end|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                   chat_template=CHATML)


def tiny_lora(tokenizer, seed: int = 0, max_positions: int = 512):
    """initializer_range 0.2: with the default 0.02 the frozen output head of a 32-wide model cannot move the logits
    enough to show learning in a few steps."""
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                         initializer_range=0.2, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft asks a transformers-5 model a deprecated question
        return get_peft_model(LlamaForCausalLM(config), LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                                   target_modules="all-linear"))
