"""ModelSpec: the HF config normaliser, exact parameter counts, KV bytes per token, bad configs."""

import json
from pathlib import Path

import pytest

from infercast import InfercastError, load_model, model_ids
from infercast.model import normalise, preset_config

FIXTURES = Path(__file__).parent / "fixtures" / "configs"

DESIGN_PRESETS = (
    "llama-1-7b llama-1-13b llama-1-30b llama-2-7b llama-2-13b llama-2-70b llama-3-8b llama-3-70b "
    "llama-3.1-8b llama-3.1-70b llama-3.1-405b llama-3.3-70b mistral-7b mixtral-8x7b mixtral-8x22b "
    "qwen2.5-7b qwen2.5-72b deepseek-v3 gpt-2-xl gpt-j-6b gpt-3-175b bloom-176b gpt-4-class-moe gpt-oss-120b"
).split()
# the training data's models (DESIGN.md: mpt-125m ... mpt-70b, nemotron-4-15b, nemotron-4-340b) and the
# NeMo / Megatron sizes its rows name (shared/data/configs/)
TRAINING_PRESETS = (
    "mpt-125m mpt-350m mpt-760m mpt-1b mpt-3b mpt-7b mpt-13b mpt-30b mpt-70b nemotron-4-15b nemotron-4-340b "
    "nemotron-8b nemotron-22b gpt-3-5b gpt-3-20b megatron-22b mt-nlg-530b megatron-1t"
).split()


def test_every_design_preset_is_shipped():
    offload_data = ["opt-6.7b", "opt-30b", "opt-66b", "opt-175b"]  # the decoders of measured-offload.csv
    assert set(model_ids()) == set(DESIGN_PRESETS) | set(TRAINING_PRESETS) | set(offload_data)
    for mid in DESIGN_PRESETS + TRAINING_PRESETS + offload_data:
        assert preset_config(mid)["_infercast"]["source"]


# Exact totals. Derivations (h hidden, L layers, f MLP width, V vocab, kv = kv_heads x head_dim):
#   LLaMA: L (2h^2 + 2h kv + 3hf + 2h) + h + 2Vh
#     2-7B : 32 (2*4096^2 + 2*4096*4096 + 3*4096*11008 + 8192) + 4096 + 2*32000*4096 = 6,738,415,616
#     2-70B: 80 (2*8192^2 + 2*8192*1024 + 3*8192*28672 + 16384) + 8192 + 2*32000*8192 = 68,976,648,192
#     3-8B : 32 (2*4096^2 + 2*4096*1024 + 3*4096*14336 + 8192) + 4096 + 2*128256*4096 = 8,030,261,248
#   GPT-2-XL (tied, learned positions): V h + 1024 h + L (12 h^2 + 13 h) + 2h = 1,557,611,200
#   BLOOM (tied, ALiBi, embedding LayerNorm): V h + 2h + L (12 h^2 + 13 h) + 2h = 176,247,271,424
#   These equal the published counts (Meta model cards: 6.74B, 68.98B, 8.03B; HF gpt2-xl 1.5576B;
#   BigScience BLOOM card 176,247,271,424).
EXACT_TOTALS = {
    "llama-2-7b": 6_738_415_616,
    "llama-1-7b": 6_738_415_616,
    "llama-2-70b": 68_976_648_192,
    "llama-3-8b": 8_030_261_248,
    "llama-3.1-405b": 405_853_388_800,
    "mistral-7b": 7_241_732_096,
    "qwen2.5-7b": 7_615_616_512,
    "gpt-2-xl": 1_557_611_200,
    "bloom-176b": 176_247_271_424,
}


@pytest.mark.parametrize(("mid", "total"), EXACT_TOTALS.items())
def test_exact_parameter_counts(mid, total):
    got_total, got_active = load_model(mid).params()
    assert got_total == total
    assert got_active == total  # dense: every parameter is used by every token


@pytest.mark.parametrize(
    ("mid", "total_b", "active_b", "rel"),
    [
        # Mixtral card: 46.7B total, 12.9B active (2 of 8 experts):
        #   32 (attn 41.9M + 8 x 176.2M experts + router) + 262M embeddings = 46.70B; active 12.88B
        ("mixtral-8x7b", 46.7, 12.9, 0.005),
        # DeepSeek-V3 report: 671B total, 37B activated (MTP module excluded)
        ("deepseek-v3", 671.0, 37.0, 0.02),
        # GPT-3 paper Table 2.1: 175.0B; dense attention, tied embeddings give 174.6B
        ("gpt-3-175b", 175.0, 175.0, 0.005),
        # GPT-J card: 6,053,381,344 (its count; the HF module tree sums to 6.0509B)
        ("gpt-j-6b", 6.053, 6.053, 0.001),
    ],
)
def test_published_parameter_counts(mid, total_b, active_b, rel):
    total, active = load_model(mid).params()
    assert total / 1e9 == pytest.approx(total_b, rel=rel)
    assert active / 1e9 == pytest.approx(active_b, rel=rel)


def test_deepseek_v3_exact_counts():
    # MLA per layer: q_a 7168*1536 + 1536 + q_b 1536*128*192 + kv_a 7168*576 + 512 + kv_b 512*128*256
    # + o 128*128*7168 = 187,107,328; 3 dense layers (3*7168*18432 MLP) and 58 MoE layers of
    # 256 routed + 1 shared experts of 3*7168*2048, router 256*7168 + 256 bias; 2 norms per layer.
    total, active = load_model("deepseek-v3").params()
    assert total == 671_026_419_200
    assert active == 37_552_297_472


def test_gpt_oss_120b_exact_counts():
    # per layer: q 2880*4096 + 4096, k and v 2880*512 + 512 each, o 4096*2880 + 2880, 64 sinks = 26,550,144;
    # router 2880*128 + 128; 128 experts of gate_up 2880*5760 + 5760 and down 2880*2880 + 2880 = 24,891,840
    # each; 2 RMSNorms. 36 layers + embed and unembed 2 x 201,088 x 2880 + final norm 2880 = 116,829,156,672:
    # the model card's 116.83B (attention 0.96B, MLP 114.71B, embed + unembed 1.16B). Active: 4 experts; the
    # card's 5.13B leaves the input embedding (579,133,440) out, infercast counts it.
    s = load_model("gpt-oss-120b")
    total, active = s.params()
    assert total == 116_829_156_672
    assert active == 5_711_982_912 and active - s.param_parts()["embedding"] == pytest.approx(5.13e9, rel=0.001)
    assert s.param_parts()["expert"] == 24_891_840
    # layer_types alternate from a windowed layer: 18 of 36 attend within 128 keys
    assert (s.sliding_window, s.windowed_layers, s.attention_sinks) == (128, 18, True)
    assert [s.windowed_layers_in(a, b) for a, b in ((0, 1), (1, 2), (0, 12), (12, 24), (24, 36))] == [1, 0, 6, 6, 6]


def test_gpt_oss_layer_types_must_name_every_layer():
    cfg = {k: v for k, v in preset_config("gpt-oss-120b").items() if k != "_infercast"}
    with pytest.raises(InfercastError, match="layer_types"):
        normalise({**cfg, "layer_types": ["sliding_attention"] * 3}, "x")
    dense = normalise({**cfg, "layer_types": ["full_attention"] * 36}, "x")
    assert dense.sliding_window is None and dense.windowed_layers == 0


def test_gpt4_class_moe_matches_its_documented_design():
    s = load_model("gpt-4-class-moe")
    total, active = s.params()
    assert s.num_layers == 120 and s.num_experts == 16 and s.experts_per_token == 2 and s.num_kv_heads == 1
    assert total == pytest.approx(1.78e12, rel=0.01)
    assert active == pytest.approx(275e9, rel=0.01)


def test_kv_bytes_per_token():
    # LLaMA-2-7B: 2 (K,V) x 32 layers x 32 heads x 128 x 2 bytes = 524,288 B
    assert load_model("llama-2-7b").kv_elements_per_token() * 2 == 524_288
    # LLaMA-2-70B: 2 x 80 x 8 KV heads x 128 x 2 = 327,680 B; as if MHA (64 heads) 8x that
    s = load_model("llama-2-70b")
    assert s.kv_elements_per_token() * 2 == 327_680
    assert s.kv_elements_per_token_if_mha() * 2 == 2_621_440
    # DeepSeek-V3 MLA: 61 layers x (512 latent + 64 RoPE key) = 35,136 elements per token
    assert load_model("deepseek-v3").kv_elements_per_token() == 61 * 576
    # Falcon-7B multi-query: 2 x 32 x 1 x 64
    assert load_model(str(FIXTURES / "falcon-7b")).kv_elements_per_token() == 2 * 32 * 64


def test_family_normalisation():
    falcon7 = load_model(str(FIXTURES / "falcon-7b" / "config.json"))
    assert (falcon7.num_kv_heads, falcon7.parallel_block, falcon7.norms_per_layer) == (1, True, 1)
    assert falcon7.tie_word_embeddings and not falcon7.qkv_bias
    # Falcon-7B card: 7B class; the HF module tree sums to 6,921,720,704
    assert falcon7.params()[0] == 6_921_720_704
    falcon40 = load_model(str(FIXTURES / "falcon-40b"))
    assert (falcon40.num_kv_heads, falcon40.norms_per_layer) == (8, 2)
    neox = load_model(str(FIXTURES / "gpt-neox-20b"))
    assert neox.parallel_block and neox.qkv_bias and not neox.gated_mlp
    assert neox.params()[0] == pytest.approx(20.55e9, rel=0.001)  # GPT-NeoX-20B paper: 20.55B (incl. embeddings)
    qwen = load_model("qwen2.5-7b")
    assert qwen.qkv_bias and not qwen.out_bias  # Qwen2 has q/k/v biases only
    gpt2 = load_model("gpt-2-xl")
    assert gpt2.position_embedding == "learned" and gpt2.tie_word_embeddings and gpt2.norm == "layernorm"
    bloom = load_model("bloom-176b")
    assert bloom.position_embedding == "alibi" and bloom.embedding_norm and bloom.max_position_embeddings == 2048


def test_text_config_nesting_fills_class_defaults():
    # llava-1.5-7b nests a partial LLaMA text_config; missing keys are LlamaConfig defaults (7B shape)
    s = load_model(str(FIXTURES / "llava-1.5-7b"))
    assert (s.hidden_size, s.num_layers, s.intermediate_size, s.vocab_size) == (4096, 32, 11008, 32064)
    assert s.params()[0] == 6_738_415_616 + 2 * 64 * 4096  # 64 extra vocab rows in embedding and head


def test_unknown_preset_suggests_close_ids():
    with pytest.raises(InfercastError, match="did you mean llama-2-7b"):
        load_model("llama-2-7")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 10,
          "intermediate_size": 8, "max_position_embeddings": 16}, "no 'hidden_size'"),
        ({"model_type": "t5"}, "model_type 't5' is not supported"),
        ({"model_type": "llama", "hidden_size": -8, "num_hidden_layers": 2, "num_attention_heads": 2,
          "vocab_size": 10, "intermediate_size": 8, "max_position_embeddings": 16}, "hidden_size"),
        ({"model_type": "gpt2", "n_embd": 10, "n_layer": 2, "n_head": 3, "vocab_size": 10, "n_positions": 8},
         "not a multiple"),
    ],
)
def test_bad_configs_name_the_problem(config, message):
    with pytest.raises(InfercastError, match=message):
        normalise(config, "test")


def test_bad_config_files(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InfercastError, match="not valid JSON"):
        load_model(str(tmp_path / "broken.json"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InfercastError, match="holds no config.json"):
        load_model(str(tmp_path / "empty"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InfercastError, match="JSON object"):
        load_model(str(tmp_path / "list.json"))


def test_config_folder_and_file_load_the_same_spec(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(preset_config("llama-2-7b")))
    a, b = load_model(str(tmp_path)), load_model(str(tmp_path / "config.json"))
    assert a.params() == b.params() == load_model("llama-2-7b").params()


# The training data's models. MPT (llm-foundry, no ALiBi, biases, learned positions of max_seq_len rows, tied head):
#   12 h^2 L (Wqkv 3h^2, out h^2, MLP 2 x 4h^2) + 9h L (biases) + 4h L (two LayerNorms) + V h + S h + 2h
#   MPT-70B: 12*8192^2*80 + 13*8192*80 + 50368*8192 + 2048*8192 + 2*8192 = 64,862,437,376, the NumParams
#   column of llm-foundry's benchmark table (shared/data/measured-training.csv notes; every row is checked
#   in tests/test_training.py).
# Nemotron-4 (GQA, squared-ReLU MLP of 2 matrices, LayerNorm1p with weight and bias, untied 256k vocabulary):
#   L (h (h + 2 kv) + h^2 + 2 h f + 4h) + 2 V h + 2h
#   15B : 32 (6144*8192 + 6144^2 + 2*6144*24576 + 4*6144) + 2*256000*6144 + 2*6144 = 15,628,775,424
#         (the paper's 3.2B embedding + 12.5B non-embedding)
#   340B: 96 (18432*21504 + 18432^2 + 2*18432*73728 + 4*18432) + 2*256000*18432 + 2*18432 = 341,029,195,776
#         (the paper's 9.4B embedding + 331.6B non-embedding)
@pytest.mark.parametrize(("mid", "total"), [("mpt-70b", 64_862_437_376), ("mpt-125m", 125_311_488),
                                            ("nemotron-4-15b", 15_628_775_424), ("nemotron-4-340b", 341_029_195_776)])
def test_training_presets_parameter_counts(mid, total):
    assert load_model(mid).params() == (total, total)


def test_mpt_config_from_the_hub_uses_alibi_and_no_biases():
    # mosaicml/mpt-7b-instruct's config (no_bias, alibi): no position table, LayerNorms of weight only:
    # 12*4096^2*32 + 2*4096*32 + 50432*4096 + 4096 = 6,649,286,656 (the MPT-7B model card's 6.7B)
    spec = load_model(str(FIXTURES / "mpt-7b-instruct"))
    assert (spec.position_embedding, spec.norm_bias, spec.qkv_bias, spec.tie_word_embeddings) == ("alibi", False,
                                                                                                 False, True)
    assert spec.params()[0] == 6_649_286_656
    with pytest.raises(InfercastError, match="attn_config.rope"):
        normalise({"model_type": "mpt", "d_model": 64, "n_heads": 4, "n_layers": 2, "vocab_size": 100,
                   "attn_config": {"rope": True}}, "x")
