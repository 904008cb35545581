"""Masked diffusion: schedules, forward masking, the SUBS parameterization, losses."""
