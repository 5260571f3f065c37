"""Stage: specialization training (sample and distribution matching) on accelerate.

`config` (settings and presets), `precision` (what fp32/tf32/bf16/fp16 mean on the device),
`plan` (micro-batch order, checkpoint cadence), `data` (formats -> tensors, checks), `student`
(model loading, gradient checkpointing), `losses` (the objective, through `kernels`),
`checkpoints` (folders, retention, the completion marker), `trainer` (the loop), `job` (the
Python face: run, is_complete), `selection` (which checkpoint a table uses), `bench`
(throughput), `cli`.
"""
