"""A model: a config parsed into layer kinds (``config``), its tensors read from checkpoints with
their layouts, weight-norm folding and shape checks (``weights``), the torch stack and its
streaming form (``stack``), the engines that run it (``engines``: torch, or the NumPy resampler
chain), and resamplers written as configs (``resamplers``). Imports :mod:`convt_audio.core`,
:mod:`convt_audio.io`, :mod:`convt_audio.kinds` and :mod:`convt_audio.resampling`."""
