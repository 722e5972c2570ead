"""Retrieval evaluation of +-1 hash codes with numpy and scipy (never imports TensorFlow)."""

from udsph_tf.evaluation.codes import check_codes, check_labels, code_stats, collapse_stats
from udsph_tf.evaluation.metrics import (default_n_values, evaluate_retrieval,
                                         mean_average_precision, pr_curve_counts)
from udsph_tf.evaluation.plots import plot_curves

__all__ = ["check_codes", "check_labels", "code_stats", "collapse_stats", "default_n_values",
           "evaluate_retrieval", "mean_average_precision", "plot_curves", "pr_curve_counts"]
