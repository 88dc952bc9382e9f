"""`camlit benchmark`: speed, overhead and memory figures, side by side with their targets.

`command` runs the sections and scores the ratios; `sections` measures the model step, the data
path, the framework and memory; `projection` asks whether a config's loader feeds an H200;
`balance` and `forensics` time the balanced assignment and the camera-table read.
"""
