"""Bytes on disk and in pipes: audio sources and sinks in blocks (``audio``: formats, standard
streams, FIFOs, raw input, dither, tags), atomic outputs and the sweep of dead runs' leftovers
(``atomic``), and the log-mel features a vocoder expects (``features``). Imports only
:mod:`convt_audio.core`."""
