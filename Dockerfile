# One image for every BigFleet process: `bigfleet shard`, `coordinator`,
# `operator`, `pod-controller`, `provider fake`, `all-in-one`, `ctl`.
#
#   docker build -t bigfleet:0.1.0 .
#   docker run --rm bigfleet:0.1.0 selfcheck

# Build stage: the wire modules are generated from proto/ and the decision
# engine's hot modules compiled to C while the wheel is built (hatch_build.py,
# ADR 0023), so the build needs the whole source tree and a C compiler; every
# dependency ships wheels for this platform. The runtime stage needs neither.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/bigfleet
WORKDIR /src
COPY . .
# BIGFLEET_ENGINE=compiled: an image whose engine did not compile fails here.
RUN /opt/bigfleet/bin/pip install . \
 && BIGFLEET_ENGINE=compiled /opt/bigfleet/bin/python -c 'import bigfleet.shard.engine' \
 && /opt/bigfleet/bin/bigfleet selfcheck

# Runtime stage: the virtual environment only, run by an unprivileged user
# whose numeric id lets Kubernetes verify runAsNonRoot.
FROM python:3.11-slim
RUN groupadd --system --gid 65532 bigfleet \
 && useradd --system --uid 65532 --gid bigfleet --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin bigfleet
COPY --from=build /opt/bigfleet /opt/bigfleet
ENV PATH=/opt/bigfleet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
USER 65532:65532
# Metrics and probes (8780 shard, 8790 coordinator, 8770 operator, 8080 pod
# controller); gRPC (7780 shard, 7790 coordinator, 7800 fake provider).
EXPOSE 7780 7790 7800 8080 8770 8780 8790
ENTRYPOINT ["bigfleet"]
CMD ["--help"]
