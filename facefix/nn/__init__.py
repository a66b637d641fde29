"""Network families shared by plugins, losses and metrics.

* :mod:`~facefix.nn.stylegan2`: StyleGAN2 blocks and generator (GFP-GAN's decoder, MMRB's
  prior, the discriminators);
* :mod:`~facefix.nn.vgg`: ImageNet VGG16/VGG19 features by layer name;
* :mod:`~facefix.nn.arcface`: GFP-GAN's ArcFace ResNet-18 identity network.
"""
