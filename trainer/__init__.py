"""brushwork trainer: VGG-16 perceptual losses, feed-forward style and super-resolution
training (Johnson et al., ECCV 2016), the Gatys baseline and evaluation.

Run it as ``brushwork train ...`` or ``python -m trainer train ...``; see docs/training.md.
"""
