"""NLCL against the public code (yunguo224/NLCL, run from a local copy, never copied
here): with the same weights (its released generators, our initial discriminator and
heads), the same crops of the release's own example images and the same sampled
positions, one full discriminator + generator step gives the same loss
terms, gradients and updated weights, once the public behaviour is switched on for each
deliberate fix (NLCLConfig.public_heads, .public_levels); then each fix's own effect,
the sampler's ranking, reference range and initialisation against the public ones.

    RAINBENCH_NLCL_REFERENCE=/path/to/NLCL python -m pytest tests/train/test_nlcl_reference.py

Every difference found is listed in docs/nlcl.md, "Proven equal to the public code".
"""

import importlib
import importlib.util
import itertools
import os
import re
import sys
import types
from argparse import Namespace
from dataclasses import fields, replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rainbench.models.nlcl.generator import to_model_range
from rainbench.models.nlcl.published import import_published
from rainbench.train.core.loop import set_lr
from rainbench.train.nlcl.config import NLCLConfig
from rainbench.train.nlcl.model import Centres, NLCLModel
from rainbench.train.nlcl.sampling import rank_candidates, reference_centres, similar_centres
from rainbench.train.nlcl.trainer import _train_step, build_optimizers

REFERENCE = os.environ.get("RAINBENCH_NLCL_REFERENCE")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not REFERENCE,
        reason="needs the public NLCL code: set RAINBENCH_NLCL_REFERENCE=/path/to/unpacked/"
        "yunguo224-NLCL (docs/nlcl.md, 'Proven equal to the public code')",
    ),
]

CROP = 64  # small enough for float64 on a CPU; the public code assumes 256, see _drive
PUBLIC = NLCLConfig(crop=CROP, public_heads=True, public_levels=True)
# Our modules and the public model's attributes holding the same weights.
NETWORKS = {
    "background": "netBack",
    "rain": "netRain",
    "discriminator": "netD",
    "image_heads": "netAdvBackSample",
    "rain_heads": "netAdvRainSample",
    "nce_heads": "netGenSample",
}
TERMS = 1e-5  # loss terms, absolute
GRADIENTS = 1e-4  # gradients, relative to each tensor's largest
# Biases of convolutions followed by an InstanceNorm: their gradient is exactly 0.
BEFORE_NORM = re.compile(
    r"(gen\.\d+\.model\.[01]\.conv|gen\.17\.conv\.0|discriminator\.model\.(3|7|11))\.bias$"
)


@pytest.fixture(scope="module")
def release() -> types.SimpleNamespace:
    """The release's model and network modules, imported from RAINBENCH_NLCL_REFERENCE
    under their own package names (models, util), which leave sys.modules again after."""
    root = Path(REFERENCE)
    ours = {name: sys.modules.pop(name) for name in _their_modules()}
    # util/util.py imports torchvision at the top, for a helper nothing here calls.
    stub = importlib.util.find_spec("torchvision") is None
    if stub:
        sys.modules["torchvision"] = types.ModuleType("torchvision")
    sys.path.insert(0, str(root))
    try:
        model = importlib.import_module("models.NLCL_model")
        networks = importlib.import_module("models.networks")
    finally:
        sys.path.remove(str(root))
        for name in _their_modules():
            del sys.modules[name]
        sys.modules.update(ours)
        if stub:
            del sys.modules["torchvision"]
    return types.SimpleNamespace(root=root, NLCLModel=model.NLCLModel, networks=networks)


def _their_modules() -> list[str]:
    return [name for name in sys.modules if name.split(".")[0] in ("models", "util")]


@pytest.fixture(scope="module", autouse=True)
def float64():
    """Everything in float64, both implementations (the public code makes its tensors
    in the default dtype)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _options(release, work: Path) -> Namespace:
    """The options the release records for its model (checkpoints/RealRain/test_opt.txt),
    set for training as its train_options.py does by default."""
    values = {}
    text = (release.root / "checkpoints" / "RealRain" / "test_opt.txt").read_text()
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon and not name.strip().startswith("-"):
            values[name.strip()] = _typed(value.split("[default")[0].strip())
    values.update(isTrain=True, phase="train", gpu_ids=[], checkpoints_dir=str(work))
    values.update(lr=2e-4, beta1=0.5, beta2=0.999, gan_mode="lsgan", pool_size=0)
    return Namespace(**values)


def _typed(text: str):
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _crops() -> dict[str, torch.Tensor]:
    """64 px crops of the release's own example images: a rainy one and, as the clean
    crop, another of its examples' outputs (placeholders, but unpaired images)."""
    examples = Path(REFERENCE) / "datasets" / "RealRain"

    def crop(path: Path, top: int, left: int) -> torch.Tensor:
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255
        piece = pixels[top : top + CROP, left : left + CROP]
        return torch.from_numpy(piece.copy()).permute(2, 0, 1)[None]

    return {
        "rain": crop(examples / "valA" / "Eg1.JPG", 200, 300),
        "clean": crop(examples / "valB" / "Eg3.JPG", 120, 500),
    }


def _centres(model: NLCLModel, batch: dict, seed: int = 0) -> Centres:
    """Positions drawn by our sampler, given to both implementations."""
    sampler = torch.Generator().manual_seed(seed)
    observed, clean = to_model_range(batch["rain"]), to_model_range(batch["clean"])
    with torch.no_grad():
        return Centres(
            image=similar_centres(model.background(observed), 8, 40, 16, sampler),
            rain=similar_centres(model.rain(observed), 128, 40, 16, sampler),
            locations=similar_centres(
                model.background.features(observed, (0,))[0], 256, 40, 16, sampler
            ),
            identity=similar_centres(
                model.background.features(clean, (0,))[0], 256, 40, 16, sampler
            ),
        )


def _drive(sampler, positions: list[torch.Tensor], crop: int = CROP) -> None:
    """Make one of the public non-local samplers take the given N×K×2 positions (batch
    1), in turn, whenever it would search for its own. It maps a position to a feature
    map of height h as ⌊p·h/256⌋, for 256 px crops; ×256/crop keeps that exact."""
    search = sampler.forward
    turns = itertools.cycle([p[0] * (256 // crop) for p in positions])

    def forward(feats, num_patches=256, patch_ids=None):
        return search(feats, num_patches, next(turns) if patch_ids is None else patch_ids)

    sampler.forward = forward


def _public_parameters(
    public, ours: NLCLModel, networks: tuple[str, ...] = tuple(NETWORKS)
) -> dict[str, torch.nn.Parameter]:
    """Our parameter names → the public model's same parameters (heads: our
    `image_heads.2.mlp.0.weight` is its netAdvBackSample `mlp_2.0.weight`), for our
    `networks`."""
    found = {}
    for mine in networks:
        theirs = NETWORKS[mine]
        parameters = dict(getattr(public, theirs).named_parameters())
        for name, _ in getattr(ours, mine).named_parameters():
            found[f"{mine}.{name}"] = parameters[re.sub(r"^(\d+)\.mlp\.", r"mlp_\1.", name)]
    return found


def _public_model(release, ours: NLCLModel, batch: dict, centres: Centres, work: Path):
    """The public model holding our model's weights, its samplers driven by `centres`,
    ready for its first optimize_parameters (its data_dependent_initialize run, which
    creates its heads and their optimisers, then every gradient cleared)."""
    public = release.NLCLModel(_options(release, work))
    _drive(public.netAdvBackSample, [centres.image])
    _drive(public.netAdvRainSample, [centres.rain])
    _drive(public.netGenSample, [centres.locations, centres.identity])
    public.data_dependent_initialize(_public_input(batch))
    with torch.no_grad():
        pairs = _public_parameters(public, ours)
        for name, parameter in ours.named_parameters():
            pairs[name].copy_(parameter)
    for network in NETWORKS.values():
        for parameter in getattr(public, network).parameters():
            parameter.grad = None
    return public


def _create_heads(public) -> None:
    """The public heads, which it creates at its first step, for its five layer
    contrast levels and five location contrast layers."""
    levels = [torch.zeros(1, c, 1, 1) for c in (3, 64, 128, 256, 512)]
    public.netAdvBackSample.create_mlp(levels)
    public.netAdvRainSample.create_mlp(levels)
    public.netGenSample.create_mlp([torch.zeros(1, 32, 1, 1)] * 5)


def _public_input(batch: dict) -> dict:
    return {
        "A": to_model_range(batch["rain"]),
        "B": to_model_range(batch["clean"]),
        "A_paths": ["Eg1.JPG"],
        "B_paths": ["Eg3.JPG"],
    }


def _record_gradients(parameters: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    """Every gradient a backward pass computes, by name (the public step clears some
    before it returns)."""
    recorded = {}
    for name, parameter in parameters.items():
        parameter.register_hook(lambda grad, name=name: recorded.__setitem__(name, grad.clone()))
    return recorded


def _our_step(config: NLCLConfig, initial: dict, batch: dict, centres: Centres):
    """One step of our trainer from the `initial` weights: its terms, gradients, model."""
    model = NLCLModel(config)
    model.load_state_dict(initial)
    gradients = _record_gradients(dict(model.named_parameters()))
    g_opt, d_opt = build_optimizers(model, config)
    set_lr((g_opt, d_opt), config, 0)
    model.generator_losses = partial(model.generator_losses, centres=centres)
    sampler = torch.Generator().manual_seed(0)
    terms = _train_step(model, batch, g_opt, d_opt, sampler, config, "cpu")
    return terms, gradients, model


@pytest.fixture(scope="module")
def public_step(release, tmp_path_factory):
    """The public code's first step from our initial weights, and what it started from."""
    torch.manual_seed(0)
    ours = NLCLModel(PUBLIC)
    # The release's own trained generators (the rest starts from our initialisation).
    released = release.root / "checkpoints" / "RealRain"
    ours.background.load_state_dict(import_published(released / "latest_net_Back.pth"))
    ours.rain.load_state_dict(import_published(released / "latest_net_Rain.pth"))
    batch = _crops()
    centres = _centres(ours, batch)
    public = _public_model(release, ours, batch, centres, tmp_path_factory.mktemp("public"))
    parameters = _public_parameters(public, ours)
    gradients = _record_gradients(parameters)
    public.set_input(_public_input(batch))
    public.optimize_parameters()
    terms = {
        "discriminator": public.loss_D,
        "adversarial": public.loss_G_GAN,
        "consistency": public.loss_MSE,
        "sparsity": public.loss_L1 / public.opt.lambda_L1,
        "layer_contrast": public.loss_DisNCE,
        "location_contrast": 0.5 * (public.loss_NCE + public.loss_NCE_Y),
        "total": public.loss_G,
    }
    return types.SimpleNamespace(
        initial={k: v.clone() for k, v in ours.state_dict().items()},
        batch=batch,
        centres=centres,
        terms={name: float(value.detach()) for name, value in terms.items()},
        gradients=gradients,
        weights={name: p.detach().clone() for name, p in parameters.items()},
    )


def _relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


def _assert_same_weights(name: str, ours: torch.Tensor, theirs: torch.Tensor, initial) -> None:
    ours = ours.detach()
    if BEFORE_NORM.search(name):
        # Adam scales their rounding-noise gradients up to moves far below lr.
        assert float((ours - theirs).abs().max()) < 1e-8, name
    else:
        moved = float((initial - theirs).abs().max())
        assert float((ours - theirs).abs().max()) <= 1e-4 * moved + 1e-15, name


def test_one_step_equals_the_public_code(public_step):
    terms, gradients, model = _our_step(
        PUBLIC, public_step.initial, public_step.batch, public_step.centres
    )
    for name, theirs in public_step.terms.items():
        assert terms[name] == pytest.approx(theirs, abs=TERMS), name
    # Every gradient either computes: the discriminator's from its step, the
    # generators' and every head's from the generator step.
    assert set(gradients) == set(public_step.gradients) == set(public_step.weights)
    for name, theirs in public_step.gradients.items():
        if BEFORE_NORM.search(name):
            # Exactly 0: a conv's bias is a constant per channel, which the InstanceNorm
            # after it removes. Both give float64 rounding noise.
            assert float(theirs.abs().max()) < 1e-12 and float(gradients[name].abs().max()) < 1e-12
        else:
            assert _relative(gradients[name], theirs) < GRADIENTS, name
    # And so the same weights after both Adam steps, heads frozen or stepped twice alike.
    for name, parameter in model.named_parameters():
        _assert_same_weights(name, parameter, public_step.weights[name], public_step.initial[name])


def test_stepping_every_head_changes_only_the_heads(public_step):
    config = replace(PUBLIC, public_heads=False)
    _, _, model = _our_step(config, public_step.initial, public_step.batch, public_step.centres)
    for name, parameter in model.named_parameters():
        theirs, initial = public_step.weights[name], public_step.initial[name]
        if name.startswith(("image_heads", "nce_heads")):
            # Never stepped by the public code; stepped here.
            assert torch.equal(theirs, initial), name
            assert not torch.equal(parameter, initial), name
        elif name.startswith("rain_heads"):
            # Stepped twice by the public code, once here: half its first Adam update.
            assert torch.allclose(parameter - initial, (theirs - initial) / 2, atol=1e-15), name
        else:
            _assert_same_weights(name, parameter, theirs, initial)


def test_all_four_discriminator_levels_count(release, tmp_path):
    # At 256 px, the public code's own size: its position mapping needs no help here.
    torch.manual_seed(1)
    ours = {levels: NLCLModel(NLCLConfig(public_levels=levels)) for levels in (True, False)}
    ours[True].load_state_dict(ours[False].state_dict(), strict=False)
    public = release.NLCLModel(_options(release, tmp_path))
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(2)) * 2 - 1
    background, rain = images[:1], images[1:]
    sampler = torch.Generator().manual_seed(3)
    image = similar_centres(background, 8, 40, 16, sampler)
    rain_centres = similar_centres(rain, 128, 40, 16, sampler)
    _create_heads(public)
    with torch.no_grad():
        networks = ("discriminator", "image_heads", "rain_heads")
        for name, parameter in _public_parameters(public, ours[False], networks).items():
            parameter.copy_(ours[False].get_parameter(name))
        features = {
            name: public.netD(x, public.adv_nce_layers, encode_only=True)
            for name, x in (("image", background), ("rain", rain))
        }
        # Five levels (the image and four discriminator layers), five heads.
        assert len(features["image"]) == 5
        _drive(public.netAdvBackSample, [image], 256)
        _drive(public.netAdvRainSample, [rain_centres], 256)
        image_vectors, _ = public.netAdvBackSample(features["image"], 8)
        rain_vectors, _ = public.netAdvRainSample(features["rain"], 128)
        per_level = [
            public.criterDisNCE(b, r) for b, r in zip(image_vectors, rain_vectors, strict=True)
        ]
        theirs = public.calculate_DisNCE_loss(background, rain, None)
        centres = Centres(image, rain_centres, torch.empty(0))
        mine = {
            levels: model._layer_contrast(background, rain, sampler, centres)
            for levels, model in ours.items()
        }
    # The public loss is the mean over the first four; the fifth is computed, then dropped.
    assert float(theirs) == pytest.approx(float(torch.stack(per_level[:4]).mean()), abs=1e-12)
    assert float(mine[True]) == pytest.approx(float(theirs), abs=TERMS)
    assert float(mine[False]) == pytest.approx(float(torch.stack(per_level).mean()), abs=TERMS)
    assert abs(float(mine[False]) - float(theirs)) > 1e-3


def test_a_batch_is_the_mean_of_its_images(release, public_step):
    batch = {key: torch.cat([value, value.flip(-1)]) for key, value in public_step.batch.items()}
    # The public sampler fails on a batch of two: it searches their patches as one list.
    sampler = release.networks.PatchSampleNonlocalOneGroup(use_mlp=False)
    with pytest.raises(RuntimeError, match="must match the size"):
        sampler([to_model_range(batch["rain"])], 8)
    # Our batched step's terms are the mean of each image's batch-1 terms, which the
    # first test proves equal to the public code's.
    model = NLCLModel(PUBLIC)
    model.load_state_dict(public_step.initial)
    alone = []
    for n in range(2):
        single = {key: value[n : n + 1] for key, value in batch.items()}
        alone.append((single, _centres(model, single, seed=n)))
    centres = Centres(
        **{
            field.name: torch.cat([getattr(c, field.name) for _, c in alone])
            for field in fields(Centres)
        }
    )
    sampler = torch.Generator()
    with torch.no_grad():
        together = model.generator_losses(
            to_model_range(batch["rain"]), to_model_range(batch["clean"]), sampler, centres
        )
        each = [
            model.generator_losses(
                to_model_range(single["rain"]), to_model_range(single["clean"]), sampler, c
            )
            for single, c in alone
        ]
    for name, value in together.items():
        assert float(value) == pytest.approx(
            (float(each[0][name]) + float(each[1][name])) / 2, abs=1e-10
        ), name


def test_the_sampler_ranks_as_the_public_one(release, monkeypatch):
    # The public search is a slow loop: one 64 px image, three references.
    image = torch.rand(1, 3, CROP, CROP, generator=torch.Generator().manual_seed(4))
    edge = CROP - 8  # the last centre whose 16 px patch fits
    refs = [(30, 27), (16, 16), (48, 47)]
    # A copy of the last reference's patch at a centre on the far edge.
    image[..., edge - 8 : edge + 8, 32:48] = image[..., 40:56, 39:55]
    asked, draws = [], iter(coordinate for ref in refs for coordinate in ref)

    def randint(low: int, high: int) -> int:
        asked.append((low, high))
        return next(draws)

    monkeypatch.setattr(release.networks, "random", types.SimpleNamespace(randint=randint))
    sampler = release.networks.PatchSampleNonlocalOneGroup(use_mlp=False)
    for ref in refs:
        _, theirs = sampler([image], 128)
        ours = rank_candidates(image, torch.tensor([ref]), 128 + 40, 40, 16)[0]
        # The public window stops one short of the far edge: it never offers a centre on
        # row or column 56, whose patch fits (rows 48…63). Ours does: the planted copy
        # ranks right after the reference.
        assert not (theirs == edge).any()
        on_edge = (ours == edge).any(dim=1)
        if ref == refs[-1]:
            assert ours[1].tolist() == [edge, 40]
        assert torch.equal(ours[~on_edge][:128], theirs)
    # References a whole patch from every border, as ours (sampling.reference_centres).
    assert asked == [(16, CROP - 16)] * 6
    drawn = reference_centres(4000, CROP, CROP, 40, 16, torch.Generator().manual_seed(5))
    assert (int(drawn.min()), int(drawn.max())) == (16, CROP - 16)


def test_initialisation_is_the_public_codes(release, tmp_path):
    # Same distributions (not the same draws): Xavier-normal × 0.02 for the
    # discriminator and heads, PyTorch's default for the generators.
    torch.manual_seed(6)
    public = release.NLCLModel(_options(release, tmp_path))
    ours = NLCLModel(NLCLConfig())
    _create_heads(public)
    theirs = _public_parameters(public, ours)
    for name, parameter in ours.named_parameters():
        if name.endswith("weight") and parameter.numel() >= 1000:
            spread = float(parameter.detach().std()) / float(theirs[name].detach().std())
            assert spread == pytest.approx(1, abs=0.15), name
