"""Stage: specialization training (sample and distribution matching) on accelerate.

`config` (settings and presets), `plan` (micro-batch order), `data` (formats -> tensors, checks),
`student` (model loading), `losses` (the objective, through `kernels`), `checkpoints`,
`trainer` (the loop), `selection` (Table 3's model selection), `bench` (throughput), `cli`.
"""
