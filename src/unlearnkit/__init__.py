"""unlearnkit: exact (S3T, SISA), one-shot (Fast-NTK) and memorization-aware (RUM) unlearning."""

__version__ = "0.1.0"
