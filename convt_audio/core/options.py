"""The words each option accepts, in one place: the library checks them, the command line offers
them (its choices are built from these tuples, never restated)."""

CHANNEL_MODES = ("auto", "joint", "per_channel")  # a config's channels:, --channels
DTYPE_NAMES = ("float32", "float64", "float16", "bfloat16")  # --dtype
KERNELS = ("auto", "transposed", "polyphase", "numpy")  # how the engine computes transposed layers
CLIP_MODES = ("clamp", "error", "rescale")  # --clip: samples past full scale in a PCM output
NON_FINITE_MODES = ("error", "zero")  # --non-finite: NaN/Inf input samples
SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")  # --subtype's choices (libsndfile names)
RAW_ENCODINGS = ("signed-integer", "unsigned-integer", "floating-point")  # --input-encoding (sox's -e words)
ENDIANS = ("little", "big")  # --input-endian
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")  # padding_mode: PyTorch's four
# conv1d's: and EnCodec's pad1d (kinds/padding.py), which zero-extends a signal no longer than the
# padding before reflecting it
CONV1D_PADDING_MODES = PADDING_MODES + ("reflect_zeros",)
REFLECTING = ("reflect", "reflect_zeros")  # the modes whose extensions mirror the signal's frames
ABSENT_CODE = -(2**23)  # a codebook row an integer-codes input lacks (exact in float32): adds nothing
