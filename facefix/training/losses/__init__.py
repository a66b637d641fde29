"""Training losses shared by every network plugin, one module per family.

* :mod:`~.pixel`: L1/MSE with weights, image pyramids, criteria and Gram matrices;
* :mod:`~.perceptual`: perceptual and style losses on VGG16/VGG19 features;
* :mod:`~.gan`: adversarial losses, R1, discriminator feature matching;
* :mod:`~.style`: PSFR-GAN's semantic-aware style loss;
* :mod:`~.identity`: the ArcFace identity loss;
* :mod:`~.components`: GFP-GAN's facial-component losses;
* :mod:`~.pretrained`: where the loss networks' weights come from;
* :mod:`~.terms`: a loss summed term by term, with each term logged.

Images are ``(B, 3, H, W)`` RGB tensors in ``[-1, 1]`` (the networks' I/O range). Loss
weights from the papers (see docs) are applied by the recipes, not here, except where
a module's constructor takes a weight explicitly (:class:`PerceptualLoss`).
Recipes import the names from here.
"""

from facefix.nn.arcface import ArcFaceResNet18, IRBlock, gray_resize_for_identity, load_arcface
from facefix.nn.vgg import (
    DEFAULT_LAYER_WEIGHTS,
    GFPGAN_LAYER_WEIGHTS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG_LAYERS,
    VGGFeatures,
    vgg_layer_index,
)
from facefix.training.losses.components import (
    COMPONENTS,
    FacialComponentLoss,
    roi_align,
    roi_align_separable,
    roi_crops,
)
from facefix.training.losses.gan import GAN_KINDS, feature_matching_loss, gan_loss, multiscale_gan_loss, r1_penalty
from facefix.training.losses.identity import IdentityLoss
from facefix.training.losses.perceptual import PerceptualLoss, build_perceptual
from facefix.training.losses.pixel import gram_matrix, image_pyramid, l1_loss, mse_loss, pyramid_l1
from facefix.training.losses.pretrained import IDENTITY_NETWORKS, build_identity, build_vgg
from facefix.training.losses.style import semantic_style_loss
from facefix.training.losses.terms import LossTerms

__all__ = [
    "COMPONENTS", "DEFAULT_LAYER_WEIGHTS", "GAN_KINDS", "IDENTITY_NETWORKS", "GFPGAN_LAYER_WEIGHTS", "IMAGENET_MEAN", "IMAGENET_STD",
    "VGG_LAYERS", "ArcFaceResNet18", "FacialComponentLoss", "IRBlock", "IdentityLoss", "LossTerms", "PerceptualLoss",
    "VGGFeatures", "build_identity", "build_perceptual", "build_vgg", "feature_matching_loss", "gan_loss",
    "gram_matrix", "gray_resize_for_identity", "image_pyramid", "l1_loss", "load_arcface", "mse_loss",
    "multiscale_gan_loss", "pyramid_l1", "r1_penalty", "roi_align", "roi_align_separable", "roi_crops",
    "semantic_style_loss", "vgg_layer_index",
]  # fmt: skip
