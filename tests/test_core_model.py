"""VSSFlow API on the tiny preset: conditions, guided velocity, solvers, invariants and bad input."""
import dataclasses
import json

import pytest
import torch

from vssflow_core import flow
from vssflow_core.config import ModelConfig, preset
from vssflow_core.errors import VSSFlowError
from vssflow_core.model import VSSFlow


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = dataclasses.replace(preset("tiny"), duration_s=2.0)  # L = 50 latent frames
    m = VSSFlow(cfg).eval()
    with torch.no_grad():  # make every weight matter (random, non-trivial)
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def feats(b=2, seconds=2.0, g=None):
    g = g or torch.Generator().manual_seed(1)
    n25, n24, n10 = int(25 * seconds), int(24 * seconds), int(10 * seconds)
    return dict(lip_feat=torch.randn(b, n25, 1024, generator=g), phone_id=torch.randint(1, 70, (b, n25), generator=g),
                synch_feat=torch.randn(b, n24 // 8, 8, 768, generator=g), video_feat=torch.randn(b, n10, 768, generator=g),
                ref_audio_ebd=torch.randn(b, 256, generator=g))


def test_config_roundtrip_and_presets():
    for name in ("tiny", "official"):
        cfg = preset(name)
        assert ModelConfig.from_json(cfg.to_json()) == cfg
    off = preset("official")
    assert off.in_channels == 1952 and off.latent_length == 250 and off.dit.rope_dim == 32
    assert [c.feature_key for c in off.conditions] == ["lip_feat", "phone_id", "synch_feat", "ref_audio_ebd", "video_feat"]
    assert [c.name for c in off.cross_conditions] == ["ref", "video"]  # speaker token first
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("nope")
    with pytest.raises(ValueError, match="num_kv_heads"):
        dataclasses.replace(off.dit, num_kv_heads=5)


def test_official_parameter_count():
    with torch.device("meta"):
        m = VSSFlow(preset("official"))
    n = sum(p.numel() for p in m.parameters())
    assert abs(n - 463.6e6) < 0.2e6, n


def test_encode_shapes_and_resampling(model):
    f = feats()
    with torch.no_grad():
        c = model.encode_conditions(**f)
        assert c.concat.shape == (2, model.config.in_channels - 128, 50)
        assert c.context.shape == (2, 1 + 50, 32)
        assert c.present == ("lip", "phone", "synch", "ref", "video")
        # video 20 -> 50 frames, nearest: latent frame i takes source floor(i * 20 / 50)
        ramp = torch.arange(20.0)[None, :, None].expand(1, 20, 768)
        src = torch.div(torch.arange(50) * 2, 5, rounding_mode="floor")
        one = model.encode_conditions(video_feat=ramp)
        expected = model.cond_proj(ramp[:, src])
        torch.testing.assert_close(one.context[:, 1:], expected)
        assert torch.equal(one.context[:, 0], torch.zeros_like(one.context[:, 0]))  # absent speaker = zero token
        # phone ids shorter than the window are zero-padded: id 0 = "no phoneme" embedding row
        ph = model.encode_conditions(phone_id=torch.full((1, 30), 7))
        emb = model.phone_embedding.weight
        lo = model.config.condition("lip").out_dim
        torch.testing.assert_close(ph.concat[0, lo:lo + emb.shape[1], :30], emb[7][:, None].expand(-1, 30))
        torch.testing.assert_close(ph.concat[0, lo:lo + emb.shape[1], 30:], emb[0][:, None].expand(-1, 20))
        assert ph.context is None  # no cross condition given: zero context, skipped


def test_guidance_invariants(model):
    f = feats()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 128, 50, generator=g)
    with torch.no_grad():
        c = model.encode_conditions(**f)
        v_c = model.velocity(x, 0.3, c)
        torch.testing.assert_close(model.velocity(x, 0.3, c, guidance_scale=1.0), v_c)
        v_u = model.velocity(x, 0.3, c, guidance_scale=0.0)
        torch.testing.assert_close(v_u, model.velocity(x, 0.3, model.encode_conditions(unconditional=True, batch_size=2)))
        # explicit all-zero conditions take the same route as the unconditional branch
        zero = model.encode_conditions(unconditional=True, batch_size=2)
        assert zero.unconditional
        v3 = model.velocity(x, torch.tensor([0.3, 0.3]), c, guidance_scale=3.0)
        torch.testing.assert_close(v3, v_u + 3.0 * (v_c - v_u), atol=1e-5, rtol=1e-5)
        assert (v_c - v_u).abs().max() > 1e-3
        # batch-1 conditions serve several noise rows
        c1 = model.encode_conditions(**{k: v[:1] for k, v in f.items()})
        torch.testing.assert_close(model.velocity(x, 0.3, c1)[0], v_c[0], atol=1e-5, rtol=1e-5)


def test_guidance_rescale(model):
    """guidance_rescale phi scales the guided output by 1 - phi + phi std(cond) / std(guided), per clip:
    0 is plain guidance, 1 gives each clip the conditional output's standard deviation; it does nothing
    without guidance, and a value outside 0..1 is refused."""
    f = feats()
    x = torch.randn(2, 128, 50, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        c = model.encode_conditions(**f)
        v_c, v_g = model.velocity(x, 0.3, c), model.velocity(x, 0.3, c, guidance_scale=3.0)
        torch.testing.assert_close(model.velocity(x, 0.3, c, guidance_scale=3.0, guidance_rescale=0.0), v_g)
        full = model.velocity(x, 0.3, c, guidance_scale=3.0, guidance_rescale=1.0)
        torch.testing.assert_close(full.std(dim=(1, 2)), v_c.std(dim=(1, 2)), atol=1e-5, rtol=1e-4)
        half = model.velocity(x, 0.3, c, guidance_scale=3.0, guidance_rescale=0.5)
        torch.testing.assert_close(half, (v_g + full) / 2, atol=1e-5, rtol=1e-4)
        assert (v_g.std(dim=(1, 2)) - v_c.std(dim=(1, 2))).abs().min() > 1e-3  # the test has something to undo
        torch.testing.assert_close(model.velocity(x, 0.3, c, guidance_rescale=1.0), v_c)
        for bad in (-0.1, 1.5, float("nan"), "x", "0.5", True):
            with pytest.raises(VSSFlowError, match="guidance_rescale must be a number from 0"):
                model.sample(x, c, steps=1, guidance_rescale=bad)


def test_euler_one_step_is_x0_plus_v(model):
    with torch.no_grad():
        c = model.encode_conditions(**feats(1))
        x0 = torch.randn(1, 128, 50, generator=torch.Generator().manual_seed(4))
        out = model.sample(x0, c, solver="euler", steps=1, guidance_scale=2.0)
        torch.testing.assert_close(out, x0 + model.velocity(x0, 0.0, c, 2.0))


@pytest.mark.parametrize("solver", ["euler", "midpoint", "heun", "dopri5"])
def test_solvers_and_callback(model, solver):
    c = model.encode_conditions(**feats(1))
    x0 = torch.randn(1, 128, 50, generator=torch.Generator().manual_seed(5))
    calls = []
    out = model.sample(x0, c, solver=solver, steps=3, guidance_scale=3.0, rtol=1e-3, atol=1e-3,
                       callback=lambda d, t: calls.append((d, t)))
    assert out.shape == x0.shape and torch.isfinite(out).all()
    if solver == "dopri5":
        assert calls and all(t is None for _, t in calls)
    else:
        assert calls == [(1, 3), (2, 3), (3, 3)]


def test_solvers_converge_to_each_other(model):
    c = model.encode_conditions(**feats(1))
    x0 = torch.randn(1, 128, 50, generator=torch.Generator().manual_seed(6))
    ref = model.sample(x0, c, solver="dopri5", guidance_scale=3.0, rtol=1e-6, atol=1e-6)
    err = {s: (model.sample(x0, c, solver=s, steps=8, guidance_scale=3.0) - ref).abs().max().item()
           for s in ("euler", "midpoint", "heun")}
    assert err["midpoint"] < err["euler"] and err["heun"] < err["euler"], err


def test_callback_can_cancel(model):
    c = model.encode_conditions(**feats(1))

    def cancel(done, total):
        if done == 2:
            raise InterruptedError("cancelled")

    with pytest.raises(InterruptedError):
        model.sample(torch.zeros(1, 128, 50), c, steps=5, callback=cancel)


def test_bad_inputs(model):
    f = feats()
    with pytest.raises(VSSFlowError, match=r"unknown condition feature.*'lips'"):
        model.encode_conditions(lips=f["lip_feat"])
    with pytest.raises(VSSFlowError, match=r"'lip_feat'.*D = 1024.*\[2, 50, 512\]"):
        model.encode_conditions(lip_feat=torch.randn(2, 50, 512))
    bad = f["video_feat"].clone()
    bad[0, 3, 5] = float("nan")
    with pytest.raises(VSSFlowError, match="'video_feat'.*NaN"):
        model.encode_conditions(video_feat=bad)
    with pytest.raises(VSSFlowError, match="'video_feat'.*expected about 20 frames.*got 50"):
        model.encode_conditions(video_feat=torch.randn(2, 50, 768))
    with pytest.raises(VSSFlowError, match="'lip_feat'.*longer than the model window"):
        model.encode_conditions(lip_feat=torch.randn(2, 60, 1024))
    with pytest.raises(VSSFlowError, match="'phone_id'.*integer ids"):
        model.encode_conditions(phone_id=f["phone_id"].float())
    with pytest.raises(VSSFlowError, match="'phone_id'.*0..199"):
        model.encode_conditions(phone_id=torch.full((2, 50), 300))
    with pytest.raises(VSSFlowError, match="'video_feat'.*batch size 1 differs.*2"):
        model.encode_conditions(lip_feat=f["lip_feat"], video_feat=f["video_feat"][:1])
    c = model.encode_conditions(**f)
    with pytest.raises(VSSFlowError, match=r"x_t: expected \[B, 128, 50\].*\[2, 128, 40\]"):
        model.velocity(torch.randn(2, 128, 40), 0.5, c)
    with pytest.raises(VSSFlowError, match="batch size 2"):
        model.velocity(torch.randn(3, 128, 50), 0.5, c)
    with pytest.raises(VSSFlowError, match=r"t: expected a scalar or \[B\]"):
        model.velocity(torch.randn(2, 128, 50), torch.rand(3), c)
    with pytest.raises(VSSFlowError, match="solver"):
        model.sample(torch.randn(2, 128, 50), c, solver="rk4")


def test_drop_conditions():
    f = {"lip_feat": torch.ones(1), "video_feat": torch.ones(1)}
    g = torch.Generator().manual_seed(0)
    outs = [flow.drop_conditions(f, 0.5, {"lip_feat": 0.5}, g) for _ in range(400)]
    uncond = sum(o.get("unconditional", False) for o in outs)
    lip_dropped = sum(o["lip_feat"] is None and not o.get("unconditional") for o in outs)
    assert 150 < uncond < 250 and 60 < lip_dropped < 140
    assert all(o["video_feat"] is not None for o in outs if not o.get("unconditional"))
    assert flow.drop_conditions(f, 0.0, None, g) == f


def test_loss_backward_and_batched_training_grad(model):
    m = VSSFlow(model.config)
    c = m.encode_conditions(**feats())
    loss = flow.flow_matching_loss(m, torch.randn(2, 128, 50), c, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert loss.item() > 0
    assert m.lip_proj[0].weight.grad.abs().sum() > 0 and m.cond_proj[0].weight.grad.abs().sum() > 0
    assert m.vaflow.transformer_blocks[0].attn2.to_k.weight.grad.abs().sum() > 0


def test_training_after_inference_mode(model):
    """ComfyUI samples under torch.inference_mode(); caches built there must not break training later."""
    m = VSSFlow(model.config)
    m.load_state_dict(model.state_dict())
    m.set_precision("fp32-fused")
    c = m.encode_conditions(**feats(1))
    with torch.inference_mode():
        m.sample(torch.randn(1, 128, 50), c, steps=2)
    m.set_precision("fp32")
    with torch.inference_mode():
        before = m.sample(torch.ones(1, 128, 50), c, steps=2)
    torch.testing.assert_close(before, model.sample(torch.ones(1, 128, 50), model.encode_conditions(**feats(1)), steps=2))
    m.train()
    loss = flow.flow_matching_loss(m, torch.randn(2, 128, 50), m.encode_conditions(**feats()),
                                   generator=torch.Generator().manual_seed(0))
    loss.backward()
    torch.optim.SGD(m.parameters(), lr=0.1).step()
    assert m.vaflow.transformer_blocks[0].attn1.to_k.weight.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():  # the fused q|k|v weights follow the update
        after = m.sample(torch.ones(1, 128, 50), m.encode_conditions(**feats(1)), steps=2)
        m.vaflow.transformer_blocks[0].attn1.fuse_qkv = False
        unfused = m.sample(torch.ones(1, 128, 50), m.encode_conditions(**feats(1)), steps=2)
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, unfused, atol=1e-5, rtol=1e-5)


def test_non_finite_inputs_are_refused(model):
    L, ca = model.config.latent_length, model.config.audio_channels
    cond = model.encode_conditions(latent_length=L)
    nan = torch.full((1, ca, L), float("nan"))
    with pytest.raises(VSSFlowError, match="x_t contains NaN"):
        model.velocity(nan, 0.5, cond, guidance_scale=3.0)
    with pytest.raises(VSSFlowError, match="guidance_scale must be a finite"):
        model.sample(torch.zeros(1, ca, L), cond, steps=1, guidance_scale=float("nan"))
    with pytest.raises(VSSFlowError, match="flow_matching_loss: x1 must be finite"):
        flow.flow_matching_loss(model, nan, cond)
    video = torch.zeros(1, 20, model.config.condition("video").input_dim)
    video[0, 3, 5] = float("inf")
    with pytest.raises(VSSFlowError, match="video_feat"):
        model.encode_conditions(video_feat=video)
    with pytest.raises(VSSFlowError, match="unknown model preset"):
        preset("huge")


def test_model_built_under_inference_mode_samples():
    """ComfyUI runs nodes under torch.inference_mode(): weights created there are inference tensors."""
    import torch

    from vssflow_core.config import preset
    from vssflow_core.model import VSSFlow

    with torch.inference_mode():
        model = VSSFlow(preset("tiny")).eval()
        model.set_precision("fp32-fused")  # its folded-weight cache keys on the weights' versions
        cond = model.encode_conditions(batch_size=1)
        noise = torch.randn(1, model.config.audio_channels, model.config.latent_length)
        out = model.sample(noise, cond, solver="euler", steps=2, guidance_scale=2.0)
    assert out.shape == noise.shape and torch.isfinite(out).all()


def test_condition_input_scale(model):
    """input_scale multiplies the raw feature before its projection; configs written before the
    field existed load with 1.0."""
    import json

    cfg = model.config
    scaled_cfg = dataclasses.replace(cfg, conditions=tuple(
        dataclasses.replace(c, input_scale=3.0) if c.feature_key == "lip_feat" else c for c in cfg.conditions))
    scaled = VSSFlow(scaled_cfg).eval()
    scaled.load_state_dict(model.state_dict())
    f = feats()
    with torch.no_grad():
        a = scaled.encode_conditions(50, **f)
        b = model.encode_conditions(50, **{**f, "lip_feat": f["lip_feat"] * 3.0})
        c = model.encode_conditions(50, **f)
    assert torch.allclose(a.concat, b.concat, atol=1e-5) and not torch.allclose(a.concat, c.concat, atol=1e-3)
    old = json.loads(cfg.to_json())
    for cond in old["conditions"]:
        del cond["input_scale"]
    assert ModelConfig.from_json(json.dumps(old)) == cfg


def test_condition_context_frames(model):
    """context_frames = 1: the projection reads frames k-1, k, k+1 at the native rate, before
    resampling. With the neighbours' weights at zero it computes what the plain projection computes
    (how a trained file is grown); the setting survives a round trip, and old configs load with 0."""
    import json

    cfg = model.config
    wide_cfg = dataclasses.replace(cfg, conditions=tuple(
        dataclasses.replace(c, context_frames=1) if c.feature_key == "synch_feat" else c for c in cfg.conditions))
    wide = VSSFlow(wide_cfg).eval()
    state = model.state_dict()
    w = state["synch_proj.0.weight"]  # [H, 768]
    grown = torch.zeros(w.shape[0], 3 * w.shape[1])
    grown[:, w.shape[1]: 2 * w.shape[1]] = w
    wide.load_state_dict({**state, "synch_proj.0.weight": grown})
    f = feats()
    with torch.no_grad():
        torch.testing.assert_close(wide.encode_conditions(50, **f).concat, model.encode_conditions(50, **f).concat,
                                   atol=1e-5, rtol=1e-5)
        assert wide.encode_conditions(50).concat.shape == model.encode_conditions(50).concat.shape  # absent: zeros
        wide.synch_proj[0].weight[:, : w.shape[1]].normal_(0, 0.05)  # now frame k-1 matters
        a = wide.encode_conditions(50, **f).concat
        later = f["synch_feat"].clone().reshape(2, 48, 768)
        later[:, 11] += 1.0  # change native frame 11 (24 Hz) only; latent frames 12 and 13 both read 12
        b = wide.encode_conditions(50, **{**f, "synch_feat": later.reshape(2, 6, 8, 768)}).concat
    changed = (a - b).abs().amax(dim=(0, 1)) > 1e-6  # [L]
    # latent frames that read native frame 11 (itself) or 12 (its successor, through frame k-1): 3 of them;
    # a context taken after resampling would reach only 2
    src = torch.nn.functional.interpolate(torch.arange(48.0)[None, None], size=50, mode="nearest-exact")[0, 0]
    assert torch.equal(changed, (src == 11) | (src == 12)) and int(changed.sum()) == 3
    assert ModelConfig.from_json(wide_cfg.to_json()) == wide_cfg
    old = json.loads(cfg.to_json())
    for cond in old["conditions"]:
        del cond["context_frames"]
    assert ModelConfig.from_json(json.dumps(old)) == cfg


def test_with_neighbours_layout_and_bad_specs():
    """[B, N, D] -> [B, N, 3D] as (k-1 | k | k+1), zeros beyond the ends; context on ids or a
    global condition, or a negative context, is refused when the config is built."""
    from vssflow_core.config import ConditionSpec
    from vssflow_core.model.conditioning import with_neighbours

    x = torch.arange(1.0, 9.0).reshape(1, 4, 2)  # frames (1,2) (3,4) (5,6) (7,8)
    out = with_neighbours(x, 1)
    assert out.shape == (1, 4, 6)
    assert out[0, 0].tolist() == [0, 0, 1, 2, 3, 4] and out[0, 3].tolist() == [5, 6, 7, 8, 0, 0]
    assert with_neighbours(x, 0) is x
    for bad in (dict(projection="embedding", input_dim=200), dict(rate_hz=None, route="cross"), dict(context_frames=-1)):
        kw = dict(name="m", module_name="m_proj", input_dim=4, out_dim=8, route="concat", rate_hz=25.0,
                  projection="mlp2", hidden_dim=8, context_frames=1)
        with pytest.raises(ValueError, match="context_frames"):
            ConditionSpec(**{**kw, **bad})


def test_x_prediction_velocity_guidance_and_config(model):
    """prediction="x": the DiT's output is the clean latent; velocity = (x1_hat - x_t) / max(1 - t, 0.05),
    guidance on it equals guidance on the branch velocities, and the setting survives a round trip."""
    xm = VSSFlow(dataclasses.replace(model.config, prediction="x")).eval()
    xm.load_state_dict(model.state_dict())
    f = feats()
    x = torch.randn(2, 128, 50, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([0.3, 0.99])
    with torch.no_grad():
        c = xm.encode_conditions(**f)
        raw = model.velocity(x, t, c)  # same weights, read as a velocity model: the raw output
        v = xm.velocity(x, t, c)
        torch.testing.assert_close(v, (raw - x) / torch.tensor([0.7, 0.05])[:, None, None])
        v_c, v_u = xm.velocity(x, 0.4, c), xm.velocity(x, 0.4, c, guidance_scale=0.0)
        torch.testing.assert_close(xm.velocity(x, 0.4, c, guidance_scale=3.0), v_u + 3.0 * (v_c - v_u),
                                   atol=1e-4, rtol=1e-4)
        # t = 1 (dopri5's last stage) stays finite; one Euler step from noise lands on the estimate
        assert torch.isfinite(xm.velocity(x, 1.0, c)).all()
        out = xm.sample(x, c, solver="euler", steps=1, guidance_scale=None)
        torch.testing.assert_close(out, model.velocity(x, 0.0, c), atol=1e-5, rtol=1e-5)
    # the flow-matching loss trains the velocity it implies
    loss = flow.flow_matching_loss(xm, x, c, x0=torch.zeros_like(x), t=torch.tensor([0.5, 0.5]))
    assert torch.isfinite(loss)
    cfg = xm.config
    assert ModelConfig.from_json(cfg.to_json()).prediction == "x"
    old = {k: v for k, v in json.loads(cfg.to_json()).items() if k != "prediction"}
    assert ModelConfig.from_json(json.dumps(old)).prediction == "v"  # files from before the field
    with pytest.raises(ValueError, match="prediction must be one of"):
        dataclasses.replace(cfg, prediction="eps")


def test_time_shift_grid_and_sampling(model):
    """time_grid(shift=s) maps u to 1 - s(1-u)/(1+(s-1)(1-u)): uniform at s = 1, more steps near the
    noise for s > 1; a fixed-step sampler follows it, dopri5 ignores it; bad shifts are refused."""
    torch.testing.assert_close(flow.time_grid(4), torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    g = flow.time_grid(4, shift=3.0)
    torch.testing.assert_close(g, torch.tensor([0.0, 1 - 2.25 / 2.5, 1 - 1.5 / 2.0, 1 - 0.75 / 1.5, 1.0]))
    assert (g.diff() > 0).all() and g.diff()[0] < g.diff()[-1]  # first steps (near the noise) are short
    c = model.encode_conditions(**feats(1))
    x0 = torch.randn(1, 128, 50, generator=torch.Generator().manual_seed(7))
    seen = []
    fn = lambda t, x: seen.append(float(t)) or torch.zeros_like(x)
    flow.integrate(fn, x0, solver="euler", steps=4, time_shift=3.0)
    assert seen == pytest.approx(g[:-1].tolist())
    a = model.sample(x0, c, solver="midpoint", steps=3, time_shift=3.0)
    assert not torch.allclose(a, model.sample(x0, c, solver="midpoint", steps=3))
    torch.testing.assert_close(model.sample(x0, c, solver="dopri5", time_shift=3.0, rtol=1e-3, atol=1e-3),
                               model.sample(x0, c, solver="dopri5", rtol=1e-3, atol=1e-3))
    with pytest.raises(VSSFlowError, match="time shift"):
        flow.time_grid(4, shift=0.0)


def test_sampling_defaults_in_the_config(model):
    """sound_guidance_scale / sound_time_shift / sound_noise_scale apply without a transcript (None =
    guidance_scale / time_shift / noise_scale); the new fields survive a JSON round trip, and files
    from before them read as the official defaults."""
    cfg = dataclasses.replace(model.config, guidance_scale=3.0, sound_guidance_scale=1.5, time_shift=5.0,
                              sound_time_shift=3.0, noise_scale=0.8, sound_noise_scale=1.0, sound_guidance_rescale=0.7)
    assert (cfg.guidance_for(True), cfg.guidance_for(False)) == (3.0, 1.5)
    assert (cfg.guidance_rescale_for(True), cfg.guidance_rescale_for(False)) == (0.0, 0.7)
    assert (cfg.time_shift_for(True), cfg.time_shift_for(False)) == (5.0, 3.0)
    assert (cfg.noise_scale_for(True), cfg.noise_scale_for(False)) == (0.8, 1.0)
    assert dataclasses.replace(cfg, sound_noise_scale=None).noise_scale_for(False) == 0.8
    assert model.config.guidance_for(False) == model.config.guidance_scale
    assert model.config.time_shift_for(False) == model.config.time_shift == 1.0
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    new_keys = ("sound_guidance_scale", "time_shift", "sound_time_shift", "noise_scale", "sound_noise_scale",
                "guidance_rescale", "sound_guidance_rescale")
    old = {k: v for k, v in json.loads(cfg.to_json()).items() if k not in new_keys}
    again = ModelConfig.from_json(json.dumps(old))
    assert again.sound_guidance_scale is None and again.time_shift == 1.0 and again.sound_time_shift is None
    assert again.noise_scale == 1.0 and again.sound_noise_scale is None
    assert again.guidance_rescale == 0.0 and again.sound_guidance_rescale is None
    with pytest.raises(ValueError, match="sound_guidance_rescale must be a number from 0 to 1"):
        dataclasses.replace(cfg, sound_guidance_rescale=2.0)
    with pytest.raises(ValueError, match="guidance_rescale must be a number from 0 to 1"):
        dataclasses.replace(cfg, guidance_rescale=None)
    with pytest.raises(ValueError, match="time_shift must be > 0"):
        dataclasses.replace(cfg, time_shift=-1.0)
    with pytest.raises(ValueError, match="sound_time_shift must be > 0"):
        dataclasses.replace(cfg, sound_time_shift=0.0)
    with pytest.raises(ValueError, match="noise_scale must be > 0"):
        dataclasses.replace(cfg, noise_scale=0.0)


def test_x_range_clamps_the_clean_latent_estimate(model):
    """prediction="x": x_range clamps the guided estimate before it becomes a velocity (one runaway
    frame cannot grow); a velocity model ignores it."""
    xm = VSSFlow(dataclasses.replace(model.config, prediction="x")).eval()
    xm.load_state_dict(model.state_dict())
    c = xm.encode_conditions(**feats())
    x = torch.randn(2, 128, 50, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        raw = model.velocity(x, 0.5, c, 2.0)  # the same weights read as velocity: the raw guided output
        torch.testing.assert_close(xm.velocity(x, 0.5, c, 2.0, x_range=(-0.01, 0.02)),
                                   (raw.clamp(-0.01, 0.02) - x) / 0.5)
        torch.testing.assert_close(model.velocity(x, 0.5, c, 2.0, x_range=(-0.01, 0.02)), raw)
        out = xm.sample(x, c, solver="euler", steps=1, guidance_scale=2.0, x_range=(-0.01, 0.02))
    assert float(out.min()) >= -0.01 - 1e-6 and float(out.max()) <= 0.02 + 1e-6


def test_dopri5_names_the_package_that_failed_to_import(monkeypatch):
    from vssflow_core import flow

    for missing in ("torchdiffeq", "scipy"):
        def fail(name, *args, _missing=missing, **kwargs):
            raise ImportError(f"No module named '{_missing}'", name=_missing)

        monkeypatch.setattr("builtins.__import__", fail)  # torchdiffeq, or scipy inside it, is missing
        try:
            with pytest.raises(VSSFlowError, match=f"could not import '{missing}': `pip install {missing}`"):
                flow._dopri5(None, torch.zeros(1, 2, 3), None, 1e-5, 1e-5, None, None)
        finally:
            monkeypatch.undo()
