"""Python reference implementations the text-layer tests compare k2mlx against: tiktoken with
Kimi-K2's exact pat_str (as written in tokenization_kimi.py), Kimi's special-token block, a
DeepSeek-V3-style byte-level BPE trained with `tokenizers`, and jinja2 set up as transformers'
apply_chat_template sets it up (trim_blocks, lstrip_blocks, loopcontrols, json.dumps tojson)."""
import json

# Kimi-K2's pre-tokenizer, alternative by alternative (tokenization_kimi.py; spec §7.2).
KIMI_PAT_STR = "|".join([
    r"""[\p{Han}]+""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])

# Named ids of Kimi-K2's reserved block (spec §7.3); the rest are <|reserved_token_{id}|>.
KIMI_NAMED_SPECIALS = {
    163584: "[BOS]", 163585: "[EOS]", 163586: "<|im_end|>", 163587: "<|im_user|>", 163588: "<|im_assistant|>",
    163590: "<|start_header_id|>", 163591: "<|end_header_id|>", 163593: "[EOT]", 163594: "<|im_system|>",
    163595: "<|tool_calls_section_begin|>", 163596: "<|tool_calls_section_end|>", 163597: "<|tool_call_begin|>",
    163598: "<|tool_call_argument_begin|>", 163599: "<|tool_call_end|>", 163601: "<|im_middle|>",
    163838: "[UNK]", 163839: "[PAD]",
}
KIMI_BASE = 163584
KIMI_RESERVED = 256


def kimi_special_tokens():
    return {KIMI_NAMED_SPECIALS.get(i, f"<|reserved_token_{i}|>"): i for i in range(KIMI_BASE, KIMI_BASE + KIMI_RESERVED)}


def kimi_tokenizer_config():
    return {
        "added_tokens_decoder": {str(i): {"content": c, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": True}
                                 for i, c in KIMI_NAMED_SPECIALS.items()},
        "bos_token": "[BOS]", "eos_token": "[EOS]", "pad_token": "[PAD]", "unk_token": "[UNK]",
    }


def kimi_encoding(vocab_path, pat_str=KIMI_PAT_STR):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    return tiktoken.Encoding(name="kimi-k2", pat_str=pat_str, mergeable_ranks=load_tiktoken_bpe(str(vocab_path)),
                             special_tokens=kimi_special_tokens())


def kimi_chunks(text, max_chars=400_000, max_run=25_000):
    """tokenization_kimi.py's input chunking (400k-character windows, 25k same-class runs)."""
    out = []
    for i in range(0, len(text), max_chars):
        s = text[i:i + max_chars]
        run, is_space, start = 0, s[0].isspace() if s else False, 0
        for k, ch in enumerate(s):
            now = ch.isspace()
            if is_space ^ now:
                run, is_space = 1, now
            else:
                run += 1
                if run > max_run:
                    out.append(s[start:k])
                    start, run = k, 1
        out.append(s[start:])
    return out


# DeepSeek-V3's pre-tokenizer sequence as its tokenizer.json declares it.
DEEPSEEK_V3_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[一-龥\u3040-ゟ゠-ヿ]+"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
    ],
}
DEEPSEEK_SPECIALS = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
                     "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>"]


def train_byte_level_bpe(texts, vocab_size, pre_tokenizer_json, out_path, non_special=("<think>", "</think>")):
    """Trains a byte-level BPE with `tokenizers` and writes tokenizer.json with the given pre-tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers, AddedToken
    tok = Tokenizer(models.BPE())
    # Train with the declared pre-tokenizer by round-tripping it through JSON.
    spec = json.loads(tok.to_str())
    spec["pre_tokenizer"] = pre_tokenizer_json
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=DEEPSEEK_SPECIALS, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in non_special])
    tok.save(str(out_path))
    return tok


def chat_environment():
    """jinja2 environment exactly as transformers' _compile_jinja_template builds it."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["namespace"] = jinja2.utils.Namespace
    return env


def deep_sort_dict(obj):
    """tokenization_kimi.py's deep_sort_dict, applied to tools before rendering."""
    if isinstance(obj, dict):
        return {k: deep_sort_dict(v) for k, v in sorted(obj.items())}
    if isinstance(obj, list):
        return [deep_sort_dict(v) for v in obj]
    return obj
