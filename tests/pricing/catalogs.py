"""Catalog fragments the pricing tests share."""

from __future__ import annotations

# A DeepSeek-like offer's terms, to follow its `operator` and `model` lines: peak 09:00-12:00 and
# 14:00-18:00 Beijing time on weekdays at the list price, half price the rest of the week and on holidays,
# and a load surcharge of up to 20% above 80% of a capacity of 10 calls.
DEEPSEEK_OFFER_PRICING = """context_window = 128000
max_output_tokens = 8192
capacity = 10
price = { input = "2", cached_input = "0.2", output = "3" }
[offers.pricing]
default_window_name = "peak"
load_surcharge = { above_percent = 80, max_percent = 20 }
windows = [
  { name = "off-peak", days = ["weekday"], from = "00:00", to = "09:00", percent = 50 },
  { name = "off-peak", days = ["weekday"], from = "12:00", to = "14:00", percent = 50 },
  { name = "off-peak", days = ["weekday"], from = "18:00", to = "24:00", percent = 50 },
  { name = "off-peak", days = ["weekend", "holiday"], from = "00:00", to = "24:00", percent = 50 },
]
"""
