"""The ground floor: errors and how messages name options (``errors``), the words each option
accepts (``options``), the streaming protocol every streaming piece speaks (``streaming``),
independent streams' states joined into one batch and parted again (``batching``), the shape
algebra of frames in and out (``shapes``), and the process tuning, thread plan and memory
budget a run works under (``process``). Imports nothing else of the package."""
