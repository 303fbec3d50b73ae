"""Parity of the VSSFlow model with outputs of the official code (fixtures/official, random weights)."""
import pytest
import torch
from safetensors.torch import load_file

from vssflow_core.official import load_official


@pytest.fixture(scope="module")
def vaflow(official_fixtures):
    t = load_file(str(official_fixtures / "vaflow_condition.safetensors"))
    state = {k[len("weights."):]: v for k, v in t.items() if k.startswith("weights.")}
    return t, state


@pytest.fixture(scope="module")
def model(vaflow):
    return load_official(vaflow[1], attention_head_dim=32)


@pytest.fixture(scope="module")
def cond(vaflow, model):
    t = vaflow[0]
    with torch.no_grad():
        return model.encode_conditions(video_feat=t["input.video_feat"], synch_feat=t["input.synch_feat"],
                                       lip_feat=t["input.lip_feat"], phone_id=t["input.phone_id"],
                                       ref_audio_ebd=t["input.ref_audio_ebd"])


def test_dit_forward_matches_official(official_fixtures):
    from vssflow_core.config import DiTConfig
    from vssflow_core.model.dit import DiT

    t = load_file(str(official_fixtures / "dit.safetensors"))
    state = {k[len("weights."):]: v for k, v in t.items() if k.startswith("weights.")}
    dit = DiT(DiTConfig(num_layers=2, num_heads=4, head_dim=32, num_kv_heads=2, cross_dim=64, ff_inner_dim=512), 256)
    dit.load_state_dict(state, strict=True)
    dit.eval()
    x, ts, ctx = t["input.hidden_states"], t["input.timestep"], t["input.encoder_hidden_states"]
    with torch.no_grad():
        cos, sin = dit.rope(251, x.device)
        assert torch.equal(cos, t["input.rotary_cos"]) and torch.equal(sin, t["input.rotary_sin"])
        torch.testing.assert_close(dit.time_token(ts)[:, 0], t["intermediate.time_hidden_states"], atol=1e-5, rtol=0)
        torch.testing.assert_close(dit(x, ts, ctx), t["output.sample"], atol=1e-5, rtol=0)
        torch.testing.assert_close(dit(x, ts, torch.zeros_like(ctx)), t["output.sample_zero_context"], atol=1e-5, rtol=0)
        torch.testing.assert_close(dit(x, ts, None), t["output.sample_zero_context"], atol=1e-5, rtol=0)
        # negative control: one perturbed weight must break the comparison
        dit.transformer_blocks[1].attn1.to_q.weight[0, 0] += 1e-2
        assert (dit(x, ts, ctx) - t["output.sample"]).abs().max() > 1e-5


def test_conditions_match_official(vaflow, cond):
    t = vaflow[0]
    torch.testing.assert_close(cond.concat, t["cond.latent_cond"], atol=1e-6, rtol=0)
    torch.testing.assert_close(cond.context, t["cond.cross_attn_cond"], atol=1e-6, rtol=0)


def test_velocities_match_official(vaflow, model, cond):
    t = vaflow[0]
    x = t["input.x_t_audio"]
    with torch.no_grad():
        v = model.velocity(x, t["input.t_per_sample"], cond)
        torch.testing.assert_close(v, t["output.velocity"][:, :128], atol=1e-5, rtol=0)
        v3 = model.velocity(x, t["input.t_scalar_cfg"], cond, guidance_scale=3.0)
        torch.testing.assert_close(v3, t["output.velocity_cfg_w3"][:, :128], atol=1e-5, rtol=0)
        # w < 1: the official wrapper returns the unconditional prediction
        v05 = model.velocity(x, t["input.t_scalar_cfg"], cond, guidance_scale=0.5)
        torch.testing.assert_close(v05, t["output.velocity_cfg_w0p5"][:, :128], atol=1e-5, rtol=0)
        # batched CFG equals two separate passes
        v_c = model.predict(x, 0.4, cond, "cond")
        v_u = model.predict(x, 0.4, cond, "uncond")
        torch.testing.assert_close(v3, v_u + 3.0 * (v_c - v_u), atol=1e-5, rtol=0)
        assert (v3 - v).abs().max() > 1e-2  # guidance changes the result


def test_training_step_matches_official(vaflow, model, cond):
    from vssflow_core import flow

    t = vaflow[0]
    train_cond = model.encode_conditions(video_feat=t["input.video_feat"], synch_feat=t["input.synch_feat"],
                                         lip_feat=t["input.lip_feat"], phone_id=t["input.phone_id"],
                                         ref_audio_ebd=t["input.ref_audio_ebd"])
    torch.testing.assert_close(train_cond.context, t["training.cross_attn_cond"], atol=1e-6, rtol=0)
    with torch.no_grad():
        loss = flow.flow_matching_loss(model, t["training.x_1_audio"], train_cond,
                                       x0=t["training.x_0_audio"], t=t["training.t"])
        tt = t["training.t"][:, None, None]
        x_t = (1 - tt) * t["training.x_0_audio"] + tt * t["training.x_1_audio"]
        torch.testing.assert_close(x_t, t["training.x_t"][:, :128], atol=1e-6, rtol=0)
        pred = model.velocity(x_t, t["training.t"], train_cond)
    torch.testing.assert_close(pred, t["training.pred"][:, :128], atol=1e-5, rtol=0)
    torch.testing.assert_close(loss, t["training.loss"], atol=1e-6, rtol=1e-5)


def test_euler_sampling_matches_official(official_fixtures, model, cond):
    s = load_file(str(official_fixtures / "sampling.safetensors"))
    # the official run's concatenated conditions; float32 projections round differently across CPUs
    torch.testing.assert_close(cond.concat, s["input.x_init"][:, 128:], atol=1e-6, rtol=1e-6)
    seen = []
    out = model.sample(s["input.x_init"][:, :128], cond, solver="euler", steps=4, guidance_scale=3.0,
                       callback=lambda done, total: seen.append((done, total)))
    torch.testing.assert_close(out, s["output.euler4.final_latent"][:, :128], atol=5e-5, rtol=0)
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_dopri5_sampling_matches_official(official_fixtures, model, cond):
    s = load_file(str(official_fixtures / "sampling.safetensors"))
    evals = []
    fn = model.velocity
    model.velocity = lambda x, t, c, g=None, **kw: (evals.append(float(t)), fn(x, t, c, g, **kw))[1]
    try:
        out = model.sample(s["input.x_init"][:, :128], cond, solver="dopri5", steps=10, guidance_scale=3.0)
    finally:
        del model.velocity
    torch.testing.assert_close(out, s["output.dopri510.final_latent"][:, :128], atol=5e-4, rtol=0)
    assert len(evals) == s["output.dopri510.t_evals"].numel() == 26


@pytest.mark.parametrize("precision,atol,rel", [("fp32-fused", 1e-5, 1e-5), ("bf16", None, 0.03), ("int8", None, 0.03)])
def test_precision_modes_stay_close(vaflow, precision, atol, rel):
    t = vaflow[0]
    m = load_official(vaflow[1], attention_head_dim=32).set_precision(precision)
    ref = t["output.velocity_cfg_w3"][:, :128]
    with torch.no_grad():
        cond = m.encode_conditions(video_feat=t["input.video_feat"], synch_feat=t["input.synch_feat"],
                                   lip_feat=t["input.lip_feat"], phone_id=t["input.phone_id"],
                                   ref_audio_ebd=t["input.ref_audio_ebd"])
        v = m.velocity(t["input.x_t_audio"], t["input.t_scalar_cfg"], cond, guidance_scale=3.0)
    err = (v - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()
    assert err < rel, err
    if atol is not None:
        torch.testing.assert_close(v, ref, atol=atol, rtol=0)
    # the float32 weights and keys are untouched by the precision mode
    assert set(m.state_dict()) == set(vaflow[1]) - {k for k in vaflow[1] if k.startswith(("image_encoder.", "vae.", "vocoder."))}
    m.set_precision("fp32")
    with torch.no_grad():
        torch.testing.assert_close(m.velocity(t["input.x_t_audio"], t["input.t_scalar_cfg"], cond, 3.0), ref, atol=1e-5, rtol=0)


def test_unknown_precision(model):
    from vssflow_core.errors import VSSFlowError

    with pytest.raises(VSSFlowError, match="precision: expected one of"):
        model.set_precision("fp8")
