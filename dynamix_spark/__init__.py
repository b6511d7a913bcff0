"""DynamiX on Spark: denoising, windowed Corr statistics, segmentation and EBF tables (library)."""
__version__ = "0.1.0"
