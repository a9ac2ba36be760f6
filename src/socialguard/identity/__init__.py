"""Identity sources: who holds an address now (RADIUS accounting, DHCP leases), as bindings.

The pure model (Binding, Bindings, the rules' `identity:` section) is `engine/identity.py`; this
package is its I/O edge: the sources' listeners and watchers, the bindings store, and the service
the proxy holds.
"""

from .service import IdentityService, read_secret
from .store import BINDINGS_DB, BindingStore

__all__ = ["BINDINGS_DB", "BindingStore", "IdentityService", "read_secret"]
