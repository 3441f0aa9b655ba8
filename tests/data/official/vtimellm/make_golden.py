"""Build the VTimeLLM golden files by running the official code on tiny random checkpoints.

Run with the reference environment, never with the product one (the official code was written for
transformers 4.31 and peft 0.4, installed for this script only in a side directory on top of the
reference virtualenv's torch 2.13.0):

    PYTHONPATH=/work/refenv-vtimellm:/work/ref/VTimeLLM \
        /work/refenv/bin/python tests/data/official/vtimellm/make_golden.py

VTimeLLM's code is CC-BY-NC-ND: nothing of it is copied here or in the port; this script imports it
from the checkout and records what it computes.

What it does:

- writes a tiny word-level tokenizer (``tokenizer.json``; ``<s>`` prepended, ``</s>`` the end) with
  the words of the Vicuna "v1" system prompt, VTimeLLM's grounding question and 00-99;
- writes two tiny checkpoints in the official layout:

  ``main/``: ``vicuna/`` (a random ``LlamaForCausalLM`` saved by ``save_pretrained``:
  ``config.json`` + ``pytorch_model.bin``, as transformers 4.31 writes it, plus the tokenizer),
  ``stage1/mm_projector.bin`` (``torch.save`` of ``{"model.mm_projector.weight", ...bias}``, the
  names training gives it), ``stage2/`` and ``stage3/`` (peft ``save_pretrained``:
  ``adapter_config.json`` + ``adapter_model.bin`` holding only the ``lora_`` tensors, with
  ``non_lora_trainables.bin`` beside them, as the official training saves them; stage 3's carries
  a changed projector bias, so its loading rule is exercised);

  ``second/``: other widths, the base saved as ``model.safetensors``, stage 2 only, another LoRA
  rank and alpha;
- rebuilds each model the way the official ``builder.load_pretrained_model`` does (base,
  ``initialize_vision_modules``, then each stage through ``load_lora`` + ``merge_and_unload``) and
  records, for random CLIP features ``[100, 768]``: the official prompt (``conv_templates["v1"]``),
  its ids (``tokenizer_image_token``), the projected video tokens, the LLM's input embeddings
  (``prepare_inputs_labels_for_multimodal``), the logits of that input, and the greedy answer of
  ``model.generate`` (``do_sample=False``; the official demo samples at temperature 0.05).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import types

import torch

HERE = pathlib.Path(__file__).resolve().parent
OFFICIAL = pathlib.Path("/work/ref/VTimeLLM")
SEED = 0
MAX_NEW_TOKENS = 12

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")
WORDS = sorted(set(
    SYSTEM.replace(".", " . ").replace(",", " , ").replace("'", " ' ").split()
    + "USER ASSISTANT : ? During which frames can we see from to and the a person cuts onion opens door".split()
    + "stir pour water egg whisk video event timestamps { } \" xx".split()))
NUMBERS = [f"{i:02d}" for i in range(100)]
QUERIES = ["During which frames can we see a person cuts the onion?",
           "During which frames can we see stir the egg?"]

MAIN = dict(folder="main", base="vicuna-7b-v1.5", prefix="vtimellm-vicuna-v1-5-7b", hidden=32, intermediate=64, layers=2, heads=4, kv_heads=2, stages=(
    dict(name="stage2", r=4, alpha=8), dict(name="stage3", r=8, alpha=4, projector_bias=True)), safetensors=False)
SECOND = dict(folder="second", base="vicuna-tiny", prefix="vtimellm-tiny", hidden=48, intermediate=80, layers=3, heads=6, kv_heads=6, stages=(
    dict(name="stage2", r=2, alpha=16),), safetensors=True)


def stub_imports() -> None:
    """Modules the official code imports but this run does not use: decord (video reading) and the
    ChatGLM variant (its own remote code)."""
    import importlib.machinery
    decord = types.ModuleType("decord")
    decord.__spec__ = importlib.machinery.ModuleSpec("decord", None)
    sys.modules.setdefault("decord", decord)
    chatglm = types.ModuleType("vtimellm.model.vtimellm_chatglm")
    chatglm.VTimeLLMChatGLMForCausalLM = None
    sys.modules["vtimellm.model.vtimellm_chatglm"] = chatglm


def write_tokenizer(folder: pathlib.Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for word in WORDS + NUMBERS:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    from tokenizers import AddedToken
    tokenizer.add_special_tokens([AddedToken("<unk>"), AddedToken("<s>"), AddedToken("</s>")])
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
         "unk_token": "<unk>", "model_max_length": 2048,
         "clean_up_tokenization_spaces": True}, indent=1) + "\n")


def write_tiny_clip(path: pathlib.Path, generator: torch.Generator) -> None:
    """A tiny OpenAI-layout CLIP ViT whose image embedding is 768-d, as ViT-L/14's (the width the
    official projector takes): a plain state dict with OpenAI's key names and integer scalars.
    Not official output (VTimeLLM calls ``clip.load(...).encode_image``, which the clip family's
    golden data covers); it lets the whole frames -> features -> answer path run in tests."""
    width, text_width, embed, patch, grid, vocab, context = 32, 16, 768, 8, 4, 8, 4
    shapes = {"visual.class_embedding": (width,), "visual.positional_embedding": (grid * grid + 1, width),
              "visual.proj": (width, embed), "visual.conv1.weight": (width, 3, patch, patch),
              "visual.ln_pre.weight": (width,), "visual.ln_pre.bias": (width,),
              "visual.ln_post.weight": (width,), "visual.ln_post.bias": (width,),
              "positional_embedding": (context, text_width), "text_projection": (text_width, embed),
              "token_embedding.weight": (vocab, text_width), "ln_final.weight": (text_width,),
              "ln_final.bias": (text_width,), "logit_scale": ()}
    for prefix, w in (("visual.transformer.resblocks.0.", width), ("transformer.resblocks.0.", text_width)):
        shapes.update({prefix + "attn.in_proj_weight": (3 * w, w), prefix + "attn.in_proj_bias": (3 * w,),
                       prefix + "attn.out_proj.weight": (w, w), prefix + "attn.out_proj.bias": (w,),
                       prefix + "ln_1.weight": (w,), prefix + "ln_1.bias": (w,),
                       prefix + "ln_2.weight": (w,), prefix + "ln_2.bias": (w,),
                       prefix + "mlp.c_fc.weight": (4 * w, w), prefix + "mlp.c_fc.bias": (4 * w,),
                       prefix + "mlp.c_proj.weight": (w, 4 * w), prefix + "mlp.c_proj.bias": (w,)})
    state = {}
    for key, shape in shapes.items():
        noise = torch.randn(shape, generator=generator)
        state[key] = 1.0 + 0.1 * noise if key.endswith("ln_1.weight") or "ln_" in key and key.endswith("weight") \
            else 0.2 * noise
    state.update(input_resolution=torch.tensor(patch * grid), context_length=torch.tensor(context),
                 vocab_size=torch.tensor(vocab))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def build(spec: dict, generator: torch.Generator) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from peft import LoraConfig, get_peft_model
    from vtimellm.model.vtimellm_llama import VTimeLLMLlamaForCausalLM
    from vtimellm.model.builder import load_lora
    from vtimellm.train.train import find_all_linear_names

    root = HERE / spec["folder"]
    base = root / spec["base"]
    base.mkdir(parents=True, exist_ok=True)
    write_tokenizer(base)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(base / "tokenizer.json"), bos_token="<s>",
                                        eos_token="</s>", unk_token="<unk>")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=spec["hidden"],
                         intermediate_size=spec["intermediate"], num_hidden_layers=spec["layers"],
                         num_attention_heads=spec["heads"], num_key_value_heads=spec["kv_heads"],
                         max_position_embeddings=512, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0, tie_word_embeddings=False)
    llama = LlamaForCausalLM(config)
    with torch.no_grad():
        for name, parameter in llama.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.copy_(1.0 + 0.1 * noise if "norm" in name else 0.2 * noise)
    llama.save_pretrained(base, safe_serialization=spec["safetensors"])
    (base / "generation_config.json").unlink(missing_ok=True)

    stage1 = root / f"{spec['prefix']}-stage1"
    stage1.mkdir(exist_ok=True)
    torch.save({"model.mm_projector.weight": torch.randn(spec["hidden"], 768, generator=generator) * 0.05,
                "model.mm_projector.bias": torch.randn(spec["hidden"], generator=generator) * 0.1},
               stage1 / "mm_projector.bin")

    # Each stage as the official training writes it: LoRA on every Linear of the model being trained
    # (found before the projector exists, so it is not a target), only lora_ tensors saved.
    for stage in spec["stages"]:
        model = VTimeLLMLlamaForCausalLM.from_pretrained(base)
        for previous in spec["stages"]:
            if previous is stage:
                break
            model.get_model().initialize_vision_modules(types.SimpleNamespace(
                pretrain_mm_mlp_adapter=str(stage1 / "mm_projector.bin")))
            model = load_lora(model, str(root / f"{spec['prefix']}-{previous['name']}")).merge_and_unload()
        targets = find_all_linear_names(model)
        targets = [t for t in targets if t != "mm_projector"]
        peft_model = get_peft_model(model, LoraConfig(r=stage["r"], lora_alpha=stage["alpha"],
                                                      target_modules=sorted(targets), lora_dropout=0.05,
                                                      bias="none", task_type="CAUSAL_LM"))
        with torch.no_grad():
            for name, parameter in peft_model.named_parameters():
                if "lora_" in name:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        lora_state = {k: v.detach().clone() for k, v in peft_model.named_parameters() if "lora_" in k}
        folder = root / f"{spec['prefix']}-{stage['name']}"
        peft_model.save_pretrained(str(folder), state_dict=lora_state)
        non_lora = {}
        if stage.get("projector_bias"):
            non_lora["base_model.model.model.mm_projector.bias"] = torch.randn(spec["hidden"], generator=generator)
        torch.save(non_lora, folder / "non_lora_trainables.bin")


def run_official(spec: dict, features: torch.Tensor) -> dict[str, torch.Tensor]:
    from transformers import PreTrainedTokenizerFast
    from vtimellm.constants import IMAGE_TOKEN_INDEX
    from vtimellm.conversation import conv_templates
    from vtimellm.mm_utils import tokenizer_image_token
    from vtimellm.model.builder import load_pretrained_model

    root = HERE / spec["folder"]
    names = [f"{spec['prefix']}-{stage['name']}" for stage in spec["stages"]]
    args = types.SimpleNamespace(model_base=str(root / spec["base"]),
                                 pretrain_mm_mlp_adapter=str(root / f"{spec['prefix']}-stage1" / "mm_projector.bin"))
    import transformers
    real = transformers.AutoTokenizer.from_pretrained
    transformers.AutoTokenizer.from_pretrained = lambda *a, **k: PreTrainedTokenizerFast(  # slow Llama: no file here
        tokenizer_file=str(root / spec["base"] / "tokenizer.json"), bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    import vtimellm.model.builder as builder
    builder.AutoTokenizer.from_pretrained = transformers.AutoTokenizer.from_pretrained
    # The official builder loads the base in float16 (and merges the LoRA stages in float16); the
    # port computes in float32, so the oracle is the same code with the base read in float32.
    llama_class = builder.VTimeLLMLlamaForCausalLM
    original = llama_class.from_pretrained.__func__
    llama_class.from_pretrained = classmethod(lambda cls, *a, **k: original(cls, *a, **{**k, "torch_dtype": torch.float32}))
    tokenizer, model, _ = load_pretrained_model(args, str(root / names[0]),
                                                str(root / names[1]) if len(names) > 1 else None)
    transformers.AutoTokenizer.from_pretrained = real
    model = model.float().eval()
    tokenizer.name = "PreTrainedTokenizerFast"

    out = {"features": features,
           "projected": model.get_model().mm_projector(features).detach()}
    prompts = []
    for index, query in enumerate(QUERIES):
        conv = conv_templates["v1"].copy()
        conv.append_message(conv.roles[0], "<video>\n" + query)
        conv.append_message(conv.roles[1], None)
        prompt = conv.get_prompt()
        prompts.append(prompt)
        ids = tokenizer_image_token(prompt, tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt").unsqueeze(0)
        with torch.inference_mode():
            _, _, _, _, embeds, _ = model.prepare_inputs_labels_for_multimodal(ids, None, None, None, None,
                                                                              features[None])
            logits = model(input_ids=ids, images=features[None]).logits
            generated = model.generate(ids, images=features[None], do_sample=False, num_beams=1,
                                       max_new_tokens=MAX_NEW_TOKENS, use_cache=True)
        answer_ids = generated[0, ids.shape[1]:]
        out[f"input_ids_{index}"] = ids[0]
        out[f"inputs_embeds_{index}"] = embeds[0]
        out[f"logits_{index}"] = logits[0]
        out[f"answer_ids_{index}"] = answer_ids
        answer = tokenizer.batch_decode(answer_ids[None], skip_special_tokens=True)[0].strip()
        prompts.append(answer)
    return out, prompts


def main() -> None:
    stub_imports()
    sys.path.insert(0, str(OFFICIAL))
    from safetensors.torch import save_file
    commit = subprocess.run(["git", "-C", str(OFFICIAL), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    generator = torch.Generator().manual_seed(SEED)
    tensors, metadata = {}, {"repository": "https://github.com/huangb23/VTimeLLM", "commit": commit,
                             "queries": json.dumps(QUERIES), "max_new_tokens": str(MAX_NEW_TOKENS)}
    write_tiny_clip(HERE / "main" / "clip" / "ViT-L-14.pt", generator)
    for spec in (MAIN, SECOND):
        build(spec, generator)
        features = torch.randn(100, 768, generator=generator)
        out, texts = run_official(spec, features)
        for key, value in out.items():
            tensors[f"{spec['folder']}.{key}"] = value.contiguous()
        metadata[f"{spec['folder']}.prompts"] = json.dumps(texts[0::2])
        metadata[f"{spec['folder']}.answers"] = json.dumps(texts[1::2])
    save_file(tensors, str(HERE / "golden.safetensors"), metadata=metadata)
    for key, value in metadata.items():
        print(key, value[:200])


if __name__ == "__main__":
    main()
