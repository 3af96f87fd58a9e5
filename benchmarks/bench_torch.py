"""The PyTorch reference train steps that `bench_train.py --torch_path` times beside ours.

`cyclegan` follows junyanz/pytorch-CycleGAN-and-pix2pix (ResnetGenerator, NLayerDiscriminator,
instance norm without affine parameters, LSGAN, L1 cycle x 10, image pool of 50; the generators'
update, then the discriminators' on pooled fakes). `ssa_cyclegan` adds what SSA-CycleGAN adds, as
docs/method.md describes it: two attention networks (c7s2-ngf, c3s2-2ngf, a residual block,
two upsample + c3 stages, c7-1, sigmoid), the paper's Eq. 1 composition with attention
recomputed on the fakes in the cycle, the L1 mask loss on A_t, spectral normalisation
(`torch.nn.utils.spectral_norm`) on every discriminator conv, and, in the `frozen` phase, attention
networks no longer trained and discriminators shown attention-masked images.

`build_torch_step(...)` returns a callable running one step, so that both frameworks can take turns
in one process. `precision` is `fp32` (eager float32) or `bf16` (`torch.autocast("cpu",
torch.bfloat16)` around the forward passes and losses, as PyTorch recommends for CPU mixed
precision). PyTorch is never a dependency of the project: it is imported from `torch_path`.
"""

from __future__ import annotations

import contextlib
import sys


def build_torch_step(torch_path: str, size: int, system: str, phase: str, precision: str, ngf: int = 64,
                     ndf: int = 64, n_res_blocks: int = 9, attention_ngf: int = 0, tau: float = 0.1):
    if torch_path not in sys.path:
        sys.path.insert(0, torch_path)
    import numpy as np
    import torch
    from torch import nn

    if precision not in ("fp32", "bf16"):
        raise ValueError(f"PyTorch reference precision must be fp32 or bf16, got {precision!r}")
    attention = system != "cyclegan"
    if system not in ("cyclegan", "ssa_cyclegan"):
        raise ValueError(f"the PyTorch reference has cyclegan and ssa_cyclegan, not {system!r}")
    attention_ngf = attention_ngf or ngf

    def norm_relu(c):
        return [nn.InstanceNorm2d(c), nn.ReLU(True)]

    class Residual(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3, bias=False), *norm_relu(c),
                                      nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3, bias=False), nn.InstanceNorm2d(c))

        def forward(self, x):
            return x + self.body(x)

    def generator():
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(1, ngf, 7, bias=False), *norm_relu(ngf)]
        for m in (1, 2):
            layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, 2, 1, bias=False), *norm_relu(ngf * m * 2)]
        layers += [Residual(ngf * 4) for _ in range(n_res_blocks)]
        for m in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, 2, 1, output_padding=1, bias=False),
                       *norm_relu(ngf * m // 2)]
        return nn.Sequential(*layers, nn.ReflectionPad2d(3), nn.Conv2d(ngf, 1, 7), nn.Tanh())

    def attention_network():
        a = attention_ngf
        return nn.Sequential(
            nn.Conv2d(1, a, 7, 2, 3, bias=False), *norm_relu(a),
            nn.Conv2d(a, 2 * a, 3, 2, 1, bias=False), *norm_relu(2 * a), Residual(2 * a),
            nn.Upsample(scale_factor=2), nn.Conv2d(2 * a, 2 * a, 3, 1, 1, bias=False), *norm_relu(2 * a),
            nn.Upsample(scale_factor=2), nn.Conv2d(2 * a, a, 3, 1, 1, bias=False), *norm_relu(a),
            nn.Conv2d(a, 1, 7, 1, 3), nn.Sigmoid())

    def discriminator():
        sn = nn.utils.spectral_norm if attention else (lambda m: m)
        layers, c = [sn(nn.Conv2d(1, ndf, 4, 2, 1)), nn.LeakyReLU(0.2, True)], ndf
        for stride in (2, 2, 1):
            layers += [sn(nn.Conv2d(c, c * 2, 4, stride, 1, bias=False)), nn.InstanceNorm2d(c * 2),
                       nn.LeakyReLU(0.2, True)]
            c *= 2
        return nn.Sequential(*layers, sn(nn.Conv2d(c, 1, 4, 1, 1)))

    torch.manual_seed(0)
    g_n2t, g_t2n, d_t, d_n = generator(), generator(), discriminator(), discriminator()
    a_n, a_t = (attention_network(), attention_network()) if attention else (None, None)
    trained_attention = attention and phase == "warmup"
    g_params = list(g_n2t.parameters()) + list(g_t2n.parameters())
    if trained_attention:
        g_params += list(a_n.parameters()) + list(a_t.parameters())
    elif attention:
        for p in list(a_n.parameters()) + list(a_t.parameters()):
            p.requires_grad_(False)
    opt_g = torch.optim.Adam(g_params, 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(d_t.parameters()) + list(d_n.parameters()), 2e-4, betas=(0.5, 0.999))
    x_n, x_t = torch.rand(1, 1, size, size) * 2 - 1, torch.rand(1, 1, size, size) * 2 - 1
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 3: size // 2, size // 3: size // 2] = 1
    pools = {"t": [], "n": []}
    rng = np.random.default_rng(0)
    masked = attention and phase == "frozen"

    def autocast():
        if precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def pooled(key, item):
        pool = pools[key]
        if len(pool) < 50:
            pool.append(item)
            return item
        if rng.random() < 0.5:
            i = int(rng.integers(50))
            pool[i], item = item, pool[i]
        return item

    def translate(generator, attention_net, x):
        out = generator(x).float()
        if attention_net is None:
            return out, torch.ones_like(x)
        att = attention_net(x).float()
        return att * out + (1 - att) * x, att

    def view(image, att):
        return image * (att >= tau).float() if masked else image

    def step():
        for p in list(d_t.parameters()) + list(d_n.parameters()):      # as junyanz: no D gradients in G's step
            p.requires_grad_(False)
        with autocast():
            fake_t, att_n = translate(g_n2t, a_n, x_n)
            rec_n, _ = translate(g_t2n, a_t, fake_t)
            fake_n, att_t = translate(g_t2n, a_t, x_t)
            rec_t, _ = translate(g_n2t, a_n, fake_n)
            loss_g = ((d_t(view(fake_t, att_n)).float() - 1) ** 2).mean() \
                + ((d_n(view(fake_n, att_t)).float() - 1) ** 2).mean() \
                + 10 * ((rec_n - x_n).abs().mean() + (rec_t - x_t).abs().mean())
            if attention:
                loss_g = loss_g + (att_t - mask).abs().mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        for p in list(d_t.parameters()) + list(d_n.parameters()):
            p.requires_grad_(True)
        with autocast():
            loss_d = 0.0
            for disc, real, real_att, fake, fake_att, key in (
                    (d_t, x_t, att_t, fake_t, att_n, "t"), (d_n, x_n, att_n, fake_n, att_t, "n")):
                fake, fake_att = pooled(key, (fake.detach(), fake_att.detach()))
                loss_d = loss_d + 0.5 * (((disc(view(real, real_att.detach())).float() - 1) ** 2).mean()
                                         + (disc(view(fake, fake_att)).float() ** 2).mean())
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        return float(loss_g)

    return step, {"torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}
