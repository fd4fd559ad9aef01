# syntax=docker/dockerfile:1
# Portcullis container image: the gateway compiled to JavaScript (dist/, no type stripping at run time),
# production dependencies only, a non-root numeric user, nothing written at run time (read-only root
# filesystem works), SIGTERM = graceful drain. See README.md "Deploy".
#
#   docker build -t portcullis .
#   docker run --rm -p 8080:8080 portcullis start --demo-upstream          # try it: demo upstream inside
#   docker run --rm --read-only -p 8443:8443 \
#     -v $PWD/policy.yaml:/etc/portcullis/policy.yaml:ro -v $PWD/tls:/etc/portcullis/tls:ro portcullis
#
# The base is pinned by full version (bump both stages together; the Node major must match
# package.json "engines"). Pin by digest too in your own registry mirror if you need reproducible bytes.

# ---- deps: production dependencies from the lockfile, nothing else ------------------------------------
FROM node:24.21.0-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=dev leaves out the `node` devDependency too: the image's own Node 24 runs the gateway.
# --ignore-scripts: no production dependency needs an install script (protobufjs' is a version notice).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error \
 && npm cache clean --force

# ---- build: src/ compiled to dist/ (scripts/build.ts); only dist/ leaves this stage ------------------------
FROM node:24.21.0-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
# All dependencies (the compiler is a devDependency); scripts ignored: the image's Node 24 compiles.
RUN npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
COPY scripts/build.ts ./scripts/
COPY src ./src
RUN node scripts/build.ts

# ---- runtime ------------------------------------------------------------------------------------------
FROM node:24.21.0-slim AS runtime
# MALLOC_ARENA_MAX: the gateway's runtime environment, as bin/portcullis.js' first line sets it (two glibc
# malloc arenas instead of one per thread: less memory kept after a load).
ENV NODE_ENV=production \
    PORTCULLIS_CONFIG=/etc/portcullis/policy.yaml \
    MALLOC_ARENA_MAX=2
WORKDIR /app
# Everything is owned by root and read-only for the gateway's user: it can read its code, never change it.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY bin ./bin
COPY --from=build /app/dist ./dist
# The default policy (development mode, 0.0.0.0:8080 → 127.0.0.1:3000); mount yours over this path, or a
# directory (a Kubernetes ConfigMap) over /etc/portcullis. TLS files conventionally go to /etc/portcullis/tls.
COPY config/container.yaml /etc/portcullis/policy.yaml
# 65532 = the conventional "nonroot" uid/gid; no passwd entry is needed, nothing uses a home directory.
USER 65532:65532
# 8080 plain (or redirect-only) listener, 8443 TLS listener, 9901 admin (loopback unless the policy says otherwise).
EXPOSE 8080 8443 9901
STOPSIGNAL SIGTERM
# Docker only (Kubernetes uses the chart's probes). Node itself does the request: the slim image has no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9901/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself. Its flags are bin/portcullis.js' first line's. The gateway installs SIGTERM/SIGINT handlers
# (drain, exit 0), and its only children are its own cluster workers, which node reaps; so no tini.
ENTRYPOINT ["node", "--max-semi-space-size=8", "/app/bin/portcullis.js"]
CMD ["start"]
