"""The deep unfolding network: stages of data step + denoiser, strategies block/share/lorun."""

from .dun import DUN, Strategy, WarmStart, parse_strategy, sigma_hqs, sigma_pgd
from .params import param_report

__all__ = ["DUN", "Strategy", "WarmStart", "parse_strategy", "sigma_hqs", "sigma_pgd", "param_report"]
