"""The orchestrators: the run on the training machine (run.py) and on a device (on_device.py), stage bookkeeping
(stages.py), the run directory (rundirs.py) and the files it holds."""
