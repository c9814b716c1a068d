"""Remote adapters: kitchen's training and sampling ports over the official tinker SDK.

Point them at Tinker or at a ``kitchen serve``. Importing this package needs the
``remote`` extra (``pip install 'kitchen[remote]'``, tinker >=0.38,<0.39).
"""

from kitchen.adapters.remote.training import (
    SDK_RANGE,
    RemoteConfig,
    RemoteSamplingClient,
    RemoteTrainingClient,
)

__all__ = ["SDK_RANGE", "RemoteConfig", "RemoteSamplingClient", "RemoteTrainingClient"]
