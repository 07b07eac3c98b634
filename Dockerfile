# syntax=docker/dockerfile:1
#
# vonage-reload-watchdog container image.
#
#   docker build -t vonage-reload-watchdog:0.1.0 .
#   docker run --read-only --tmpfs /tmp -v vonage-data:/data -p 127.0.0.1:8479:8479 \
#     --env-file .env vonage-reload-watchdog:0.1.0
#
# Stages: base (pinned Node) -> build (tsc) / deps (production node_modules) / tini -> runtime.
# The runtime stage holds node, tini, production node_modules, dist/ and package.json; no
# sources, tests, compiler or npm. It runs as the image's `node` user (uid 1000), writes only to
# /data (STATE_DIR), and works with a read-only root filesystem.

# Node 24 is an LTS line (the official Node 20 images are discontinued). Bump the full version
# on purpose, never follow a floating tag. For a reproducible build, also pin the digest:
#   FROM node:24.21.0-bookworm-slim@sha256:<index digest> AS base
FROM node:24.21.0-bookworm-slim AS base
WORKDIR /app

# ---- build: full install (TypeScript), compile src/ to dist/ ----------------------------------
FROM base AS build
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# ---- deps: production dependencies only --------------------------------------------------------
FROM base AS deps
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# ---- tini: a real init as PID 1 (signals reach node; zombies are reaped) -----------------------
# Built from the same Debian release as the runtime stage, so the binary's libc matches.
FROM base AS tini
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

# ---- runtime -------------------------------------------------------------------------------------
FROM base AS runtime
ENV NODE_ENV=production STATE_DIR=/data METRICS_PORT=8479

# npm, npx, corepack and yarn are not needed to run the daemon: remove them (less to patch, and
# nothing can `npm install` at run time). /data must exist and belong to uid 1000 so that a new
# named volume mounted there inherits that owner.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
        /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
        /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
    && mkdir -p /data \
    && chown node:node /data \
    && chmod 0700 /data

COPY --from=tini /usr/bin/tini /usr/bin/tini
# Application files belong to root and are read-only for the `node` user.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# package.json is needed at run time: "type": "module", and the version in build_info.
COPY package.json ./

USER node
VOLUME ["/data"]
EXPOSE 8479

# GET /healthz on 127.0.0.1:$METRICS_PORT with a 2 s timeout (src/healthcheck.ts). Exec form:
# no shell needed. /healthz does not depend on Vonage, so a Vonage outage is not "unhealthy".
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["node", "dist/healthcheck.js"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/main.js"]
