"""Quality metrics, one module per family.

* :mod:`~facefix.metrics.pixel`: PSNR, SSIM, MS-SSIM (RGB, or MATLAB's luminance);
* :mod:`~facefix.metrics.parsing`: confusion matrices and mean IoU;
* :mod:`~facefix.metrics.lpips`: LPIPS on AlexNet or VGG16 features;
* :mod:`~facefix.metrics.niqe`: NIQE, MATLAB's no-reference natural-image quality;
* :mod:`~facefix.metrics.identity`: SFace identity similarity, its angle, and the Fréchet
  distance of two sets' embeddings.

``facefix eval`` (:mod:`facefix.evaluation`) combines them.
"""
