"""The evaluation indicator system (seed 001 §6) and its periodic reports."""
