"""Transit fares: the fare engine, taps and gates, the burst generator (``docs/transit.md``).

>>> from tongbao.transit import load_network
>>> load_network("chongqing-metro").fare("Daping", "Niujiaotuo")
300
"""

from __future__ import annotations

from tongbao.transit.fares import Band, Line, Network, load_network, parse_network

__all__ = ["Band", "Line", "Network", "load_network", "parse_network"]
