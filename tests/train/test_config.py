"""Presets: faithful reproduces the authors' loop settings, corrected fixes them; clear errors."""

from __future__ import annotations

import pytest

from harness.errors import UsageError
from harness.mixing import BATCH_SIZES, GRAD_ACCUM
from harness.train.config import CONFIG_DIR, TrainConfig, load_config, parse_override, preset_names

SIZES = {"base": ("250m", "google/flan-t5-base"), "large": ("780m", "google/flan-t5-large"),
         "xl": ("3b", "google/flan-t5-xl"), "xxl": ("11b", "google/flan-t5-xxl")}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_one_faithful_and_one_corrected_preset_per_size(name):
    size, model = SIZES[name]
    faithful, corrected = load_config(f"faithful-{name}"), load_config(f"corrected-{name}")
    for cfg in (faithful, corrected):
        assert cfg.model == model and cfg.size == size
        assert cfg.batch_plan() == (BATCH_SIZES[size], GRAD_ACCUM[size])
    # the authors' loop (authors-code-protocol.md §5)
    assert (faithful.lr, faithful.weight_decay, faithful.warmup_steps) == (5e-4, 0.01, 10)
    assert faithful.schedule_length == "authors_bug" and faithful.max_grad_norm is None and faithful.dropout is False
    assert faithful.precision == "fp32" and faithful.variant == "faithful" and faithful.normalization == "micro_batch_mean"
    assert faithful.mix == "authors" and faithful.mix_mode == "fully_random" and faithful.epochs == 10
    # the corrections
    assert corrected.schedule_length == "actual" and corrected.max_grad_norm and corrected.dropout is True
    assert corrected.variant == "corrected" and corrected.normalization == "token_weighted"


def test_the_authors_schedule_never_decays_and_the_corrected_one_does():
    import torch

    from harness.train.trainer import _scheduler

    lrs = {}
    for name in ("faithful-xl", "corrected-xl"):
        cfg = load_config(name)
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
        steps_per_epoch, micro = 4351, 130_530  # 3B: 130,530 micro-batches at grad_accum 30
        sched, total = _scheduler(cfg, opt, steps_per_epoch, micro)
        seen = []
        for _ in range(cfg.epochs * steps_per_epoch):
            opt.step()
            sched.step()
            seen.append(sched.get_last_lr()[0])
        lrs[name] = seen
    # after all 10 epochs the buggy cosine has run 1/30 of its length: LR still > 97% of its peak
    assert min(lrs["faithful-xl"][10:]) > 0.97 * 5e-4
    assert lrs["corrected-xl"][-1] < 1e-3 * 5e-4


def test_presets_are_listed_and_unknown_names_rejected():
    assert {"faithful", "corrected", "cpu-tiny", "faithful-base", "corrected-xxl"} <= set(preset_names())
    with pytest.raises(UsageError, match="no such file or preset 'nope'"):
        load_config("nope")


def test_unknown_and_mistyped_settings_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: corrected\nlearning_rate: 0.1\n")
    with pytest.raises(UsageError, match=r"bad.yaml: unknown setting 'learning_rate'"):
        load_config(bad)
    bad.write_text("dropout: 3\n")
    with pytest.raises(UsageError, match="bad.yaml: dropout must be true or false"):
        load_config(bad)


@pytest.mark.parametrize("changes,message", [
    ({"loss": "kl"}, "loss"), ({"variant": "exact"}, "variant"), ({"formats": ["nope"]}, "formats"),
    ({"size": "7b"}, "size"), ({"lr": 0}, "lr"), ({"checkpoint_every_examples": 0}, "checkpoint_every_examples"),
    ({"mix": "weighted"}, "mix_weights"), ({"size": None}, "batch_sizes"),
])
def test_check_rejects_bad_options(changes, message):
    cfg = TrainConfig(**{"formats_dir": "x", **changes})
    with pytest.raises(UsageError, match=message):
        cfg.check()


def test_overrides_read_as_yaml():
    assert load_config("faithful-base", dict([parse_override("lr=1e-4")])).lr == 1e-4  # YAML reads 1e-4 as text
    assert parse_override("formats=[zero_shot_cot]") == ("formats", ["zero_shot_cot"])
    assert parse_override("max_grad_norm=null") == ("max_grad_norm", None)
    cfg = load_config("faithful-base", {"lr": 1, "epochs": 2})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.epochs == 2


@pytest.mark.parametrize("text, value", [("8", 8), ("'8'", "8"), ("auto", "auto"), ("auto:4", "auto:4"), ('"auto"', "auto")])
def test_eval_batch_size_takes_lm_evals_forms(text, value):
    cfg = load_config("faithful-base", dict([parse_override(f"eval_batch_size={text}")]) | {"formats_dir": "x"})
    cfg.check()  # no error
    assert cfg.eval_batch_size == value  # handed to `harness eval` as given; it parses "8" to 8


@pytest.mark.parametrize("value", ["0", "-1", "fast", "auto:x", "auto:0"])
def test_bad_eval_batch_size_names_the_setting_and_the_forms(value, tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text(f"base: cpu-tiny\neval_batch_size: {value}\n")
    with pytest.raises(UsageError, match=r"^eval_batch_size: .* positive integer, auto, or auto:N"):
        load_config(preset, {"formats_dir": "x"}).check()


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads_and_checks(name):
    load_config(name, {"formats_dir": "x"}).check()


def test_paper_presets_bound_the_evaluated_checkpoints_and_one_cadence_is_set():
    for name in ("faithful-base", "faithful-xl", "corrected-large", "corrected-xxl"):
        cfg = load_config(name)
        assert cfg.checkpoints_per_run == 13 and cfg.checkpoint_every_examples is None
    load_config("faithful-xl", {"checkpoints_per_run": None, "checkpoint_every_examples": 10_000, "formats_dir": "x"}).check()
    with pytest.raises(UsageError, match="checkpoint_every_examples, checkpoints_per_run: set exactly one"):
        TrainConfig(formats_dir="x", checkpoints_per_run=13).check()
    with pytest.raises(UsageError, match="set exactly one"):
        TrainConfig(formats_dir="x", checkpoint_every_examples=None).check()
    with pytest.raises(UsageError, match="checkpoints_per_run"):
        TrainConfig(formats_dir="x", checkpoint_every_examples=None, checkpoints_per_run=0).check()
    assert load_config("cpu-tiny").checkpoints_per_run is None and load_config("cpu-tiny").checkpoint_every_examples == 200


DECODER_ONLY_PRESETS = {
    "corrected-qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
    "corrected-qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B",
    "corrected-smollm2-360m": "HuggingFaceTB/SmolLM2-360M",
    "corrected-llama-3.2-1b": "meta-llama/Llama-3.2-1B",
}


@pytest.mark.parametrize("name", sorted(DECODER_ONLY_PRESETS))
def test_decoder_only_presets_distil_by_distribution_matching(name):
    from harness.mixing import FORMATS

    cfg = load_config(name, {"formats_dir": "x"})
    cfg.check()
    assert cfg.model == DECODER_ONLY_PRESETS[name]
    assert (cfg.loss, cfg.variant, cfg.precision, cfg.model_type, cfg.chat_template) == ("distribution", "corrected", "bf16", "auto", False)
    sizes, accum = cfg.batch_plan()
    assert set(sizes) == set(FORMATS) and accum > 1
    assert sizes["in_context_cot"] < sizes["in_context_answer_only"] < sizes["zero_shot_cot"] < sizes["zero_shot_answer_only"]
    assert cfg.lr <= 5e-5  # not Flan-T5's 5e-4
    assert "ESTIMATES for one 80 GB GPU" in (CONFIG_DIR / f"{name}.yaml").read_text()  # the sizes say what they are


def test_cpu_tiny_gpt2_is_the_decoder_only_pipeline_check():
    from transformers import AutoConfig

    from harness.train.student import resolve

    cfg = load_config("cpu-tiny-gpt2", {"formats_dir": "x"})
    cfg.check()
    assert cfg.model == "tiny-gpt2" and cfg.loss == "distribution" and cfg.precision == "fp32"
    path, pipeline_check = resolve(cfg.model)
    config = AutoConfig.from_pretrained(path)
    assert pipeline_check and config.model_type == "gpt2" and not config.is_encoder_decoder
    assert cfg.max_source_tokens + 256 <= config.n_positions  # prompt + a 256-token target fit GPT-2's positions
