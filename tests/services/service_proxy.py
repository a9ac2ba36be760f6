"""`socialguard run`, as its CLI would start it, for the services tests: inside the test's network
namespace, trusting the loopback origin's self-signed certificate (ssl_insecure), which the CLI
has no option for. Usage: python service_proxy.py RULES STATE CERTS LOG_DIR PORT ADMIN"""

from __future__ import annotations

import sys
from pathlib import Path

from socialguard.proxy.run import ProxyConfig, ensure_ca, run_proxy


def main() -> None:
    rules, state, certs, log_dir, port, admin = sys.argv[1:7]
    ensure_ca(Path(certs))
    config = ProxyConfig(
        rules=Path(rules),
        certs=Path(certs),
        state=Path(state),
        log_dir=Path(log_dir),
        listen_port=int(port),
        node="services-test",
        admin=admin,
        mitmproxy_options={"ssl_insecure": True},
    )
    run_proxy(config)


if __name__ == "__main__":
    main()
