"""The deep unfolding network: stages of GDM + PMM, strategies block/share/lorun."""

from .dun import DUN, Strategy, parse_strategy
from .gdm import gdm_hqs, gdm_pgd, sigma_hqs, sigma_pgd
from .params import param_report

__all__ = ["DUN", "Strategy", "parse_strategy", "gdm_hqs", "gdm_pgd", "sigma_hqs", "sigma_pgd", "param_report"]
