"""A model: a config parsed into layer kinds (``config``), its tensors read from checkpoints with
their layouts, weight-norm folding and shape checks (``weights``), the torch stack and its
streaming form (``stack``), the engines that run it (``engines``: torch, or the NumPy resampler
chain), resamplers written as configs (``resamplers``), a file's two halves streamed at once
(``split``), many streams run as one batch (``pool``) and a stream's steady pushes replayed as
captured CUDA graphs (``graphs``). Imports :mod:`convt_audio.core`,
:mod:`convt_audio.io`, :mod:`convt_audio.kinds` and :mod:`convt_audio.resampling`."""
