"""Running files: the options of a run and the engine per file (``runner``), planning a batch
and refusing clashes before any work (``planning``), one file streamed end to end
(``filestream``), a local batch (``batch``) and a Ray one (``cluster``), ``info``'s facts
(``report``) and the ``mel`` command (``mel``). The top of the library: imports every
subpackage below it, and nothing imports it but :mod:`convt_audio.api` and the command line."""
