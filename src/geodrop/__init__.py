"""geodrop: offline file transfer across regions and carrier links.

A sender uploads near them; the file waits in their region; the receiver, when
next online, is sent straight to the owning region's least-loaded link.
"""

from geodrop.config import ClusterConfig, load_config
from geodrop.errors import GeodropError

__all__ = ["ClusterConfig", "GeodropError", "__version__", "load_config"]

__version__ = "0.1.0"
