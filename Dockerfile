# syntax=docker/dockerfile:1
# socialguard: the district's filtering proxy as a container (multi-stage, slim, non-root).
#
#   docker build -t socialguard .
#
# A trial: the default command is an explicit proxy on port 8080 with the shipped rules. Point a
# browser (or curl -x http://127.0.0.1:8080) at it; the CA to trust is in the certs volume.
#
#   docker run --rm -p 8080:8080 socialguard
#
# The shipped rules decide as they would for the district: DNS-over-HTTPS resolvers are blocked for
# everyone (curl -x http://127.0.0.1:8080 https://dns.google/); social sites for the staff networks
# in school hours. Your requests come from Docker's bridge (172.17.0.1 by default): to try as staff,
# mount rules whose staff group includes it (-v ./rules:/etc/socialguard/rules:ro).
#
# On the district gateway: transparent mode, with the host's network (--network host): the host's
# nftables ruleset (`socialguard deploy nftables`) redirects the district's web traffic to port
# 8080, and the redirected connection's original destination is only known in the namespace that
# redirected it. The rules live in /etc/socialguard/rules/policy.yaml, as for the systemd unit.
#
#   docker run -d --name socialguard --network host --restart unless-stopped \
#     -v /etc/socialguard/rules:/etc/socialguard/rules:ro \
#     -v socialguard-certs:/etc/socialguard/certs \
#     -v socialguard-state:/var/lib/socialguard \
#     -v socialguard-log:/var/log/socialguard \
#     socialguard run --mode transparent --listen '*:8080' --admin 127.0.0.1:9180

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: install socialguard and its dependencies into a self-contained virtualenv ----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# src/socialguard/starter_rules links here: the wheel carries the rules for `socialguard init`.
COPY rules ./rules
RUN python -m venv /opt/socialguard \
 && /opt/socialguard/bin/pip install --upgrade pip \
 && /opt/socialguard/bin/pip install . \
 && /opt/socialguard/bin/socialguard --version

# --- runtime: the virtualenv, the shipped rules, an unprivileged user --------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="socialguard" \
      org.opencontainers.image.description="Enforces a school district's social networking policy on the wire, and proves it did." \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 socialguard \
 && useradd --system --uid 10001 --gid socialguard --no-create-home \
      --home-dir /var/lib/socialguard --shell /usr/sbin/nologin socialguard \
 && install -d -o root -g root -m 0755 /etc/socialguard /etc/socialguard/rules \
 && install -d -o socialguard -g socialguard -m 0700 /etc/socialguard/certs \
 && install -d -o socialguard -g socialguard -m 0750 /var/lib/socialguard /var/log/socialguard

COPY --from=build /opt/socialguard /opt/socialguard
COPY rules/ /etc/socialguard/rules/

ENV PATH=/opt/socialguard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SOCIALGUARD_RULES=/etc/socialguard/rules/policy.yaml \
    SOCIALGUARD_CERTS=/etc/socialguard/certs \
    SOCIALGUARD_STATE=/var/lib/socialguard \
    SOCIALGUARD_LOG_DIR=/var/log/socialguard

# rules: the district's rules file and lists (mount read-only); certs: the interception CA (created
# on first start if empty; keep it: every device trusts it); state: the overrides store; log: the
# hash-chained decision log (keep it: it is the audit trail).
VOLUME ["/etc/socialguard/rules", "/etc/socialguard/certs", "/var/lib/socialguard", "/var/log/socialguard"]

USER socialguard:socialguard
WORKDIR /var/lib/socialguard
EXPOSE 8080

# /healthz answers 200 only while a policy is loaded, the store is reachable and the log writable.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9180/healthz', timeout=4)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["socialguard"]
# The default is the trial (see the header); a gateway passes `run --mode transparent ...`.
CMD ["run", "--mode", "regular", "--listen", "*:8080", "--admin", "127.0.0.1:9180"]
