# syntax=docker/dockerfile:1
# The sse-monitor daemon.
#
#   docker build -t sse-monitor .
#   docker run -d --name sse-monitor -p 9108:9108 \
#     -v "$PWD/my-config:/etc/sse-monitor:ro" -e OPENAI_API_KEY sse-monitor
#
# The run history is kept in /var/lib/sse-monitor/sse-monitor.db (a volume: name it, `-v sse-monitor-data:/var/lib/
# sse-monitor`, to keep it across new containers). The configuration is not in the image: mount a directory holding config.yaml at /etc/sse-monitor (mount the
# directory rather than the file, so an edited file is seen by `docker kill -s HUP`, or by `POST /-/reload` when
# the daemon runs with --web.enable-lifecycle). Secrets come from the environment (${VAR} in the file). Check a
# file first:
#   docker run --rm -v "$PWD/my-config:/etc/sse-monitor:ro" sse-monitor check-config /etc/sse-monitor/config.yaml
# TLS and basic auth for every endpoint (README, "Securing the endpoints"): put web-config.yml (exporter-toolkit
# format) and its certificates in the same directory and append the options to the command:
#   docker run ... sse-monitor run --config /etc/sse-monitor/config.yaml \
#     --web.config.file /etc/sse-monitor/web-config.yml --web.enable-lifecycle
# The HEALTHCHECK asks port 9108: if server.listen moves the port, override the health check too. It needs no
# credentials: over TLS (client certificate required or not) and behind basic auth (a 401 is an answer) it still
# tells a live daemon from a dead one (monitor/healthcheck.py).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/sse-monitor
WORKDIR /src
COPY pyproject.toml ./
COPY monitor/ monitor/
# a regular (non-editable) install (uvloop is a default dependency); the sources stay behind in this stage
RUN /opt/sse-monitor/bin/pip install .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="sse-monitor" \
      org.opencontainers.image.description="Synthetic monitor for Server-Sent Events streaming endpoints (LLM APIs first)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/sse-monitor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SSE_MONITOR_DATA_DIR=/var/lib/sse-monitor
RUN groupadd --system --gid 10001 sse-monitor \
 && useradd --system --uid 10001 --gid sse-monitor --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin sse-monitor \
 && mkdir -p /etc/sse-monitor /var/lib/sse-monitor \
 && chown 10001:10001 /var/lib/sse-monitor
COPY --from=build /opt/sse-monitor /opt/sse-monitor
USER 10001:10001
# The run history (sse-monitor.db, SQLite): a volume, so it survives a new container
VOLUME /var/lib/sse-monitor
EXPOSE 9108
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-m", "monitor.healthcheck", "http://localhost:9108/-/healthy"]
ENTRYPOINT ["sse-monitor"]
CMD ["run", "--config", "/etc/sse-monitor/config.yaml"]
