# s3dedup: a Filetracker-compatible file server (docs/deployment.md).
#
#   docker build -t s3dedup .
#   docker run -p 8080:8080 -v s3dedup-data:/data s3dedup
#
# Stage 1 compiles better-sqlite3 and the TypeScript; the image that runs
# carries neither the compiler nor the dev dependencies.
FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 builds from source when no prebuilt binary fits.
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production \
    LISTEN_ADDRESS=0.0.0.0 \
    LISTEN_PORT=8080 \
    SQLITE_PATH=/data/kv.db \
    STORAGE_PATH=/data/blobs \
    TEMP_DIR=/data/tmp \
    LOG_JSON=true
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The status page's static files (GET /ui/).
COPY ui ./ui
# Everything the server writes lives under /data, owned by the unprivileged
# "node" user of the base image: SQLite and blobs with the embedded defaults,
# spilled uploads (TEMP_DIR) with any store.
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
# /health probes the database and the storage (200 when both answer).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.LISTEN_PORT||8080)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM: stop accepting, finish requests in flight (SHUTDOWN_TIMEOUT), exit 0.
STOPSIGNAL SIGTERM
# Plain node is enough: the process sets its own memory flags (src/runtime/node-flags.ts).
CMD ["node", "dist/cli/main.js", "server"]
