"""The ``resnet`` finder: DeepSZ's ResNet cutout classifier (Lin et al. 2021), trained here.

Submodules importing torch (:mod:`.model`, :mod:`.train`, parts of :mod:`.finder`) are imported
lazily, so plugin discovery never imports torch.
"""
