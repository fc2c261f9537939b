"""Resampling DSP with NumPy: the Kaiser-windowed sinc designer and its measurements (``design``),
and the engines that run a resampler stack without torch — polyphase, FFT convolution, the
one-filter spectral engine, and the chain that picks among them (``chain``). Imports
:mod:`convt_audio.core` and the shape limits of :mod:`convt_audio.kinds`; never a config or a
weights file (those are :mod:`convt_audio.model`'s)."""
